"""Backends that run the behaviour suite's reads on an opened RDB file.

An RDB file is read-only, so the suite cannot write to one.  These test-side backends split
the work: every write goes to an in-memory backend (so a write's result and its errors, the
conflicts the suite checks, are the memory backend's), and every read is answered by the
read-only RDB backend, :meth:`telstate.TelescopeState.open` of a file that telstate's own
writer (``save_to_file``) made from that memory state.

A generation number, bumped after each write, tells when the opened file is stale: the first
read after a write saves the state anew and opens the new file.  A state without keys is an
RDB file without keys (telstate's writer removes such a file, so it is built from the header
and footer alone).

A file never changes, so subscriptions are the RDB backend's: a wait sees what the file holds
and otherwise times out.  Tests whose subject is a wait woken by a later write, or a live
notification, cannot run on a file: they carry the ``live`` marker and the ``ts`` fixture skips
them on these backends, with that reason.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import telstate
import telstate.aio
from telstate import ImmutableKeyError, KeyType
from telstate._ranges import RangeQuery
from telstate._samples import SampleBatch
from telstate.aio.backend import AsyncBackend, AsyncSubscription
from telstate.aio.rdb import RdbBackend as AioRdbBackend
from telstate.backends.base import Backend, Found, KeyStats, Snapshot, Subscription, Write
from telstate.backends.rdb import RdbBackend
from telstate.rdb._reader import RdbIndex
from telstate.rdb._writer import RdbEncoder

__all__ = ["AioReopenedRdbBackend", "ReopenedRdbBackend", "empty_rdb", "new_file"]


def empty_rdb() -> bytes:
    """A valid RDB file (version 9, checksummed) holding no keys."""
    encoder = RdbEncoder()
    return encoder.header() + encoder.select_db(0) + encoder.footer()


def new_file(directory: Path) -> Path:
    """A new empty file in `directory` (never one that an opened backend may still map)."""
    handle, name = tempfile.mkstemp(suffix=".rdb", prefix="state-", dir=directory)
    os.close(handle)
    return Path(name)


class ReopenedRdbBackend(Backend):
    """Writes to memory; reads from that state saved to an RDB file and opened read-only.

    Parameters
    ----------
    directory
        Where the RDB files are written (one new file per save, so a file that an opened
        backend still memory-maps is never truncated).

    Attributes
    ----------
    memory
        The backend holding the written state.
    saves
        How many times the state was saved and reopened.
    """

    def __init__(self, directory: Path) -> None:
        self.memory = telstate.MemoryBackend()
        self.saves = 0
        self._directory = directory
        self._lock = threading.Lock()
        self._generation = 0  # bumped after every write
        self._opened: RdbBackend | None = None
        self._opened_generation = -1

    def __repr__(self) -> str:
        return f"<ReopenedRdbBackend: {self.saves} saves>"

    def opened(self) -> RdbBackend:
        """The RDB backend answering reads: the file of the state as last written."""
        with self._lock:
            if self._opened is None or self._opened_generation != self._generation:
                generation = self._generation
                if self._opened is not None:
                    self._opened.close()
                self._opened = self._reopen()
                self._opened_generation = generation
            return self._opened

    def _reopen(self) -> RdbBackend:
        self.saves += 1
        count = len(self.memory.keys(b"*"))
        if count == 0:
            source: bytes | Path = empty_rdb()
        else:
            source = new_file(self._directory)
            written = telstate.TelescopeState(self.memory).save_to_file(source)
            assert written == count, f"saved {written} of {count} keys"
        backend = telstate.TelescopeState.open(source, verify_checksum=True).backend
        assert isinstance(backend, RdbBackend)
        return backend

    def _written(self) -> None:
        with self._lock:
            self._generation += 1

    # -- reads: the opened file

    def get(self, keys: Sequence[bytes]) -> Found | None:
        return self.opened().get(keys)

    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        return self.opened().key_type(keys)

    def exists(self, keys: Sequence[bytes]) -> bool:
        return self.opened().exists(keys)

    def keys(self, pattern: bytes) -> list[bytes]:
        return self.opened().keys(pattern)

    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        return self.opened().get_indexed(keys, sub_key)

    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        return self.opened().get_range(keys, query)

    def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        return self.opened().snapshot(keys)

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        return self.opened().stats(keys)

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return self.opened().subscribe(keys)

    # -- writes: the memory backend

    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        try:
            return self.memory.set_immutable(key, value)
        finally:
            self._written()

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        try:
            self.memory.add_mutable(key, value, timestamp)
        finally:
            self._written()

    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        try:
            return self.memory.set_indexed(key, sub_key, value)
        finally:
            self._written()

    def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        try:
            return self.memory.write_batch(writes)
        finally:
            self._written()

    def delete(self, keys: Sequence[bytes]) -> None:
        try:
            self.memory.delete(keys)
        finally:
            self._written()

    def clear(self) -> None:
        try:
            self.memory.clear()
        finally:
            self._written()

    def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        try:
            return self.memory.load_new_keys(index)
        finally:
            self._written()

    def close(self) -> None:
        with self._lock:
            if self._opened is not None:
                self._opened.close()
                self._opened = None
        self.memory.close()


class AioReopenedRdbBackend(AsyncBackend):
    """The asyncio counterpart: writes to a :class:`telstate.aio.MemoryBackend`; reads from
    ``await telstate.aio.TelescopeState.open(...)`` of the state saved with the asyncio writer.

    The file is opened from its bytes (the sync backend opens a path), so both kinds of
    source are exercised.  Create it in the event loop that will use it.
    """

    def __init__(self, directory: Path) -> None:
        self.memory = telstate.aio.MemoryBackend()
        self.saves = 0
        self._directory = directory
        self._lock = asyncio.Lock()
        self._generation = 0
        self._opened: AioRdbBackend | None = None
        self._opened_generation = -1

    def __repr__(self) -> str:
        return f"<AioReopenedRdbBackend: {self.saves} saves>"

    async def opened(self) -> AioRdbBackend:
        """The asyncio RDB backend answering reads: the state as last written."""
        async with self._lock:
            if self._opened is None or self._opened_generation != self._generation:
                generation = self._generation
                if self._opened is not None:
                    await self._opened.__aexit__(None, None, None)
                self._opened = await self._reopen()
                self._opened_generation = generation
            return self._opened

    async def _reopen(self) -> AioRdbBackend:
        self.saves += 1
        count = len(await self.memory.keys(b"*"))
        if count == 0:
            data = empty_rdb()
        else:
            path = new_file(self._directory)
            written = await telstate.aio.TelescopeState(self.memory).save_to_file(path)
            assert written == count, f"saved {written} of {count} keys"
            data = path.read_bytes()
        backend = (await telstate.aio.TelescopeState.open(data, verify_checksum=True)).backend
        assert isinstance(backend, AioRdbBackend)
        return backend

    def _written(self) -> None:
        self._generation += 1  # only ever touched in the event loop

    # -- reads: the opened file

    async def get(self, keys: Sequence[bytes]) -> Found | None:
        return await (await self.opened()).get(keys)

    async def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        return await (await self.opened()).key_type(keys)

    async def exists(self, keys: Sequence[bytes]) -> bool:
        return await (await self.opened()).exists(keys)

    async def keys(self, pattern: bytes) -> list[bytes]:
        return await (await self.opened()).keys(pattern)

    async def get_indexed(
        self, keys: Sequence[bytes], sub_key: bytes
    ) -> tuple[int, bytes | None] | None:
        return await (await self.opened()).get_indexed(keys, sub_key)

    async def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        return await (await self.opened()).get_range(keys, query)

    async def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        return await (await self.opened()).snapshot(keys)

    async def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        return await (await self.opened()).stats(keys)

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        return await (await self.opened()).subscribe(keys)

    # -- writes: the memory backend

    async def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        try:
            return await self.memory.set_immutable(key, value)
        finally:
            self._written()

    async def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        try:
            await self.memory.add_mutable(key, value, timestamp)
        finally:
            self._written()

    async def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        try:
            return await self.memory.set_indexed(key, sub_key, value)
        finally:
            self._written()

    async def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        try:
            return await self.memory.write_batch(writes)
        finally:
            self._written()

    async def delete(self, keys: Sequence[bytes]) -> None:
        try:
            await self.memory.delete(keys)
        finally:
            self._written()

    async def clear(self) -> None:
        try:
            await self.memory.clear()
        finally:
            self._written()

    async def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        try:
            return await self.memory.load_new_keys(index)
        finally:
            self._written()

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()
        self.memory.close()

    async def wait_closed(self) -> None:
        if self._opened is not None:
            await self._opened.wait_closed()
            self._opened = None
        await self.memory.wait_closed()
