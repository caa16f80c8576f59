"""The Redis backend (synchronous): telstate shared through a Redis server.

The commands and their meaning live in :mod:`._redis_protocol`; this module
sends them (through :mod:`._wire`, which bypasses redis-py's per-command
overhead) and maps failures to telstate's errors.  Waits use redis-py's pub/sub.

Failures: a command that meets a dropped connection is sent again once on a
fresh connection; telstate's writes are idempotent, so a retried write that
had already been applied changes nothing.  When the server stays
unreachable the call raises :class:`telstate.ConnectionError` naming the
server (never its password).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis

from .._errors import ConnectionError, ImmutableKeyError
from .._keys import KeyType
from .._logic import check_batch
from .._ranges import RangeQuery
from .._samples import SampleBatch
from .._updates import CHANNEL_PREFIX, KeyUpdate, Recheck
from ..rdb._load import merge_writes
from . import _redis_protocol as proto
from ._wire import RETRY_WINDOW, make_runner
from .base import Backend, Found, KeyStats, Subscription, Write

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["RedisBackend", "RedisConnectionError"]

# Clients are made with the call katsdptelstate makes, so that code which patches
# redis.Redis or redis.Redis.from_url to slip in a fake (as katsdptelstate's own tests
# do) sees the call it expects: give up on a silent server after 5 s, and notice dead
# connections ...
_CLIENT_KWARGS: dict[str, Any] = {"socket_timeout": 5.0, "health_check_interval": 30}
# ... then their pools are set up as telstate needs: new connections give up connecting
# after 3 s, so that an unreachable server fails within seconds, and there may be many
# (each sync waiter holds a pub/sub connection of the pool; redis-py 8 allows 100).
_CONNECT_TIMEOUT = 3.0
_MAX_CONNECTIONS = 1 << 16
# The same for the asyncio backend's pools, made in one go.
_CONNECT_KWARGS: dict[str, Any] = {**_CLIENT_KWARGS, "socket_connect_timeout": _CONNECT_TIMEOUT}


def _set_up_pool(client: redis.Redis, max_connections: int | None = None) -> redis.Redis:
    """`client`, its pool set up as above (`max_connections` if the caller chose it)."""
    pool = client.connection_pool
    pool.connection_kwargs.setdefault("socket_connect_timeout", _CONNECT_TIMEOUT)
    if max_connections is None:
        pool.max_connections = max(pool.max_connections, _MAX_CONNECTIONS)
    return client


def describe_server(client: Any) -> str:
    """Where a redis-py client connects, without credentials."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    # rediss:// URLs give SSLConnection (sync or asyncio) without any ssl_* option
    connection_class = getattr(pool, "connection_class", object)
    tls = any(cls.__name__ == "SSLConnection" for cls in connection_class.__mro__)
    scheme = "rediss" if tls or "ssl_cert_reqs" in kwargs or kwargs.get("ssl") else "redis"
    host, port, db = (
        kwargs.get("host", "localhost"),
        kwargs.get("port", 6379),
        kwargs.get("db") or 0,
    )
    return f"{scheme}://{host}:{port}/{db}"


# How a server's access control refuses a command.  redis-py strips the code from
# the errors it parses (NoPermissionError), raw hiredis replies keep it; a command
# inside a script is refused as "ERR The user executing the script can't ..."
# (Redis 6 and 7.0) or "ERR ACL failure in script: ..." (Redis 7.2 and later).
_REFUSALS = (
    "NOAUTH",
    "NOPERM",
    "WRONGPASS",
    "ACL failure in script",
    "The user executing the script can't",
)


def access_refused(error: BaseException) -> bool:
    """Whether a Redis error reply says the user may not do what was asked."""
    if isinstance(error, redis.exceptions.NoPermissionError):
        return True
    return str(error).removeprefix("ERR ").startswith(_REFUSALS)


def raise_error_replies(replies: Sequence[Any]) -> None:
    """Raise the first error reply among `replies` (inside :func:`redis_errors`)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


class RedisConnectionError(ConnectionError, redis.ConnectionError):
    """A Redis server could not be reached, or refused us.

    A :class:`telstate.ConnectionError` that is also redis-py's
    :class:`redis.ConnectionError`: katsdptelstate let redis-py's own errors
    through, so code written for it may catch those.  The Redis backends (sync
    and asyncio) raise this class; ``except telstate.ConnectionError`` catches it.
    """

    def __init__(self, message: str) -> None:
        redis.ConnectionError.__init__(self, message)  # sets redis-py's own attributes

    def __repr__(self) -> str:
        return BaseException.__repr__(self)  # the message, not just redis-py's error kind


@contextlib.contextmanager
def redis_errors(server: str, key: bytes | None = None) -> Iterator[None]:
    """Map redis-py failures to telstate errors."""
    try:
        yield
    except ConnectionError:
        raise  # already ours (it is also a redis.ConnectionError)
    except (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError) as exc:
        raise RedisConnectionError(
            f"redis server at {server} refused the credentials: {exc}"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if "certificate verify failed" in str(exc).lower():
            raise RedisConnectionError(
                f"TLS connection to redis server at {server} failed: {exc}"
            ) from exc
        raise RedisConnectionError(f"cannot reach redis server at {server}: {exc}") from exc
    except redis.ResponseError as exc:
        if access_refused(exc):
            raise RedisConnectionError(f"redis server at {server} refused access: {exc}") from None
        if key is not None and proto.is_wrongtype(exc):
            raise proto.wrong_type_for(key) from None
        raise


class _RedisSubscription(Subscription):
    """A pub/sub connection listening to the channels of some keys."""

    def __init__(self, backend: RedisBackend, keys: Sequence[bytes]) -> None:
        self._backend = backend
        self._types: dict[bytes, KeyType | None] = {}
        # Typed loosely: redis-py's hints for pubsub() and get_message() differ by release.
        make_pubsub: Any = backend.client.pubsub
        self._pubsub: Any = make_pubsub()
        channels = list(dict.fromkeys(CHANNEL_PREFIX + key for key in keys))
        with redis_errors(backend.server):
            self._pubsub.subscribe(*channels)
            # Wait for the confirmations: after them, no write to these keys can be missed.
            pending = set(channels)
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                message = self._pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    pending.discard(message["channel"])
            if pending:
                raise RedisConnectionError(
                    f"redis server at {backend.server} did not confirm SUBSCRIBE"
                )

    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        try:
            message = self._pubsub.get_message(timeout=timeout)
        except (redis.ConnectionError, redis.TimeoutError):
            # redis-py reconnects and resubscribes on the next call; meanwhile updates
            # may have been lost, so the waiter must look at the key again.
            time.sleep(min(0.1, timeout) if timeout is not None else 0.1)
            return Recheck()
        if message is None:
            return None
        if message["type"] == "subscribe":
            return Recheck()  # a re-subscription after a reconnection
        if message["type"] != "message":
            return None
        key = proto.channel_key(message["channel"])
        payload: bytes = message["data"]
        key_type = None
        if proto.needs_type(payload):
            if key not in self._types:
                self._types[key] = self._backend.key_type([key])
            key_type = self._types[key]
            if key_type is None:
                return Recheck()  # deleted since: nothing to learn from this update
        try:
            return proto.parse_message(key, payload, key_type)
        except ValueError:
            return Recheck()

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):  # closing a broken connection
            self._pubsub.close()


class RedisBackend(Backend):
    """Telescope state in a Redis server, shared by every client of that server.

    Parameters
    ----------
    client
        A :class:`redis.Redis` client (``decode_responses`` must be false).
        A fakeredis client works too, if its Lua support is installed.
    retry_window
        Seconds to keep retrying a call after its connection fails (the server
        restarting, say) before raising :class:`telstate.ConnectionError`.

    Raises
    ------
    ConnectionError
        If the server does not answer.
    """

    def __init__(self, client: redis.Redis, retry_window: float = RETRY_WINDOW) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the redis client must not decode responses (decode_responses=False)")
        self.client = client
        self.server = describe_server(client)
        self._runner = make_runner(client, proto.SCRIPTS, retry_window)
        with redis_errors(self.server):
            self._runner.one("PING", retry=False)  # an unreachable server fails at once

    @classmethod
    def from_url(
        cls, url: str, db: int | None = None, retry_window: float = RETRY_WINDOW, **kwargs: Any
    ) -> RedisBackend:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` `url` (with credentials if any).

        Parameters
        ----------
        url
            Server URL, e.g. ``redis://user:password@host:6379/0``.
        db
            Database number, if the URL names none (the URL's wins, as in redis-py).
        retry_window
            See the class.
        kwargs
            More options for :meth:`redis.Redis.from_url`.
        """
        client = redis.Redis.from_url(url, db=db, **{**_CLIENT_KWARGS, **kwargs})
        return cls(_set_up_pool(client, kwargs.get("max_connections")), retry_window)

    @classmethod
    def from_address(cls, host: str, port: int | None = None, db: int = 0) -> RedisBackend:
        """Connect to a server at `host` and `port` (default 6379)."""
        address: dict[str, Any] = {"host": host, "db": db}
        if port is not None:
            address["port"] = port
        return cls(_set_up_pool(redis.Redis(**address, **_CLIENT_KWARGS)))

    def __repr__(self) -> str:
        return f"<RedisBackend {self.server}>"

    def close(self) -> None:
        self._runner.close()
        self.client.close()

    def _script(self, name: str, keys: Sequence[bytes], args: Sequence[bytes] = ()) -> Any:
        with redis_errors(self.server, keys[0]):
            return self._runner.one("script", name, keys, args)

    # -- reads

    def get(self, keys: Sequence[bytes]) -> Found | None:
        return proto.parse_found(self._script("get", keys))

    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        with redis_errors(self.server):
            kinds = self._runner.run([("TYPE", key) for key in keys])
            raise_error_replies(kinds)
        for kind in kinds:
            if kind != b"none":
                return proto.TYPE_NAMES.get(kind)
        return None

    def exists(self, keys: Sequence[bytes]) -> bool:
        with redis_errors(self.server):
            return bool(self._runner.one("EXISTS", *keys))

    def keys(self, pattern: bytes) -> list[bytes]:
        found: set[bytes] = set()
        cursor = b"0"
        with redis_errors(self.server):
            while True:
                cursor, batch = self._runner.one(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", proto.SCAN_COUNT
                )
                found.update(batch)
                if cursor in (b"0", 0):
                    return list(found)

    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        return proto.parse_get_indexed(self._script("get_indexed", keys, [sub_key]))

    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        commands = [("MULTI",), *proto.range_commands(keys, query), ("EXEC",)]
        with redis_errors(self.server):
            queued = self._runner.run(commands)
            raise_error_replies(queued)  # a command refused while queueing aborts EXEC
            return proto.parse_range(keys, query, queued[-1])

    # -- writes

    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        return self._script("set_immutable", [key], [value])  # type: ignore[no-any-return]

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        self._script("add_mutable", [key], [proto.member(timestamp, value)])

    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        return self._script("set_indexed", [key], [sub_key, value])  # type: ignore[no-any-return]

    def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        calls = proto.batch_calls(writes)
        with redis_errors(self.server):
            replies = self._runner.run(
                [("script", script, keys, args) for script, keys, args, _ in calls]
            )
            return proto.parse_batch(writes, calls, replies)

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        with redis_errors(self.server):
            first = self._runner.run(
                [command for key in keys for command in (("TYPE", key), ("MEMORY", "USAGE", key))]
            )
            kinds, usage = first[0::2], first[1::2]
            raise_error_replies(kinds)
            replies = self._runner.run(proto.stats_commands(keys, kinds))
        return proto.parse_stats(kinds, replies, usage)

    def load_rdb(self, index: RdbIndex) -> int:
        # Each key the server lacks is sent whole as a RESTORE payload (the file's own
        # bytes, no decoding); keys that exist, or that the server cannot RESTORE (an
        # encoding newer than it knows), are merged with ordinary writes.  A worker
        # thread builds (and checksums) the next batch of payloads while the server
        # restores the current one.
        keys = list(index.entries)
        merge: list[bytes] = []
        with concurrent.futures.ThreadPoolExecutor(1, "telstate-restore") as pool:
            batches = proto.restore_batches(index, keys)
            pending = pool.submit(next, batches, None)
            while (batch := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                commands = [("RESTORE", key, 0, payload) for key, payload in batch]
                with redis_errors(self.server):
                    replies = self._runner.run(commands)
                merge += [
                    key
                    for (key, _), reply in zip(batch, replies, strict=True)
                    if not proto.restored(reply)
                ]
        if merge:
            writes = [write for key in merge for write in merge_writes(index, key)]
            check_batch(writes, None, self.write_batch(writes))
        return len(keys)

    def delete(self, keys: Sequence[bytes]) -> None:
        with redis_errors(self.server):
            self._runner.one("UNLINK", *keys)

    def clear(self) -> None:
        with redis_errors(self.server):
            self._runner.one("FLUSHDB", "ASYNC")

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return _RedisSubscription(self, keys)
