"""The asyncio face of the in-memory backend.

It wraps a sync :class:`telstate.backends.MemoryBackend` (a new one, or one shared with
sync TelescopeState objects): in-memory operations never block, so they run
directly in the event loop.  Updates reach async waiters through
``loop.call_soon_threadsafe``, so a write from another thread (a sync client of
the same backend) wakes them too.  Loading an RDB file is parsed in a worker
thread so the loop keeps running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._arrays import SampleArrays
from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._ranges import RangeQuery
from .._samples import SampleBatch
from .._updates import KeyUpdate, Recheck
from ..backends.base import Backend, Found, KeyStats, Snapshot, Write
from ..backends.memory import MemoryBackend as SyncMemoryBackend
from .backend import AsyncBackend, AsyncSubscription

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["LocalBackend", "MemoryBackend"]


class _Subscription(AsyncSubscription):
    def __init__(self, backend: SyncMemoryBackend, keys: Sequence[bytes]) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[KeyUpdate | Recheck] = asyncio.Queue()
        put = self._queue.put_nowait

        def sink(update: KeyUpdate) -> None:
            loop.call_soon_threadsafe(put, update)

        self._remove = backend.add_sink(keys, sink)

    async def get(self) -> KeyUpdate | Recheck:
        return await self._queue.get()

    async def close(self) -> None:
        self._remove()


class LocalBackend(AsyncBackend):
    """An asyncio backend over a sync backend whose calls never block (memory, RDB file).

    Its calls run directly in the event loop; loading an RDB file runs in a
    worker thread.
    """

    def __init__(self, sync: Backend) -> None:
        self.sync = sync

    async def get(self, keys: Sequence[bytes]) -> Found | None:
        return self.sync.get(keys)

    async def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        return self.sync.key_type(keys)

    async def exists(self, keys: Sequence[bytes]) -> bool:
        return self.sync.exists(keys)

    async def keys(self, pattern: bytes) -> list[bytes]:
        return self.sync.keys(pattern)

    async def delete(self, keys: Sequence[bytes]) -> None:
        self.sync.delete(keys)

    async def clear(self) -> None:
        self.sync.clear()

    async def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        return self.sync.set_immutable(key, value)

    async def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        self.sync.add_mutable(key, value, timestamp)

    async def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        return self.sync.set_indexed(key, sub_key, value)

    async def get_indexed(
        self, keys: Sequence[bytes], sub_key: bytes
    ) -> tuple[int, bytes | None] | None:
        return self.sync.get_indexed(keys, sub_key)

    async def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        return self.sync.get_range(keys, query)

    async def get_ranges(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleBatch | None]:
        return self.sync.get_ranges(candidates, query)

    async def get_range_arrays(
        self, keys: Sequence[bytes], query: RangeQuery
    ) -> SampleArrays | None:
        return self.sync.get_range_arrays(keys, query)

    async def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        return self.sync.get_ranges_arrays(candidates, query)

    async def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        return self.sync.write_batch(writes)

    async def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        return self.sync.stats(keys)

    async def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        return self.sync.snapshot(keys)

    async def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        return await asyncio.to_thread(self.sync.load_new_keys, index)

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        return _Never()


class _Never(AsyncSubscription):
    """Updates of a backend that never changes: waits last until cancelled or timed out."""

    async def get(self) -> KeyUpdate | Recheck:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pass


class MemoryBackend(LocalBackend):
    """Telescope state in this process's memory, for asyncio.

    Parameters
    ----------
    backend : telstate.backends.MemoryBackend or None
        The sync memory backend to share (default: a new one).  The same data can
        then be used through :class:`telstate.TelescopeState` too.
    """

    sync: SyncMemoryBackend

    def __init__(self, backend: SyncMemoryBackend | None = None) -> None:
        super().__init__(backend if backend is not None else SyncMemoryBackend())

    def __repr__(self) -> str:
        return f"<telstate.aio.memory.MemoryBackend sharing {self.sync!r}>"

    def to_sync(self) -> SyncMemoryBackend:
        """The sync backend holding the data (for a :class:`telstate.TelescopeState`)."""
        return self.sync

    @staticmethod
    def from_sync(sync: SyncMemoryBackend) -> MemoryBackend:
        """An asyncio backend sharing the data of a sync memory backend."""
        return MemoryBackend(sync)

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        return _Subscription(self.sync, keys)
