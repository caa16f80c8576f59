"""Saving a telescope state to an RDB file (the I/O around :mod:`._writer`).

Where the data comes from decides how it is read:

* a Redis server (a real one): each key's DUMP payload, fetched in pipelined
  batches, is copied into the file as it is when its encoding is one that
  every reader knows (strings, type-5 sorted sets, hashes, ziplists); payloads
  in encodings that old readers lack (Redis 7's listpacks) are decoded and
  written again as ziplists or plain sets, so the file loads into
  katsdptelstate 1.0 and into Redis >= 4 (with version 8) whatever wrote it;
* any other backend (memory, an RDB file, fakeredis): its snapshot of each key,
  encoded by :class:`~._writer.RdbEncoder` (sensors in bulk with numpy).

Keys are written under database 0, without expiry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import IO, Any

from .._keys import KeyType, display_str, ensure_bytes
from .._samples import SampleBatch
from ..backends.base import Backend, Snapshot
from . import _format as F
from ._reader import RdbIndex
from ._writer import RdbEncoder, encode_string

__all__ = ["RDBWriter"]

logger = logging.getLogger(__name__)

_CHUNK = 256  # keys per batch of reads
# Value types of DUMP payloads that RDB 9 readers (katsdptelstate 1.0, Redis >= 5) know.
_PORTABLE = frozenset(
    {
        F.TYPE_STRING,
        F.TYPE_ZSET,
        F.TYPE_HASH,
        F.TYPE_ZSET_2,
        F.TYPE_ZSET_ZIPLIST,
        F.TYPE_HASH_ZIPLIST,
    }
)


class RDBWriter:
    """An RDB file being written; keys are added with :meth:`save`.

    The header is written on creation, and :meth:`close` (or leaving the
    ``with`` block, even by an exception) writes the end of the file and its
    checksum, as katsdptelstate does: the file is then a valid RDB file holding
    the keys saved so far.  A file that ends up without keys is removed.  To
    leave nothing behind after a failure instead, call :meth:`abandon` (as
    :meth:`telstate.TelescopeState.save_to_file` does).  The methods may be
    called from different threads (the asyncio writer saves in a worker thread):
    writes to the file are serialised.

    Parameters
    ----------
    filename
        Where to write (the file is created or truncated).
    version
        RDB version: 9 (the default; Redis >= 5 and katsdptelstate 1.0 read it)
        or 8 (also Redis 4.0).

    Attributes
    ----------
    filename
        As given.
    keys_written
        How many keys were written.
    keys_failed
        How many keys could not be written (missing keys, types telstate does not
        use); failures are logged, not raised.
    """

    def __init__(self, filename: str | os.PathLike[str], version: int = 9) -> None:
        self.filename = filename
        self.keys_written = 0
        self.keys_failed = 0
        self._encoder = RdbEncoder(version)
        self._lock = threading.Lock()  # one writer of the file at a time
        self._file: IO[bytes] = open(filename, "wb")  # noqa: SIM115 - closed by close()
        try:
            self._file.write(self._encoder.header())
            self._file.write(self._encoder.select_db(0))
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> RDBWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()  # also after an exception: the keys saved so far make a valid file

    def abandon(self) -> None:
        """Close the file, finished or not, and remove it: nothing is left behind.

        For a caller that wants all or nothing, after a failure.
        """
        with self._lock:
            self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.filename)

    def save(self, client: Any, keys: Iterable[str | bytes] | None = None) -> None:
        """Write keys of a telescope state to the file.

        Parameters
        ----------
        client
            A :class:`telstate.TelescopeState`, a sync backend, or a
            :class:`redis.Redis` client.
        keys
            Full keys to write (default: all).  Missing keys are logged and counted
            in :attr:`keys_failed`.
        """
        backend, temporary = _backend_of(client)
        try:
            names = [ensure_bytes(key) for key in keys] if keys is not None else backend.keys(b"*")
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                records = zip(chunk, self._records(backend, chunk), strict=True)
                with self._lock:
                    for key, record in records:
                        self._write(key, record)
        finally:
            if temporary:
                backend.release()  # type: ignore[attr-defined]

    def save_snapshots(self, items: Iterable[tuple[bytes, Snapshot | None]]) -> None:
        """Write keys from their snapshots (used by the asyncio writer)."""
        with self._lock:
            for key, snapshot in items:
                self._write(key, None if snapshot is None else self._encode(key, snapshot))

    def _write(self, key: bytes, record: bytes | None) -> None:
        if record is None:
            self.keys_failed += 1
            logger.error("Failed to save key %s: not found", display_str(key))
            return
        if self._file.closed:
            raise ValueError(f"RDB file {os.fsdecode(self.filename)!r} is already closed")
        self._file.write(record)
        self.keys_written += 1

    def _records(self, backend: Backend, keys: Sequence[bytes]) -> Iterator[bytes | None]:
        dumps = _dumps(backend, keys)
        if dumps is not None:
            for key, payload in zip(keys, dumps, strict=True):
                yield None if payload is None else self._from_dump(key, payload)
            return
        for key, snapshot in zip(keys, backend.snapshot(keys), strict=True):
            yield None if snapshot is None else self._encode(key, snapshot)

    def _encode(self, key: bytes, snapshot: Snapshot) -> bytes:
        kind, value = snapshot
        if kind is KeyType.IMMUTABLE:
            assert isinstance(value, bytes)
            return self._encoder.string(key, value)
        if kind is KeyType.MUTABLE:
            assert isinstance(value, SampleBatch)
            return self._encoder.sensor_batch(key, value)
        assert isinstance(value, dict)
        return self._encoder.hash(key, value)

    def _from_dump(self, key: bytes, payload: bytes) -> bytes | None:
        type_code, body = payload[0], payload[1:-10]
        if type_code in _PORTABLE:
            return self._encoder.raw(type_code, key, body)
        # A newer encoding: decode it with the reader (as a one-key file) and re-encode.
        version = int.from_bytes(payload[-10:-8], "little")
        tiny = b"REDIS%04d" % min(version, 13) + bytes([type_code]) + encode_string(key) + body
        index = RdbIndex(tiny + b"\xff" + bytes(8), f"DUMP of {display_str(key)}")
        entry = index.entries.get(key)
        if entry is None:
            return None  # a type telstate does not use
        kind = index.key_type(entry)
        if kind is KeyType.MUTABLE:
            return self._encoder.sensor_batch(key, index.read_samples(key))
        value = index.read(key)
        assert isinstance(value, bytes | dict)
        return (
            self._encoder.string(key, value)
            if isinstance(value, bytes)
            else (self._encoder.hash(key, value))
        )

    def close(self) -> None:
        """Finish the file (end marker and checksum) and close it; nothing if closed already.

        A file without keys is removed.
        """
        with self._lock:
            if self._file.closed:
                return
            try:
                self._file.write(self._encoder.footer())
            finally:
                self._file.close()
                if not self.keys_written:
                    logger.error("No valid keys found - removing empty file %s", self.filename)
                    os.remove(self.filename)


def _backend_of(client: Any) -> tuple[Backend, bool]:
    """The backend to save from, and whether it was made for the occasion."""
    import redis

    from ..backends.redis import RedisBackend
    from ..client import TelescopeState

    if isinstance(client, TelescopeState):
        return client.backend, False
    if isinstance(client, Backend):
        return client, False
    if isinstance(client, redis.Redis):
        return RedisBackend(client), True
    raise TypeError(f"cannot save from {type(client).__name__}")


def _dumps(backend: Backend, keys: Sequence[bytes]) -> list[bytes | None] | None:
    """DUMP payloads of `keys` from a real Redis server, or None for other backends."""
    from ..backends.redis import RedisBackend

    if not isinstance(backend, RedisBackend) or not backend.real_server:
        return None
    return backend.dumps(keys)
