"""A read-only backend over an RDB file, decoding keys only when read.

Opening indexes the file (see :class:`~telstate.rdb._reader.RdbIndex`): a pass
over the records that skips every value by its length, so a 1 GB observation
opens in little more time than it takes to list its keys, and a path is
memory-mapped, so only the pages of the keys actually read are loaded.  Each
key is decoded on first use and kept in the memory backend's form (sensors as
compact ``telstate._samples.SampleStore`` objects), and the memory
backend's read rules (``HeldValues``) answer
every read, so later reads cost what they cost there.  What can be answered
from the index alone (a key's type, whether it exists, its sample count and
time span) never decodes the value, and saving the file elsewhere reads each
value without keeping it.

Writes raise :class:`~telstate.ImmutableKeyError`: the file is an archive.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ImmutableKeyError
from .._keys import KeyType, display_str
from .._samples import SampleBatch, SampleStore
from .._updates import KeyUpdate, Recheck
from ..rdb._reader import RdbIndex
from ..rdb._source import RdbSource, read_source
from .base import KeyStats, Subscription, Write
from .memory import HeldValues, _Value

__all__ = ["RdbBackend", "RdbFileInfo"]


class _NoUpdates(Subscription):
    """Nothing in a file ever changes: waits simply time out."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        self._closed.wait(timeout)
        return None

    def close(self) -> None:
        self._closed.set()


class RdbBackend(HeldValues):
    """Telescope state read lazily from an RDB file.

    Parameters
    ----------
    source
        A path (memory-mapped), an open binary file or the file's bytes.
    verify_checksum
        Check the file's CRC-64 first.  That reads the whole file, which a lazy
        open otherwise avoids, so it is off by default; :meth:`verify` does it later.

    Raises
    ------
    RdbParseError
        If the file is not a valid RDB file.
    """

    def __init__(self, source: RdbSource, verify_checksum: bool = False) -> None:
        data, name = read_source(source)
        self.name = name
        self.index = RdbIndex(data, name, verify_checksum=verify_checksum)
        self._data = data
        self._cache: dict[bytes, _Value] = {}
        self._lock = threading.Lock()
        self._lookup = self._decoded
        # A snapshot (saving the file elsewhere) reads values without keeping them.
        self._peek = lambda key: self._cache.get(key) or self._read(key)

    def __repr__(self) -> str:
        return f"<RdbBackend {self.name!r}: {len(self.index)} keys>"

    def verify(self) -> None:
        """Check the whole file, checksum included (RdbParseError if it is damaged)."""
        RdbIndex(self._data, self.name, verify_checksum=True)

    def _read(self, key: bytes) -> bytes | dict[bytes, bytes] | SampleBatch | None:
        """A key's value from the file (a sensor as a batch), not kept."""
        entry = self.index.entries.get(key)
        if entry is None:
            return None
        if self.index.key_type(entry) is KeyType.MUTABLE:
            return self.index.read_samples(key)
        raw = self.index.read(key)
        assert isinstance(raw, bytes | dict)
        return raw

    def _decoded(self, key: bytes) -> _Value | None:
        # Called with the lock held (the read rules hold it).
        value = self._cache.get(key)
        if value is None:
            read = self._read(key)
            if read is None:
                return None
            value = SampleStore.from_batch(read) if isinstance(read, SampleBatch) else read
            self._cache[key] = value
        return value

    # -- reads: the rules of HeldValues; from the index where it suffices

    def _kind(self, key: bytes) -> KeyType | None:
        entry = self.index.entries.get(key)
        return None if entry is None else self.index.key_type(entry)

    def _names(self) -> list[bytes]:
        return list(self.index.entries)

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return _NoUpdates()

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        # From the index: sizes are the bytes of each value in the file.
        result: list[KeyStats | None] = []
        for key in keys:
            entry = self.index.entries.get(key)
            if entry is None:
                result.append(None)
                continue
            size = entry.end - entry.start
            kind = self.index.key_type(entry)
            if kind is KeyType.MUTABLE:
                count, first, last = self.index.sample_span(key)
                result.append(KeyStats(kind, count, size, first, last))
            elif kind is KeyType.INDEXED:
                with self._lock:
                    value = self._decoded(key)
                result.append(KeyStats(kind, len(value) if isinstance(value, dict) else 0, size))
            else:
                result.append(KeyStats(kind, 1, size))
        return result

    # -- writes: refused

    def _read_only(self, key: bytes | None = None) -> ImmutableKeyError:
        what = f" ({display_str(key)})" if key is not None else ""
        return ImmutableKeyError(f"{self.name} is an RDB file opened read-only{what}")

    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        raise self._read_only(key)

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        raise self._read_only(key)

    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        raise self._read_only(key)

    def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        raise self._read_only()

    def delete(self, keys: Sequence[bytes]) -> None:
        raise self._read_only(keys[0] if keys else None)

    def clear(self) -> None:
        raise self._read_only()

    def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        raise self._read_only()

    def close(self) -> None:
        self._cache.clear()

    @property
    def file_info(self) -> RdbFileInfo:
        """What the file says of itself and what was left out of it (read-only)."""
        index = self.index
        return RdbFileInfo(index.magic, index.version, dict(index.aux), dict(index.skipped))


@dataclass(frozen=True)
class RdbFileInfo:
    """The header of an RDB file, and the keys of it that telstate does not use.

    Attributes
    ----------
    magic : str
        ``'REDIS'`` or ``'VALKEY'`` (Valkey 9 and later).
    version : int
        RDB format version.
    aux : dict[bytes, bytes]
        The file's AUX fields (``redis-ver``, ``ctime``, ``used-mem``...), in file order.
    skipped : dict[str, int]
        Keys of other Redis types (lists, sets, streams, module values), counted by type.
    """

    magic: str
    version: int
    aux: dict[bytes, bytes]
    skipped: dict[str, int]

    @property
    def format(self) -> str:
        """The magic and version the file starts with (``REDIS0009``, ``VALKEY080``)."""
        digits = 4 if self.magic == "REDIS" else 3
        return f"{self.magic}{self.version:0{digits}d}"
