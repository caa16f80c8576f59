"""The Redis backend for asyncio: the plans of the sync backend, awaited.

Every operation is the same plan as in :mod:`telstate.backends.redis` (from
``telstate.backends._redis_protocol``), run by the asyncio driver of the one
Redis transport (``telstate._redis.aio``): same commands, same retries, same
Sentinel failover, same ``WAIT`` for replicas.  Waits share ONE pub/sub
connection per backend (the transport's hub), however many there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from .._arrays import SampleArrays
from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._ranges import RangeQuery
from .._redis import config as _config
from .._redis.aio import AsyncSubscription as _HubSubscription
from .._redis.aio import AsyncTransport
from .._redis.session import MISS, Scripts, first_contact
from .._samples import SampleBatch
from .._updates import KeyUpdate, Recheck
from ..backends import _redis_protocol as proto
from ..backends.base import Found, KeyStats, Snapshot, Write
from ..backends.redis import (
    _CLIENT_KWARGS,
    RETRY_WINDOW,
    RedisBackendCommon,
    sentinel_config,
    transport_config,
    url_config,
)
from .backend import AsyncBackend, AsyncSubscription

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["RedisBackend"]

_SCRIPTS = Scripts(proto.SCRIPTS)
_QUICK = proto.QuickCalls(_SCRIPTS)


class RedisBackend(RedisBackendCommon, AsyncBackend):
    """Telescope state in Redis, for asyncio.

    Parameters
    ----------
    client
        A :class:`redis.asyncio.Redis` client (``decode_responses`` must be false),
        including one from ``redis.asyncio.sentinel.Sentinel(...).master_for``; a
        fakeredis client works too.  Unlike :meth:`from_url`, this does not check
        that the server answers.
    retry_window, min_replicas
        See :class:`telstate.backends.redis.RedisBackend`.
    """

    _transport: AsyncTransport

    def __init__(
        self,
        client: redis.asyncio.Redis | None = None,
        retry_window: float = RETRY_WINDOW,
        *,
        min_replicas: int = 0,
        config: _config.ServerConfig | None = None,
    ) -> None:
        foreign = None
        if config is None:
            if client is None:
                raise TypeError("RedisBackend needs a redis client (or use from_url)")
            config, foreign = transport_config(client, retry_window, min_replicas)
        self.client = client
        self._transport = AsyncTransport(config, _SCRIPTS, foreign)
        self._immutables: set[bytes] = set()  # keys last seen holding an immutable
        self._closing: asyncio.Task[None] | None = None

    async def _first_contact(self) -> RedisBackend:
        """PING without retries: an unreachable server or refused credentials fail at once."""
        transport = self._transport
        try:
            await transport.drive(first_contact(transport.topology, transport.scripts))
        except BaseException:
            await self.wait_closed()
            raise
        return self

    @classmethod
    async def from_url(
        cls,
        url: str,
        db: int | None = None,
        retry_window: float | None = None,
        min_replicas: int | None = None,
        **options: Any,
    ) -> RedisBackend:
        """Connect to the deployment a URL names, and check that it answers.

        See :meth:`telstate.backends.redis.RedisBackend.from_url`.

        Raises
        ------
        ConnectionError
            If the deployment cannot be reached (at once: the first contact is not retried).
        """
        config = url_config(url, db, retry_window, min_replicas, **options)
        if config.kind == "server":
            client = redis.asyncio.Redis.from_url(url, db=db, **_CLIENT_KWARGS)
            if _config.from_client(client) is None:  # a fake slipped in by a test
                backend = cls(client, config.retry_window, min_replicas=config.min_replicas)
                return await backend._first_contact()
            await client.aclose()
        return await cls(config=config)._first_contact()

    @classmethod
    async def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int] | str],
        service: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        sentinel_username: str | None = None,
        sentinel_password: str | None = None,
        min_replicas: int = 0,
        retry_window: float = RETRY_WINDOW,
        **options: Any,
    ) -> RedisBackend:
        """Connect to the primary of `service` and follow failovers.

        See :meth:`telstate.backends.redis.RedisBackend.from_sentinel`.
        """
        config = sentinel_config(
            sentinels,
            service,
            db=db,
            username=username,
            password=password,
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
            min_replicas=min_replicas,
            retry_window=retry_window,
            **options,
        )
        return await cls(config=config)._first_contact()

    def __repr__(self) -> str:
        return f"<telstate.aio.redis.RedisBackend {self.server}>"

    def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        await self._transport.aclose()
        if self.client is not None:
            await self.client.aclose()

    async def release(self) -> None:
        """Close telstate's own connections, leaving the client given to it open."""
        await self._transport.aclose()

    async def wait_closed(self) -> None:
        self.close()
        assert self._closing is not None
        await self._closing

    async def _run(self, plan: proto.Plan[Any]) -> Any:
        """Run a plan: each batch through the transport."""
        transport = self._transport
        replies: Any = None
        try:
            while True:
                batch = plan.send(replies)
                replies = await transport.run(batch.commands, writes=batch.writes)
        except StopIteration as done:
            return done.value

    async def _rerun(self, plan: proto.Plan[Any]) -> Any:
        """Run the plan of a call whose quick try did not answer: its whole plan at once
        (a first try would meet what the quick one met)."""
        transport = self._transport
        replies: Any = None
        try:
            while True:
                batch = plan.send(replies)
                replies = await transport.drive(transport.call(batch.commands, batch.writes))
        except StopIteration as done:
            return done.value

    # -- reads

    # The hot operations try the transport's quick lane first (see proto.QuickCalls)

    async def get(self, keys: Sequence[bytes]) -> Found | None:
        if len(keys) == 1:
            key = keys[0]
            plain = key in self._immutables
            reply = await self._transport.quick(_QUICK.read(key, plain))
            if reply is not MISS:
                return proto.quick_found(reply, key, plain, self._immutables)
            self._immutables.discard(key)
            return await self._rerun(proto.get_plan(keys, self._cluster))  # type: ignore[no-any-return]
        return await self._run(proto.get_plan(keys, self._cluster))  # type: ignore[no-any-return]

    async def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        return await self._run(proto.key_type_plan(keys, self._cluster))  # type: ignore[no-any-return]

    async def exists(self, keys: Sequence[bytes]) -> bool:
        return await self._run(proto.exists_plan(keys, self._cluster))  # type: ignore[no-any-return]

    async def keys(self, pattern: bytes) -> list[bytes]:
        return await self._run(proto.keys_plan(pattern))  # type: ignore[no-any-return]

    async def get_indexed(
        self, keys: Sequence[bytes], sub_key: bytes
    ) -> tuple[int, bytes | None] | None:
        return await self._run(proto.get_indexed_plan(keys, sub_key, self._cluster))  # type: ignore[no-any-return]

    async def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        return await self._run(proto.get_range_plan(keys, query, self._cluster))  # type: ignore[no-any-return]

    async def get_ranges(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleBatch | None]:
        return await self._run(proto.get_ranges_plan(candidates, query, self._cluster))  # type: ignore[no-any-return]

    async def get_range_arrays(
        self, keys: Sequence[bytes], query: RangeQuery
    ) -> SampleArrays | None:
        return await self._run(proto.get_range_arrays_plan(keys, query, self._cluster))  # type: ignore[no-any-return]

    async def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        return await self._run(proto.get_ranges_arrays_plan(candidates, query, self._cluster))  # type: ignore[no-any-return]

    async def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        return await self._run(proto.stats_plan(keys))  # type: ignore[no-any-return]

    async def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        return await self._run(proto.snapshot_plan(keys))  # type: ignore[no-any-return]

    async def server_info(self) -> dict[str, str]:
        """What the server says of itself: ``product`` (Redis or Valkey), ``version``,
        ``used_memory``, ``db`` and ``keys`` (in that database)."""
        db = self._transport.config.db
        return await self._run(proto.server_info_plan(db))  # type: ignore[no-any-return]

    async def dumps(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """DUMP payloads of `keys` (None where absent), for writing RDB files."""
        return await self._run(proto.dumps_plan(keys))  # type: ignore[no-any-return]

    # -- writes

    async def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        reply = await self._transport.quick(_QUICK.set_immutable(key, value), True)
        if reply is not MISS:
            return reply  # type: ignore[no-any-return]
        return await self._rerun(proto.set_immutable_plan(key, value))  # type: ignore[no-any-return]

    async def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        if await self._transport.quick(_QUICK.add_mutable(key, value, timestamp), True) is MISS:
            await self._rerun(proto.add_mutable_plan(key, value, timestamp))

    async def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        return await self._run(proto.set_indexed_plan(key, sub_key, value))  # type: ignore[no-any-return]

    async def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        return await self._run(proto.write_batch_plan(writes, self._cluster))  # type: ignore[no-any-return]

    async def delete(self, keys: Sequence[bytes]) -> None:
        await self._run(proto.delete_plan(keys, self._cluster))

    async def clear(self) -> None:
        await self._run(proto.clear_plan())

    async def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        # As the sync backend: RESTORE payloads built in a worker thread while the
        # server restores the previous batch; keys that exist are returned.
        keys = list(index.entries)
        merge: list[bytes] = []
        batches = proto.restore_batches(index, keys)
        pending = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
            merge += await self._run(proto.restore_plan(batch))
        return merge

    # -- waits

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        return _RedisSubscription(self, await self._transport.subscribe(keys))


class _RedisSubscription(AsyncSubscription):
    """The updates of some keys, from the transport's shared pub/sub hub."""

    def __init__(self, backend: RedisBackend, subscription: _HubSubscription) -> None:
        self._backend = backend
        self._subscription = subscription
        self._types: dict[bytes, KeyType | None] = {}

    async def get(self) -> KeyUpdate | Recheck:
        item = await self._subscription.get()
        if isinstance(item, Recheck):
            return item
        return await self._backend._run(proto.update_plan(item.key, item.payload, self._types))  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._subscription.close()
