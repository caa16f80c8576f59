"""The asyncio TelescopeState: the same rules as the sync one, awaited.

Every rule comes from :mod:`telstate._logic` (shared with
:class:`telstate.TelescopeState`); this module only awaits the backend.  Waits
take an optional timeout and are cancelled like any task.  Beyond
katsdptelstate's asyncio API it loads and opens RDB files without blocking the
event loop, batches writes in pipelines, and :meth:`TelescopeState.watch`
streams a key's updates.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from .. import _deadline
from .._codec import ENCODING_DEFAULT, decode_value, encode_value
from .._errors import TimeoutError
from .._keys import KeyType, display_str, ensure_bytes, ensure_str
from .._logic import (
    Call,
    IndexedCondition,
    KeyCondition,
    NextUpdate,
    PipelineBase,
    Step,
    Subscribe,
    TelescopeStateBase,
    check_batch,
    check_immutable_change,
    decode_found,
    describe,
    encode_sub_key,
    wait_indexed_steps,
    wait_key_steps,
    wait_timed_out,
)
from .._ranges import check_timestamp, resolve_range
from .._samples import decode_batch
from .._updates import KeyUpdate
from ..rdb._reader import RdbIndex
from ..rdb._save import RDBWriter as _SyncRDBWriter
from ..rdb._source import RdbSource, read_source
from .backend import AsyncBackend, AsyncSubscription
from .memory import MemoryBackend

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
        from .rdb import RdbBackend

        backend = await asyncio.to_thread(RdbBackend, source, verify_checksum)
        return cls(backend)

    async def load_from_file(self, file: RdbSource) -> int:
        """Add the keys of an RDB file (see :meth:`telstate.TelescopeState.load_from_file`).

        Parsing runs in a worker thread, so the event loop is not blocked.
        """
        index = await asyncio.to_thread(_index, file)
        return await self._backend.load_rdb(index)

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
        full_key = self._write_key(key)
        encoded = encode_value(value, encoding)
        if immutable:
            old = await self._backend.set_immutable(full_key, encoded)
            if old is not None:
                check_immutable_change(display_str(full_key), old, encoded, value)
        else:
            timestamp = time.time() if ts is None else check_timestamp(ts)
            await self._backend.add_mutable(full_key, encoded, timestamp)

    async def set(self, key: str | bytes, value: Any, encoding: bytes = ENCODING_DEFAULT) -> None:
        """Set an immutable: ``add(key, value, immutable=True)``."""
        await self.add(key, value, immutable=True, encoding=encoding)

    async def set_indexed(
        self, key: str | bytes, sub_key: Any, value: Any, encoding: bytes = ENCODING_DEFAULT
    ) -> None:
        """Set one sub-key of an indexed key (see :meth:`telstate.TelescopeState.set_indexed`)."""
        full_key = self._write_key(key)
        sub_key_enc = encode_sub_key(sub_key)
        encoded = encode_value(value, encoding)
        old = await self._backend.set_indexed(full_key, sub_key_enc, encoded)
        if old is not None:
            check_immutable_change(describe(full_key, sub_key, True), old, encoded, value)

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
        if batch is None:
            raise KeyError(f"{display_str(key)} not found")
        return batch.encoded() if return_encoded else decode_batch(batch)

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
        steps = wait_key_steps(self._full_keys(key), condition)
        await _drive(self._backend, steps, describe(key), timeout)

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
        steps = wait_indexed_steps(self._full_keys(key), encode_sub_key(sub_key), condition, what)
        await _drive(self._backend, steps, what, timeout)

    async def watch(self, key: str | bytes, initial: bool = True) -> AsyncIterator[tuple[Any, Any]]:
        """Every update of `key`, as it happens: ``async for value, ts in ts.watch(key)``.

        Yields ``(value, timestamp)`` for each sensor sample, ``(value, None)``
        for an immutable, and ``({sub_key: value}, None)`` for each new sub-key
        of an indexed key.  With `initial`, the key's current state comes first
        (a sensor's latest sample, an immutable's value, an indexed key's whole
        dict).  Only the view's first prefix is watched.  Updates missed while a
        connection was down are recovered: a sensor's samples since the last one
        seen, an indexed key's new sub-keys, an immutable that appeared.
        """
        full_key = self._write_key(key)
        keys = (full_key,)
        subscription = await self._backend.subscribe(keys)
        last_ts: float | None = None
        seen: set[bytes] = set()  # sub-keys already yielded
        # Samples yielded from a read whose notification may still be on its way
        # (the subscription starts before the initial read, and catch-up reads overlap
        # notifications): each is skipped once when its notification arrives.
        read_ahead: set[tuple[float, bytes]] = set()
        try:
            found = await self._backend.get(keys)
            if found is not None:
                kind, payload, stamp = found[1], found[2], found[3]
                last_ts = stamp
                if isinstance(payload, dict):
                    seen.update(payload)
                elif stamp is not None and isinstance(payload, bytes):
                    read_ahead.add((stamp, payload))
                if initial:
                    yield decode_found(found, False), stamp
                if kind is KeyType.IMMUTABLE:
                    return
            while True:
                update = await subscription.get()
                if isinstance(update, KeyUpdate):
                    if update.key_type is KeyType.INDEXED:
                        assert update.sub_key is not None
                        if update.sub_key in seen:
                            continue
                        seen.add(update.sub_key)
                        yield {decode_value(update.sub_key): decode_value(update.value)}, None
                    else:
                        if update.timestamp is not None:
                            if (update.timestamp, update.value) in read_ahead:
                                read_ahead.discard((update.timestamp, update.value))
                                continue
                            last_ts = max(update.timestamp, last_ts or 0.0)
                        yield decode_value(update.value), update.timestamp
                        if update.key_type is KeyType.IMMUTABLE:
                            return
                    continue
                # Updates may have been missed: catch up from the stored data.
                found = await self._backend.get(keys)
                if found is None:
                    continue
                if found[1] is KeyType.MUTABLE:
                    query = resolve_range(
                        last_ts if last_ts is not None else 0.0, None, False, False
                    )
                    batch = await self._backend.get_range(keys, query)
                    encoded = batch.encoded() if batch is not None else []
                    for raw, stamp in encoded:
                        if last_ts is None or stamp > last_ts:
                            last_ts = stamp
                            read_ahead.add((stamp, raw))
                            yield decode_value(raw), stamp
                elif isinstance(found[2], dict):
                    for sub_key, value in found[2].items():
                        if sub_key not in seen:
                            seen.add(sub_key)
                            yield {decode_value(sub_key): decode_value(value)}, None
                else:
                    yield decode_found(found, False), None
                    return
        finally:
            await subscription.close()


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
    keys_written, keys_failed
        How many keys were written, and how many could not be (missing keys are
        logged, not raised).
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
        backend, temporary = _async_backend_of(client)
        try:
            names = (
                [ensure_bytes(key) for key in keys]
                if keys is not None
                else await backend.keys(b"*")
            )
            for start in range(0, len(names), 256):
                chunk = names[start : start + 256]
                snapshots = await backend.snapshot(chunk)
                await asyncio.to_thread(
                    self._writer.save_snapshots, zip(chunk, snapshots, strict=True)
                )
        finally:
            if temporary:
                await backend.release()  # type: ignore[attr-defined]

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


def _async_backend_of(client: Any) -> tuple[AsyncBackend, bool]:
    """The backend to save from, and whether it was made for the occasion."""
    if isinstance(client, TelescopeState):
        return client.backend, False
    if isinstance(client, AsyncBackend):
        return client, False
    import redis.asyncio

    if isinstance(client, redis.asyncio.Redis):
        from .redis import RedisBackend

        return RedisBackend(client), True
    raise TypeError(f"cannot save from {type(client).__name__}")


def _index(file: RdbSource) -> RdbIndex:
    data, name = read_source(file)
    return RdbIndex(data, name, verify_checksum=True)


async def _drive(backend: AsyncBackend, steps: Step, what: str, timeout: float | None) -> None:
    """Run wait steps against an asyncio backend, enforcing the timeout.

    The timeout bounds the waiting for updates, not the first look at the key: a
    wait that is already satisfied returns whatever the timeout (even 0).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    subscription: AsyncSubscription | None = None
    reply: Any = None
    # Calls made for the wait stop retrying at its end (a server down, say).
    with _deadline.until(deadline):
        try:
            while True:
                try:
                    request = steps.send(reply)
                except StopIteration:
                    return
                if isinstance(request, Call):
                    reply = await getattr(backend, request.method)(*request.args)
                elif isinstance(request, Subscribe):
                    async with asyncio.timeout_at(deadline):
                        subscription = await backend.subscribe(request.keys)
                    reply = None
                else:
                    assert isinstance(request, NextUpdate) and subscription is not None
                    async with asyncio.timeout_at(deadline):
                        reply = await subscription.get()
        except builtins.TimeoutError:
            raise wait_timed_out(what, timeout) from None
        except TimeoutError as exc:  # a call gave up at the deadline
            raise wait_timed_out(what, timeout, exc) from exc
        finally:
            steps.close()
            if subscription is not None:
                await subscription.close()
