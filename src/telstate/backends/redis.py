"""The Redis backend (synchronous): telstate shared through Redis.

Each operation is a plan of ``telstate.backends._redis_protocol`` (the commands and
what their replies mean), run by the blocking driver of the one Redis transport
(``telstate._redis``), which adds retries, Sentinel failover, cluster routing and
``WAIT`` for replicas.  The asyncio backend runs the same plans on the same rules.

Deployments: one server (``redis://``, ``rediss://``, ``unix://``, ``host:port``, or
your own :class:`redis.Redis`), a service behind Redis Sentinel (``redis+sentinel://``,
:meth:`RedisBackend.from_sentinel`, or a client made by
``redis.sentinel.Sentinel.master_for``), or a Redis / Valkey Cluster (the URL of any
node, or several: detected).  Clients that telstate cannot reproduce
with its own sockets (fakeredis, custom connection classes) are driven through
their own connections, with the same rules.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from .._arrays import SampleArrays
from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._ranges import RangeQuery
from .._redis import config as _config
from .._redis.base import TransportState
from .._redis.errors import RedisConnectionError
from .._redis.session import MISS, Scripts, first_contact
from .._redis.sync import SyncSubscription, SyncTransport
from .._samples import SampleBatch
from .._updates import KeyUpdate, Recheck
from . import _redis_protocol as proto
from .base import Backend, Found, KeyStats, Snapshot, Subscription, Write

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["RETRY_WINDOW", "RedisBackend", "RedisConnectionError"]

#: Default seconds a call keeps retrying after a connection failure.
RETRY_WINDOW = 5.0
# Clients for host:port and redis:// URLs are made with the call katsdptelstate makes,
# so that code which patches redis.Redis or redis.Redis.from_url to slip in a fake (as
# katsdptelstate's own tests do, and so may its users') gets the fake.
_CLIENT_KWARGS: dict[str, Any] = {"socket_timeout": 5, "health_check_interval": 30}
_SCRIPTS = Scripts(proto.SCRIPTS)
_QUICK = proto.QuickCalls(_SCRIPTS)


def describe_server(client: Any) -> str:
    """Where a redis-py-compatible client connects, without credentials."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = (
        kwargs.get("host", "localhost"),
        kwargs.get("port", 6379),
        kwargs.get("db") or 0,
    )
    return f"redis://{host}:{port}/{db}"


def transport_config(
    client: Any, retry_window: float, min_replicas: int
) -> tuple[_config.ServerConfig, Any]:
    """The deployment of a redis-py client, and the client itself if it must carry the bytes."""
    options: dict[str, Any] = {"retry_window": retry_window, "min_replicas": min_replicas}
    config = _config.from_client(client, **options)
    if config is not None:
        return config, None
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ValueError("the redis client must not decode responses (decode_responses=False)")
    label = describe_server(client)
    return _config.ServerConfig(kind="server", addresses=(label,), label=label, **options), client


def url_config(
    url: str, db: int | None, retry_window: float | None, min_replicas: int | None, **options: Any
) -> _config.ServerConfig:
    """The deployment of a ``from_url`` call (`db` counts only if the URL names none)."""
    config = _config.parse_url(url, retry_window=retry_window, min_replicas=min_replicas, **options)
    if db is not None and not config.db and "db=" not in url:
        config = config.replace(db=db)
    return config


def sentinel_config(
    sentinels: Sequence[tuple[str, int] | str], service: str, **options: Any
) -> _config.ServerConfig:
    """The deployment of a ``from_sentinel`` call (options as URL parameters)."""
    hosts = ",".join(
        item if isinstance(item, str) else _config.host_text(item) for item in sentinels
    )
    db = options.pop("db", 0)
    return _config.parse_url(f"redis+sentinel://{hosts}/{service}", db=db or None, **options)


class RedisBackendCommon:
    """What the sync and asyncio Redis backends share: where the data is, and how it is kept."""

    _transport: TransportState

    @property
    def server(self) -> str:
        """Where the data is (the current primary behind Sentinel), without credentials."""
        return self._transport.describe()

    @property
    def _cluster(self) -> bool:
        return self._transport.topology.cluster is not None

    @property
    def cluster(self) -> bool:
        """Whether the data is on a Redis (or Valkey) Cluster."""
        return self._cluster

    @property
    def min_replicas(self) -> int:
        """Replicas that must have each write before it returns (0 for no waiting)."""
        return self._transport.config.min_replicas

    @property
    def supports_dump(self) -> bool:
        """Whether the data is on a real Redis server (whose DUMP payloads are RDB)."""
        return self._transport.foreign is None


class RedisBackend(RedisBackendCommon, Backend):
    """Telescope state in Redis, shared by every client of the deployment.

    Parameters
    ----------
    client
        A :class:`redis.Redis` client (``decode_responses`` must be false), including
        one from ``redis.sentinel.Sentinel(...).master_for(service)``; a fakeredis
        client works too.  telstate makes its own connections like the client's.
    retry_window
        Seconds a call keeps retrying after a connection failure (a server
        restarting, a failover) before raising :class:`telstate.ConnectionError`.
    min_replicas
        Writes return only once the primary and this many replicas have them
        (``WAIT``); if they cannot be confirmed within the retry window,
        :class:`telstate.UnconfirmedWriteError`.  0 (the default): don't wait.

    Raises
    ------
    ConnectionError
        If the deployment does not answer (at once: the first contact is not retried).
    """

    _transport: SyncTransport

    def __init__(
        self,
        client: redis.Redis | None = None,
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
        self._transport = SyncTransport(config, _SCRIPTS, foreign)
        self._immutables: set[bytes] = set()  # keys last seen holding an immutable
        try:
            self._transport.drive(first_contact(self._transport.topology, _SCRIPTS))
        except BaseException:
            self._transport.close()
            raise

    @classmethod
    def from_url(
        cls,
        url: str,
        db: int | None = None,
        retry_window: float | None = None,
        min_replicas: int | None = None,
        **options: Any,
    ) -> RedisBackend:
        """Connect to the deployment a URL names.

        Parameters
        ----------
        url
            ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS),
            ``unix:///path/redis.sock``, or
            ``redis+sentinel://[user:password@]host1:26379,host2:26379/SERVICE[/db]``;
            see the README for the query parameters.
        db
            Database number, if the URL names none.
        retry_window, min_replicas
            See the class (they may also be query parameters of the URL).
        options
            More options, as the URL's query parameters (``ssl_ca_certs``, ...).

        Raises
        ------
        ConnectionError
            If the deployment cannot be reached.
        ValueError
            If the URL is not understood.
        """
        config = url_config(url, db, retry_window, min_replicas, **options)
        if config.kind == "server":
            client = redis.Redis.from_url(url, db=db, **_CLIENT_KWARGS)
            if _config.from_client(client) is None:  # a fake slipped in by a test
                return cls(client, config.retry_window, min_replicas=config.min_replicas)
            client.close()
        return cls(config=config)

    @classmethod
    def from_address(cls, host: str, port: int | None = None, db: int = 0) -> RedisBackend:
        """Connect to a server at `host` and `port` (default 6379)."""
        address: dict[str, Any] = {"host": host, "db": db}
        if port is not None:
            address["port"] = port
        client = redis.Redis(**address, **_CLIENT_KWARGS)
        if _config.from_client(client) is None:  # a fake slipped in by a test
            return cls(client)
        config = _config.ServerConfig(
            kind="server", addresses=((host, 6379 if port is None else port),), db=db
        )
        return cls(config=config)

    @classmethod
    def from_sentinel(
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
        """Connect to the primary of `service`, as the sentinels name it, and follow failovers.

        Parameters
        ----------
        sentinels
            The sentinels, as ``(host, port)`` or ``'host[:port]'`` (port 26379).
        service
            The sentinels' name for the deployment.
        db, username, password
            Database and credentials on the data servers.
        sentinel_username, sentinel_password
            Credentials on the sentinels.
        min_replicas, retry_window
            See the class.
        options
            TLS and timeout options, as the query parameters of a URL.
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
        return cls(config=config)

    def __repr__(self) -> str:
        return f"<RedisBackend {self.server}>"

    def close(self) -> None:
        self._transport.close()
        if self.client is not None:
            self.client.close()

    def release(self) -> None:
        """Close telstate's own connections, leaving the client given to it open."""
        self._transport.close()

    def _run(self, plan: proto.Plan[Any]) -> Any:
        """Run a plan: each batch through the transport."""
        transport = self._transport
        replies: Any = None
        try:
            while True:
                batch = plan.send(replies)
                replies = transport.run(batch.commands, writes=batch.writes)
        except StopIteration as done:
            return done.value

    def _rerun(self, plan: proto.Plan[Any]) -> Any:
        """Run the plan of a call whose quick try did not answer: its whole plan at once
        (a first try would meet what the quick one met)."""
        transport = self._transport
        replies: Any = None
        try:
            while True:
                batch = plan.send(replies)
                replies = transport.drive(transport.call(batch.commands, batch.writes))
        except StopIteration as done:
            return done.value

    # -- reads

    # The hot operations try the transport's quick lane first (see proto.QuickCalls)

    def get(self, keys: Sequence[bytes]) -> Found | None:
        if len(keys) == 1:
            key = keys[0]
            plain = key in self._immutables
            reply = self._transport.quick(_QUICK.read(key, plain))
            if reply is not MISS:
                return proto.quick_found(reply, key, plain, self._immutables)
            self._immutables.discard(key)
            return self._rerun(proto.get_plan(keys, self._cluster))  # type: ignore[no-any-return]
        return self._run(proto.get_plan(keys, self._cluster))  # type: ignore[no-any-return]

    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        return self._run(proto.key_type_plan(keys, self._cluster))  # type: ignore[no-any-return]

    def exists(self, keys: Sequence[bytes]) -> bool:
        return self._run(proto.exists_plan(keys, self._cluster))  # type: ignore[no-any-return]

    def keys(self, pattern: bytes) -> list[bytes]:
        return self._run(proto.keys_plan(pattern))  # type: ignore[no-any-return]

    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        return self._run(proto.get_indexed_plan(keys, sub_key, self._cluster))  # type: ignore[no-any-return]

    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        return self._run(proto.get_range_plan(keys, query, self._cluster))  # type: ignore[no-any-return]

    def get_ranges(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleBatch | None]:
        return self._run(proto.get_ranges_plan(candidates, query, self._cluster))  # type: ignore[no-any-return]

    def get_range_arrays(self, keys: Sequence[bytes], query: RangeQuery) -> SampleArrays | None:
        return self._run(proto.get_range_arrays_plan(keys, query, self._cluster))  # type: ignore[no-any-return]

    def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        return self._run(proto.get_ranges_arrays_plan(candidates, query, self._cluster))  # type: ignore[no-any-return]

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        return self._run(proto.stats_plan(keys))  # type: ignore[no-any-return]

    def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        return self._run(proto.snapshot_plan(keys))  # type: ignore[no-any-return]

    def server_info(self) -> dict[str, str]:
        """What the server says of itself: ``product`` (Redis or Valkey), ``version``,
        ``used_memory``, ``db`` and ``keys`` (in that database)."""
        db = self._transport.config.db
        return self._run(proto.server_info_plan(db))  # type: ignore[no-any-return]

    def dumps(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """DUMP payloads of `keys` (None where absent), for writing RDB files."""
        return self._run(proto.dumps_plan(keys))  # type: ignore[no-any-return]

    # -- writes

    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        reply = self._transport.quick(_QUICK.set_immutable(key, value), True)
        if reply is not MISS:
            return reply  # type: ignore[no-any-return]
        return self._rerun(proto.set_immutable_plan(key, value))  # type: ignore[no-any-return]

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        if self._transport.quick(_QUICK.add_mutable(key, value, timestamp), True) is MISS:
            self._rerun(proto.add_mutable_plan(key, value, timestamp))

    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        return self._run(proto.set_indexed_plan(key, sub_key, value))  # type: ignore[no-any-return]

    def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        return self._run(proto.write_batch_plan(writes, self._cluster))  # type: ignore[no-any-return]

    def delete(self, keys: Sequence[bytes]) -> None:
        self._run(proto.delete_plan(keys, self._cluster))

    def clear(self) -> None:
        self._run(proto.clear_plan())

    def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        # Each key the server lacks is sent whole as a RESTORE payload (the file's own
        # bytes, no decoding); keys that exist, or that the server cannot RESTORE (an
        # encoding newer than it knows), are returned, for the caller to merge.  A worker
        # thread builds (and checksums) the next batch of payloads while the server
        # restores the current one.
        keys = list(index.entries)
        merge: list[bytes] = []
        with concurrent.futures.ThreadPoolExecutor(1, "telstate-restore") as pool:
            batches = proto.restore_batches(index, keys)
            pending = pool.submit(next, batches, None)
            while (batch := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                merge += self._run(proto.restore_plan(batch))
        return merge

    # -- waits

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return _RedisSubscription(self, self._transport.subscribe(keys))


class _RedisSubscription(Subscription):
    """The updates of some keys, from the transport's shared pub/sub hub."""

    def __init__(self, backend: RedisBackend, subscription: SyncSubscription) -> None:
        self._backend = backend
        self._subscription = subscription
        self._types: dict[bytes, KeyType | None] = {}

    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        item = self._subscription.get(timeout)
        if item is None or type(item) is Recheck:
            return item
        update = proto.parse_update(item.key, item.payload)
        if update is not None:
            return update
        return self._backend._run(proto.update_plan(item.key, item.payload, self._types))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._subscription.close()
