"""Saving a telescope state to an RDB file: :class:`telstate.rdb.RDBWriter`.

The file format is :mod:`telstate.rdb`'s (its encoder, ``_writer``); this module
is the I/O around it, above the backends whose data it saves.

Where the data comes from decides how it is read:

* a Redis server (a real one): each key's DUMP payload, fetched in pipelined
  batches, is copied into the file as it is when its encoding is one that
  every reader knows (strings, type-5 sorted sets, hashes, ziplists); payloads
  in encodings that old readers lack (Redis 7's listpacks) are decoded and
  written again as ziplists or plain sets, so the file loads into
  katsdptelstate 1.0 and into Redis >= 4 (with version 8) whatever wrote it;
* any other backend (memory, an RDB file, fakeredis): its snapshot of each key,
  encoded by ``RdbEncoder`` (sensors in bulk with numpy).

Keys are written under database 0, without expiry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import IO, Any

from . import _plans as plans
from ._drivers import Driver
from ._keys import KeyType, display_str, ensure_bytes
from ._logic import TelescopeStateBase
from ._samples import SampleBatch
from .backends.base import Backend, Snapshot
from .rdb import _format as F
from .rdb._reader import RdbIndex
from .rdb._writer import RdbEncoder, encode_string

__all__ = ["RDBWriter"]

logger = logging.getLogger(__name__)

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
        backend, release = _backend_of(client)
        names = None if keys is None else [ensure_bytes(key) for key in keys]
        plan = plans.save(names, backend.supports_dump, self.save_dumps, self.save_snapshots)
        try:
            Driver(backend, plan).run()
        finally:
            if release is not None:
                release()

    def save_dumps(self, keys: Sequence[bytes], payloads: Sequence[bytes | None]) -> None:
        """Write keys from their Redis DUMP payloads (None: the key was missing)."""
        records = [
            None if payload is None else self._from_dump(key, payload)
            for key, payload in zip(keys, payloads, strict=True)
        ]
        self._write_all(keys, records)

    def save_snapshots(self, keys: Sequence[bytes], snapshots: Sequence[Snapshot | None]) -> None:
        """Write keys from their snapshots (None: the key was missing)."""
        records = [
            None if snapshot is None else self._encode(key, snapshot)
            for key, snapshot in zip(keys, snapshots, strict=True)
        ]
        self._write_all(keys, records)

    def _write_all(self, keys: Sequence[bytes], records: Sequence[bytes | None]) -> None:
        with self._lock:
            for key, record in zip(keys, records, strict=True):
                self._write(key, record)

    def _write(self, key: bytes, record: bytes | None) -> None:
        if record is None:
            self.keys_failed += 1
            logger.error("Failed to save key %s: not found", display_str(key))
            return
        if self._file.closed:
            raise ValueError(f"RDB file {os.fsdecode(self.filename)!r} is already closed")
        self._file.write(record)
        self.keys_written += 1

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


def _backend_of(client: Any) -> tuple[Backend, Callable[[], None] | None]:
    """The backend to save from, and how to release it if it was made for the occasion."""
    if isinstance(client, TelescopeStateBase):
        client = client.backend
    if isinstance(client, Backend):
        return client, None
    # Imported here, not at the top: only a redis-py client needs redis-py, which
    # would otherwise add ~50 ms to every ``import telstate``.
    import redis

    from .backends.redis import RedisBackend

    if isinstance(client, redis.Redis):
        backend = RedisBackend(client)
        return backend, backend.release
    raise TypeError(f"cannot save from {type(client).__name__}")
