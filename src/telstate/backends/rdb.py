"""A read-only backend over an RDB file, decoding keys only when read.

Opening indexes the file (see :class:`~telstate.rdb._reader.RdbIndex`): a pass
over the records that skips every value by its length, so a 1 GB observation
opens in little more time than it takes to list its keys, and a path is
memory-mapped, so only the pages of the keys actually read are loaded.  Each
key is decoded on first use and kept (sensors as compact
:class:`~telstate._samples.SampleStore` objects), so later reads cost what they
cost on the memory backend.

Writes raise :class:`ImmutableKeyError`: the file is an archive.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ImmutableKeyError
from .._glob import compile_glob
from .._keys import KeyType, display_str, wrong_type
from .._ranges import RangeQuery
from .._samples import EMPTY_BATCH, SampleBatch, SampleStore
from .._updates import KeyUpdate, Recheck
from ..rdb._reader import RdbIndex
from ..rdb._source import RdbSource, read_source
from .base import Backend, Found, KeyStats, Snapshot, Subscription, Write
from .memory import _Value, found

__all__ = ["RdbBackend"]


class _NoUpdates(Subscription):
    """Nothing in a file ever changes: waits simply time out."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        self._closed.wait(timeout)
        return None

    def close(self) -> None:
        self._closed.set()


class RdbBackend(Backend):
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

    def __repr__(self) -> str:
        return f"<RdbBackend {self.name!r}: {len(self.index)} keys>"

    def verify(self) -> None:
        """Check the whole file, checksum included (RdbParseError if it is damaged)."""
        RdbIndex(self._data, self.name, verify_checksum=True)

    def _value(self, key: bytes) -> _Value | None:
        value = self._cache.get(key)
        if value is not None:
            return value
        entry = self.index.entries.get(key)
        if entry is None:
            return None
        decoded: _Value
        if self.index.key_type(entry) is KeyType.MUTABLE:
            decoded = SampleStore.from_batch(self.index.read_samples(key))
        else:
            raw = self.index.read(key)
            assert isinstance(raw, bytes | dict)
            decoded = raw
        with self._lock:
            return self._cache.setdefault(key, decoded)

    # -- reads

    def get(self, keys: Sequence[bytes]) -> Found | None:
        for i, key in enumerate(keys):
            value = self._value(key)
            if value is not None:
                return found(i, value)
        return None

    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        for key in keys:
            entry = self.index.entries.get(key)
            if entry is not None:
                return self.index.key_type(entry)
        return None

    def exists(self, keys: Sequence[bytes]) -> bool:
        return any(key in self.index.entries for key in keys)

    def keys(self, pattern: bytes) -> list[bytes]:
        if pattern == b"*":
            return list(self.index.entries)
        match = compile_glob(pattern)
        return [key for key in self.index.entries if match(key)]

    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        for i, key in enumerate(keys):
            value = self._value(key)
            if value is None:
                continue
            if type(value) is not dict:
                raise wrong_type(key, KeyType.INDEXED, self.key_type([key]))
            return i, value.get(sub_key)
        return None

    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        for key in keys:
            if key not in self.index.entries:
                continue
            if self.key_type([key]) is not KeyType.MUTABLE:
                if query.scan or query.previous:
                    raise wrong_type(key, KeyType.MUTABLE, self.key_type([key]))
                return EMPTY_BATCH
            value = self._value(key)
            assert isinstance(value, SampleStore)
            return value.query(query)
        return None

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return _NoUpdates()

    def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        result: list[Snapshot | None] = []
        for key in keys:
            entry = self.index.entries.get(key)
            if entry is None:
                result.append(None)
                continue
            kind = self.index.key_type(entry)
            if kind is KeyType.MUTABLE:
                result.append((kind, self.index.read_samples(key)))
            else:
                value = self.index.read(key)
                assert isinstance(value, bytes | dict)
                result.append((kind, value))
        return result

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
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
                value = self._value(key)
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

    def load_rdb(self, index: RdbIndex) -> int:
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
    aux : dict of bytes to bytes
        The file's AUX fields (``redis-ver``, ``ctime``, ``used-mem``...), in file order.
    skipped : dict of str to int
        Keys of other Redis types (lists, sets, streams, module values), counted by type.
    """

    magic: str
    version: int
    aux: dict[bytes, bytes]
    skipped: dict[str, int]

    @property
    def format(self) -> str:
        """The first bytes of the file: ``REDIS0009``, ``VALKEY080``."""
        digits = 4 if self.magic == "REDIS" else 3
        return f"{self.magic}{self.version:0{digits}d}"
