"""The Redis backend for asyncio, on ``redis.asyncio``.

The commands are those of the sync backend (:mod:`telstate.backends._redis_protocol`).
Waits share ONE pub/sub connection per backend: a hub task reads it and hands
each message to the waiters of its channel, subscribing a channel when its first
waiter arrives and unsubscribing when its last one leaves, so thousands of
concurrent waiters cost one connection.  A waiter is registered only once the
server has confirmed the subscription, so no write after that can be missed.
If the connection drops, redis-py reconnects and subscribes again; the hub then
tells every waiter to look at its key again (:class:`Recheck`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from .._errors import ConnectionError, ImmutableKeyError
from .._keys import KeyType
from .._logic import check_batch
from .._ranges import RangeQuery
from .._samples import SampleBatch
from .._updates import CHANNEL_PREFIX, KeyUpdate, Recheck
from ..backends import _redis_protocol as proto
from ..backends._wire import _FIRST_DELAY, _MAX_DELAY, RETRY_WINDOW
from ..backends.base import Found, KeyStats, Snapshot, Write, snapshot_steps
from ..backends.redis import (
    _CONNECT_KWARGS,
    RedisConnectionError,
    describe_server,
    raise_error_replies,
    redis_errors,
)
from ..rdb._load import merge_writes
from .backend import AsyncBackend, AsyncSubscription

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["RedisBackend"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_RECONNECT_DELAY = 0.1
_MAX_CONNECTIONS = 32  # per backend; more concurrent calls wait for a free one


class _Subscription(AsyncSubscription):
    def __init__(self, hub: _Hub, channels: tuple[bytes, ...]) -> None:
        self.hub = hub
        self.channels = channels
        self.queue: asyncio.Queue[KeyUpdate | Recheck] = asyncio.Queue()

    async def get(self) -> KeyUpdate | Recheck:
        return await self.queue.get()

    async def close(self) -> None:
        await self.hub.remove(self)


class _Hub:
    """One pub/sub connection serving every waiter of a backend."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.pubsub: Any = None
        self.waiters: dict[bytes, set[_Subscription]] = {}
        self.confirmed: dict[bytes, asyncio.Event] = {}
        self.types: dict[bytes, KeyType | None] = {}
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        # A SUBSCRIBE the server refused (ACL), for the waiters still waiting for theirs
        self.refusal: redis.ResponseError | None = None

    async def add(self, keys: Sequence[bytes]) -> _Subscription:
        channels = tuple(dict.fromkeys(CHANNEL_PREFIX + key for key in keys))
        subscription = _Subscription(self, channels)
        async with self.lock:
            if self.pubsub is None:
                self.pubsub = self.backend.client.pubsub()
            new = [channel for channel in channels if channel not in self.waiters]
            for channel in channels:
                self.waiters.setdefault(channel, set()).add(subscription)
            for channel in new:
                self.confirmed[channel] = asyncio.Event()
            if new:
                with redis_errors(self.backend.server):
                    await self.pubsub.subscribe(*new)
            if self.task is None or self.task.done():
                self.task = asyncio.create_task(self._read(), name="telstate pub/sub hub")
        events = [self.confirmed[channel] for channel in channels]
        try:
            async with asyncio.timeout(10):
                for event in events:
                    await event.wait()
        except TimeoutError:
            await self.remove(subscription)
            raise RedisConnectionError(
                f"redis server at {self.backend.server} did not confirm SUBSCRIBE"
            ) from None
        except BaseException:  # cancelled while waiting: leave nothing subscribed
            await asyncio.shield(self.remove(subscription))
            raise
        refusal = self.refusal
        if refusal is not None:
            self.refusal = None
            await self.remove(subscription)
            raise RedisConnectionError(
                f"redis server at {self.backend.server} refused access: {refusal}"
            ) from None
        return subscription

    async def remove(self, subscription: _Subscription) -> None:
        async with self.lock:
            gone = []
            for channel in subscription.channels:
                waiters = self.waiters.get(channel)
                if waiters is None:
                    continue
                waiters.discard(subscription)
                if not waiters:
                    del self.waiters[channel]
                    self.confirmed.pop(channel, None)
                    gone.append(channel)
            if gone and self.pubsub is not None:
                # Best effort, and never in place of the error that ended the wait: on a
                # connection it has just dropped, redis-py raises AttributeError.
                with contextlib.suppress(redis.RedisError, OSError, AttributeError):
                    await self.pubsub.unsubscribe(*gone)

    def _broadcast(self, channel: bytes, item: KeyUpdate | Recheck) -> None:
        for subscription in self.waiters.get(channel, ()):
            subscription.queue.put_nowait(item)

    async def _read(self) -> None:
        while self.waiters or self.confirmed:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                logger.warning("pub/sub connection to %s lost: %s", self.backend.server, exc)
                for channel in list(self.waiters):
                    self._broadcast(channel, Recheck())
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            except redis.ResponseError as exc:  # a refused SUBSCRIBE: tell its waiters
                self.refusal = exc
                for channel, pending in list(self.confirmed.items()):
                    if not pending.is_set():
                        self.confirmed.pop(channel)
                        pending.set()
                continue
            if message is None:
                continue
            channel = message["channel"]
            if message["type"] == "subscribe":
                event = self.confirmed.get(channel)
                if event is not None:
                    if event.is_set():  # subscribed again after a reconnection
                        self._broadcast(channel, Recheck())
                    event.set()
            elif message["type"] == "message":
                await self._deliver(channel, message["data"])

    async def _deliver(self, channel: bytes, payload: bytes) -> None:
        key = proto.channel_key(channel)
        key_type = None
        if proto.needs_type(payload):
            if key not in self.types:
                self.types[key] = await self.backend.key_type([key])
            key_type = self.types[key]
            if key_type is None:
                self._broadcast(channel, Recheck())
                return
        try:
            update: KeyUpdate | Recheck = proto.parse_message(key, payload, key_type)
        except ValueError:
            update = Recheck()
        self._broadcast(channel, update)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, redis.RedisError):
                await self.task
        if self.pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                await self.pubsub.aclose()
        self.waiters.clear()
        self.confirmed.clear()


def _retries(window: float) -> int:
    """How many retries, with the backoff used, fit in about `window` seconds."""
    count, delay, spent = 0, _FIRST_DELAY, 0.0
    while spent + delay <= window:
        spent += delay
        count += 1
        delay = min(2 * delay, _MAX_DELAY)
    return count


def _refused(error: Exception) -> bool:
    """Failures that trying again cannot mend: credentials, TLS certificates."""
    return isinstance(error, redis.AuthenticationError) or "SSL" in str(error)


class _Retry(Retry):
    """redis-py's retry, except for refused credentials and certificates."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[_T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> _T:
        def retryable(error: Exception) -> bool:
            return not _refused(error) and (is_retryable is None or is_retryable(error))

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


class RedisBackend(AsyncBackend):
    """Telescope state in a Redis server, for asyncio.

    Parameters
    ----------
    client
        A :class:`redis.asyncio.Redis` client (``decode_responses`` must be false).
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        if client.get_connection_kwargs().get("decode_responses"):  # type: ignore[no-untyped-call]
            raise ValueError("the redis client must not decode responses (decode_responses=False)")
        self.client = client
        self.server = describe_server(client)
        self._scripts = {name: client.register_script(text) for name, text in proto.SCRIPTS.items()}
        self._hub = _Hub(self)
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def from_url(
        cls, url: str, db: int | None = None, retry_window: float = RETRY_WINDOW, **kwargs: Any
    ) -> RedisBackend:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` `url` and check the server answers.

        Parameters
        ----------
        url
            Server URL, with credentials if needed.
        db
            Database number, if the URL names none (the URL's wins, as in redis-py).
        retry_window
            About how many seconds calls keep retrying after a connection failure
            (backoff from 50 ms doubling to 1 s) before raising ConnectionError.
        kwargs
            More options for :class:`redis.asyncio.BlockingConnectionPool`.

        Raises
        ------
        ConnectionError
            If the server cannot be reached (at once: the first contact is not retried).
        """
        # No socket_timeout: redis-py then wraps every read in asyncio.wait_for, which on
        # Python 3.11 can swallow a task's cancellation.  A blocking pool makes thousands
        # of concurrent calls queue for a connection instead of failing.  Retries as the
        # sync backend's (writes are idempotent); their sleeps let other tasks run.
        retry = _Retry(
            ExponentialBackoff(cap=_MAX_DELAY, base=_FIRST_DELAY), _retries(retry_window)
        )
        options: dict[str, Any] = {
            **_CONNECT_KWARGS,
            "socket_timeout": None,
            "retry": retry,
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError, OSError],
            **kwargs,
        }
        if db is not None:
            options["db"] = db
        options["max_connections"] = kwargs.get("max_connections", _MAX_CONNECTIONS)
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, timeout=None, **options)
        backend = cls(redis.asyncio.Redis.from_pool(pool))  # the client owns the pool
        # The first contact, on a connection of its own without retries: an unreachable
        # server or refused credentials fail at once.
        probe = pool.connection_class(**{**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
        try:
            with redis_errors(backend.server):
                await probe.connect()  # type: ignore[no-untyped-call]
                await probe.send_command("PING")
                await probe.read_response()
        except ConnectionError:
            await backend.client.aclose()
            raise
        finally:
            await probe.disconnect()
        return backend

    def __repr__(self) -> str:
        return f"<telstate.aio.redis.RedisBackend {self.server}>"

    def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        await self._hub.close()
        await self.client.aclose()

    async def wait_closed(self) -> None:
        self.close()
        assert self._closing is not None
        await self._closing

    # -- reads

    async def get(self, keys: Sequence[bytes]) -> Found | None:
        with redis_errors(self.server, keys[0]):
            return proto.parse_found(await self._scripts["get"](keys=keys))

    async def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        with redis_errors(self.server):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                kinds: list[bytes] = await pipe.execute()
        for kind in kinds:
            if kind != b"none":
                return proto.TYPE_NAMES.get(kind)
        return None

    async def exists(self, keys: Sequence[bytes]) -> bool:
        with redis_errors(self.server):
            return bool(await self.client.exists(*keys))

    async def keys(self, pattern: bytes) -> list[bytes]:
        with redis_errors(self.server):
            return list(
                {key async for key in self.client.scan_iter(match=pattern, count=proto.SCAN_COUNT)}
            )

    async def get_indexed(
        self, keys: Sequence[bytes], sub_key: bytes
    ) -> tuple[int, bytes | None] | None:
        with redis_errors(self.server, keys[0]):
            reply = await self._scripts["get_indexed"](keys=keys, args=[sub_key])
        return proto.parse_get_indexed(reply)

    async def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        with redis_errors(self.server):
            async with self.client.pipeline(transaction=True) as pipe:
                for command in proto.range_commands(keys, query):
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
            return proto.parse_range(keys, query, replies)

    # -- writes

    async def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        with redis_errors(self.server, key):
            return await self._scripts["set_immutable"](keys=[key], args=[value])  # type: ignore[no-any-return]

    async def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        with redis_errors(self.server, key):
            await self._scripts["add_mutable"](keys=[key], args=[proto.member(timestamp, value)])

    async def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        with redis_errors(self.server, key):
            return await self._scripts["set_indexed"](keys=[key], args=[sub_key, value])  # type: ignore[no-any-return]

    async def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        calls = proto.batch_calls(writes)
        with redis_errors(self.server):
            for attempt in (0, 1):
                # A server restarted under the pipeline forgets the scripts: build the
                # pipeline again (it loads them first).  Writes are idempotent: resending
                # them is safe.
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for script, keys, args, _ in calls:
                            await self._scripts[script](keys=keys, args=args, client=pipe)
                        replies = await pipe.execute(raise_on_error=False)
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    continue
                if attempt or not any(
                    isinstance(reply, redis.exceptions.NoScriptError) for reply in replies
                ):
                    break
            return proto.parse_batch(writes, calls, replies)

    async def delete(self, keys: Sequence[bytes]) -> None:
        with redis_errors(self.server):
            await self.client.unlink(*keys)

    async def clear(self) -> None:
        with redis_errors(self.server):
            await self.client.flushdb(asynchronous=True)

    async def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        with redis_errors(self.server):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.type(key)
                    pipe.execute_command("MEMORY", "USAGE", key)
                first = await pipe.execute(raise_on_error=False)
            kinds, usage = first[0::2], first[1::2]
            raise_error_replies(kinds)
            async with self.client.pipeline(transaction=False) as pipe:
                for command in proto.stats_commands(keys, kinds):
                    pipe.execute_command(*command)
                replies = await pipe.execute()
        return proto.parse_stats(kinds, replies, usage)

    async def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        result: list[Snapshot | None] = []
        for key in keys:
            steps = snapshot_steps(key)
            reply: Any = None
            try:
                while True:
                    method, args = steps.send(reply)
                    reply = await getattr(self, method)(*args)
            except StopIteration as done:
                result.append(done.value)
        return result

    async def load_rdb(self, index: RdbIndex) -> int:
        keys = list(index.entries)
        merge: list[bytes] = []
        batches = proto.restore_batches(index, keys)
        pending = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
            with redis_errors(self.server):
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, payload in batch:
                        pipe.execute_command("RESTORE", key, 0, payload)
                    replies = await pipe.execute(raise_on_error=False)
            merge += [
                key
                for (key, _), reply in zip(batch, replies, strict=True)
                if not proto.restored(reply)
            ]
        if merge:
            writes = await asyncio.to_thread(
                lambda: [write for key in merge for write in merge_writes(index, key)]
            )
            check_batch(writes, None, await self.write_batch(writes))
        return len(keys)

    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription:
        return await self._hub.add(keys)
