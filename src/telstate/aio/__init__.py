"""The asyncio TelescopeState: the same rules as the sync one, awaited.

Every rule comes from ``telstate._logic`` and ``telstate._plans`` (shared
with :class:`telstate.TelescopeState`, whose methods are these without
``await``); this module only awaits the backend.  Waits
take an optional timeout and are cancelled like any task.  Beyond
katsdptelstate's asyncio API it loads and opens RDB files without blocking the
event loop, batches writes in pipelines, and :meth:`TelescopeState.watch`
streams a key's updates.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from .. import _plans as plans
from .._arrays import SampleArrays
from .._codec import ENCODING_DEFAULT, decode_value, encode_value
from .._drivers import AsyncDriver
from .._keys import KeyType, display_str, ensure_bytes, ensure_str
from .._logic import (
    PipelineBase,
    TelescopeStateBase,
    check_batch,
    check_written,
    decode_found,
    describe,
    encode_sub_key,
    make_indexed_write,
    make_sample,
    range_arrays,
    range_result,
    ranges_result,
)
from .._plans import IndexedCondition, KeyCondition
from .._ranges import resolve_range
from .._save import RDBWriter as _SyncRDBWriter
from ..backends.base import Write
from ..rdb._reader import RdbIndex
from ..rdb._source import RdbSource, read_source
from .backend import AsyncBackend
from .memory import MemoryBackend
from .rdb import RdbBackend

__all__ = ["AsyncBackend", "MemoryBackend", "Pipeline", "RDBWriter", "TelescopeState"]


class TelescopeState(TelescopeStateBase[AsyncBackend]):
    """A view of a telescope state, for asyncio.

    Parameters
    ----------
    backend
        Where the data lives (default: a new :class:`telstate.aio.memory.MemoryBackend`);
        e.g. ``await telstate.aio.redis.RedisBackend.from_url('redis://host')``.
    prefixes
        The view's namespaces, highest priority first.
    base
        Another asyncio TelescopeState whose backend this one shares.
    """

    def __init__(
        self,
        backend: AsyncBackend | None = None,
        prefixes: Sequence[str | bytes] = (b"",),
        base: TelescopeState | None = None,
    ) -> None:
        if backend is None and base is None:
            backend = MemoryBackend()
        self._init_view(backend, prefixes, base)

    @classmethod
    async def open(cls, source: RdbSource, verify_checksum: bool = False) -> TelescopeState:
        """Open an RDB file read-only and lazily (see :meth:`telstate.TelescopeState.open`).

        Indexing runs in a worker thread; reading keys afterwards decodes them in
        the event loop (each key once).
        """
        backend = await asyncio.to_thread(RdbBackend, source, verify_checksum)
        return cls(backend)

    async def load_from_file(self, file: RdbSource) -> int:
        """Add the keys of an RDB file (see :meth:`telstate.TelescopeState.load_from_file`).

        Parsing runs in a worker thread, so the event loop is not blocked.
        """
        index = await asyncio.to_thread(_index, file)
        return await AsyncDriver(self._backend, plans.load(index)).run()  # type: ignore[no-any-return]

    async def save_to_file(
        self, filename: str | os.PathLike[str], keys: Iterable[str | bytes] | None = None
    ) -> int:
        """Write keys to an RDB file without blocking the loop; return how many.

        See :meth:`telstate.TelescopeState.save_to_file` and :class:`RDBWriter`.
        All or nothing: a save that raises (or is cancelled) removes its file.
        """
        writer = RDBWriter(filename)
        try:
            await writer.save(self, keys)
            await writer.aclose()
        except BaseException:
            # Synchronous, so that a second cancellation cannot interrupt it; it waits
            # for a chunk still being written by a cancelled save's worker thread.
            writer.abandon()
            raise
        return writer.keys_written

    # -- whole keys

    async def __getitem__(self, key: str | bytes) -> Any:
        found = await self._backend.get(self._full_keys(key))
        if found is None:
            raise KeyError(f"{display_str(key)} not found")
        return decode_found(found, False)

    async def exists(self, key: str | bytes) -> bool:
        """Whether `key` exists under any prefix of the view."""
        return await self._backend.exists(self._full_keys(key))

    async def key_type(self, key: str | bytes) -> KeyType | None:
        """Type of `key` (for the first prefix that has it), or None if absent."""
        return await self._backend.key_type(self._full_keys(key))

    async def keys(self, filter: str | bytes = "*") -> list[str]:
        """All full keys (whatever the view) matching the Redis glob `filter`, sorted."""
        return sorted(ensure_str(key) for key in await self._backend.keys(ensure_bytes(filter)))

    async def delete(self, key: str | bytes) -> None:
        """Remove `key` under every prefix of the view."""
        await self._backend.delete(self._full_keys(key))

    async def clear(self) -> None:
        """Remove every key in the database, whatever the view."""
        await self._backend.clear()

    # -- writes

    async def add(
        self,
        key: str | bytes,
        value: Any,
        ts: float | None = None,
        immutable: bool = False,
        encoding: bytes = ENCODING_DEFAULT,
    ) -> None:
        """Add a sensor sample or set an immutable (see :meth:`telstate.TelescopeState.add`)."""
        if not immutable:  # the hot path: a sample, which never conflicts
            await self._backend.add_mutable(self._write_key(key), *make_sample(value, ts, encoding))
            return
        full_key = self._write_key(key)
        encoded = encode_value(value, encoding)  # what make_write makes of an immutable
        stored = await self._backend.set_immutable(full_key, encoded)
        if stored is not None:  # the key held a value already
            check_written(Write(KeyType.IMMUTABLE, full_key, encoded), value, stored)

    async def set(self, key: str | bytes, value: Any, encoding: bytes = ENCODING_DEFAULT) -> None:
        """Set an immutable: ``add(key, value, immutable=True)``."""
        await self.add(key, value, immutable=True, encoding=encoding)

    async def set_indexed(
        self, key: str | bytes, sub_key: Any, value: Any, encoding: bytes = ENCODING_DEFAULT
    ) -> None:
        """Set one sub-key of an indexed key (see :meth:`telstate.TelescopeState.set_indexed`)."""
        write = make_indexed_write(self._write_key(key), sub_key, value, encoding)
        stored = await self._backend.write(write)
        if stored is not None:  # an immutable or sub-key was there already
            check_written(write, value, stored)

    def pipeline(self) -> Pipeline:
        """A batch of writes sent together by ``async with`` (see the sync ``pipeline``)."""
        return Pipeline(self)

    # -- reads

    async def get(self, key: str | bytes, default: Any = None, return_encoded: bool = False) -> Any:
        """Value of `key` (see :meth:`telstate.TelescopeState.get`)."""
        found = await self._backend.get(self._full_keys(key))
        if found is None:
            return default
        return decode_found(found, return_encoded)

    async def get_indexed(
        self, key: str | bytes, sub_key: Any, default: Any = None, return_encoded: bool = False
    ) -> Any:
        """Value of one sub-key (see :meth:`telstate.TelescopeState.get_indexed`)."""
        found = await self._backend.get_indexed(self._full_keys(key), encode_sub_key(sub_key))
        if found is None or found[1] is None:
            return default
        return found[1] if return_encoded else decode_value(found[1])

    async def get_range(
        self,
        key: str | bytes,
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
        return_encoded: bool = False,
    ) -> list[tuple[Any, float]]:
        """Sensor samples in a time range (see :meth:`telstate.TelescopeState.get_range`)."""
        query = resolve_range(st, et, include_previous, include_end)
        batch = await self._backend.get_range(self._full_keys(key), query)
        return range_result(key, batch, return_encoded)

    async def get_range_arrays(
        self,
        key: str | bytes,
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
    ) -> SampleArrays:
        """Sensor samples as numpy arrays (see :meth:`telstate.TelescopeState.get_range_arrays`)."""
        query = resolve_range(st, et, include_previous, include_end)
        return range_arrays(key, await self._backend.get_range_arrays(self._full_keys(key), query))

    async def get_ranges(
        self,
        keys: Iterable[str | bytes],
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
        arrays: bool = False,
    ) -> dict[str | bytes, Any]:
        """Many sensors in one round trip (see :meth:`telstate.TelescopeState.get_ranges`)."""
        names = list(keys)
        query = resolve_range(st, et, include_previous, include_end)
        candidates = [self._full_keys(key) for key in names]
        if arrays:
            return ranges_result(names, await self._backend.get_ranges_arrays(candidates, query))
        return ranges_result(names, await self._backend.get_ranges(candidates, query))

    # -- waits

    async def wait_key(
        self,
        key: str | bytes,
        condition: KeyCondition | None = None,
        timeout: float | None = None,
    ) -> None:
        """Wait until `key` exists and ``condition(value, ts)`` holds.

        See :meth:`telstate.TelescopeState.wait_key`; cancel the task to give up.

        Raises
        ------
        TimeoutError
            If `timeout` (seconds) expires first.
        """
        plan = plans.wait_key(self._full_keys(key), condition)
        await AsyncDriver(self._backend, plan, describe(key), timeout).run()

    async def wait_indexed(
        self,
        key: str | bytes,
        sub_key: Any,
        condition: IndexedCondition | None = None,
        timeout: float | None = None,
    ) -> None:
        """Wait until `sub_key` of `key` exists and ``condition(value)`` holds.

        Raises
        ------
        TimeoutError
            If `timeout` (seconds) expires first.
        ImmutableKeyError
            If the key exists (or is created meanwhile) and is not indexed.
        """
        what = describe(key, sub_key, indexed=True)
        plan = plans.wait_indexed(self._full_keys(key), encode_sub_key(sub_key), condition, what)
        await AsyncDriver(self._backend, plan, what, timeout).run()

    async def watch(self, key: str | bytes, initial: bool = True) -> AsyncIterator[tuple[Any, Any]]:
        """Every update of `key`, as it happens: ``async for value, ts in ts.watch(key)``.

        See :meth:`telstate.TelescopeState.watch`.
        """
        driver = AsyncDriver(
            self._backend, plans.watch(self._write_key(key), initial), describe(key)
        )
        try:
            while True:
                done, item = await driver.step()
                if done:
                    return
                yield item
        finally:
            await driver.close()


class Pipeline(PipelineBase):
    """Writes collected for one round trip (``async with ts.pipeline() as batch``)."""

    async def execute(self) -> None:
        """Send the queued writes now (leaving the ``async with`` block does this)."""
        writes, values = self._take()
        if writes:
            check_batch(writes, values, await self._ts._backend.write_batch(writes))

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            await self.execute()


class RDBWriter:
    """An RDB file written from an asyncio telescope state, off the event loop.

    The same file as :class:`telstate.rdb.RDBWriter` writes, used as
    katsdptelstate's asyncio writer is::

        with RDBWriter(path) as writer:          # or: async with
            await writer.save(ts, keys)

    :meth:`save` is a coroutine: keys are read from the asyncio TelescopeState,
    backend or :class:`redis.asyncio.Redis` client in the loop, and encoded and
    written in a worker thread.

    Finishing the file is writing a few bytes (its checksum is kept as it goes),
    so :meth:`close` is synchronous, as katsdptelstate's is; :meth:`aclose` does
    the same in a worker thread, for a slow disk.  Leaving a ``with`` block calls
    :meth:`close`, leaving an ``async with`` block :meth:`aclose`; both finish the
    file also after an exception (or a cancelled :meth:`save`), so that it holds
    the keys saved so far.  :meth:`abandon` removes the file instead.

    Parameters
    ----------
    filename
        Where to write (the file is created or truncated at once).
    version
        RDB version: 9 (the default) or 8 (also Redis 4.0).

    Attributes
    ----------
    filename
        As given.
    keys_written
        How many keys were written.
    keys_failed
        How many keys could not be written (missing keys are logged, not raised).
    """

    def __init__(self, filename: str | os.PathLike[str], version: int = 9) -> None:
        self._writer = _SyncRDBWriter(filename, version)

    @property
    def filename(self) -> str | os.PathLike[str]:
        return self._writer.filename

    @property
    def keys_written(self) -> int:
        return self._writer.keys_written

    @property
    def keys_failed(self) -> int:
        return self._writer.keys_failed

    async def save(self, client: Any, keys: Iterable[str | bytes] | None = None) -> None:
        """Write keys (default: all) of an asyncio TelescopeState, backend or Redis client.

        Parameters
        ----------
        client
            A :class:`TelescopeState`, an :class:`AsyncBackend` or a
            :class:`redis.asyncio.Redis` client.
        keys
            Full keys to write (default: all).  Missing keys are logged and
            counted in :attr:`keys_failed`.
        """
        backend, release = _async_backend_of(client)
        names = None if keys is None else [ensure_bytes(key) for key in keys]
        writer = self._writer
        plan = plans.save(names, backend.supports_dump, writer.save_dumps, writer.save_snapshots)
        try:
            await AsyncDriver(backend, plan).run()
        finally:
            if release is not None:
                await release()

    def close(self) -> None:
        """Finish the file (end marker and checksum) and close it; nothing if closed already.

        A file without keys is removed.  If a cancelled :meth:`save` is still
        writing a chunk in its worker thread, this waits for it.
        """
        self._writer.close()

    async def aclose(self) -> None:
        """:meth:`close`, in a worker thread."""
        await asyncio.to_thread(self._writer.close)

    def abandon(self) -> None:
        """Close the file, finished or not, and remove it (see :class:`telstate.rdb.RDBWriter`)."""
        self._writer.abandon()

    def __enter__(self) -> RDBWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.close()

    async def __aenter__(self) -> RDBWriter:
        return self

    async def __aexit__(self, exc_type: object, exc: object, traceback: object) -> None:
        await self.aclose()


def _async_backend_of(
    client: Any,
) -> tuple[AsyncBackend, Callable[[], Awaitable[None]] | None]:
    """The backend to save from, and how to release it if it was made for the occasion."""
    if isinstance(client, TelescopeState):
        return client.backend, None
    if isinstance(client, AsyncBackend):
        return client, None
    # Imported here: only a redis-py client needs redis-py (see telstate._save).
    import redis.asyncio

    if isinstance(client, redis.asyncio.Redis):
        from .redis import RedisBackend

        backend = RedisBackend(client)
        return backend, backend.release
    raise TypeError(f"cannot save from {type(client).__name__}")


def _index(file: RdbSource) -> RdbIndex:
    data, name = read_source(file)
    return RdbIndex(data, name, verify_checksum=True)
