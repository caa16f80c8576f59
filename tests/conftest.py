"""Shared fixtures: the behaviour suite runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

import telstate
import telstate.aio
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends.redis import RedisBackend

from .aio_facade import EventLoopThread, SyncFacade
from .rdb_reopen import AioReopenedRdbBackend, ReopenedRdbBackend
from .servers import ClusterDeployment, RedisServer, SentinelDeployment


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole session (tests FLUSHALL before use)."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sentinel_deployment() -> Iterator[SentinelDeployment]:
    """One Redis Sentinel deployment (primary, 2 replicas, 3 sentinels) for the session.

    Tests that fail it over make their own.
    """
    deployment = SentinelDeployment()
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def sentinel_url(sentinel_deployment: SentinelDeployment) -> str:
    """The deployment's URL, its data flushed (on the primary, and so on the replicas)."""
    client = sentinel_deployment.primary().client()
    try:
        client.flushall()
    finally:
        client.close()
    return sentinel_deployment.url


@pytest.fixture(scope="session")
def cluster_deployment() -> Iterator[ClusterDeployment]:
    """One Redis Cluster (3 primaries, a replica each) for the session.

    Tests that fail it over or reshard it make their own.
    """
    deployment = ClusterDeployment()
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture
def cluster_url(cluster_deployment: ClusterDeployment) -> str:
    """The cluster's seed URL, its data flushed."""
    cluster_deployment.flush()
    return cluster_deployment.url


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


# Each entry makes a fresh, empty backend for the sync TelescopeState.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], telstate.Backend]] = {
    "memory": lambda request: telstate.MemoryBackend(),
    "redis": lambda request: RedisBackend(request.getfixturevalue("redis_client")),
    # Users test their code with fakeredis: telstate must work on it too.
    "fakeredis": lambda request: RedisBackend(fakeredis.FakeRedis()),
    # The primary of a Redis Sentinel deployment, with writes confirmed on both replicas
    "sentinel": lambda request: RedisBackend.from_url(
        request.getfixturevalue("sentinel_url") + "?min_replicas=2"
    ),
    # A Redis Cluster of 3 primaries, writes confirmed on each node's replica
    "cluster": lambda request: RedisBackend.from_url(
        request.getfixturevalue("cluster_url") + "?min_replicas=1"
    ),
    # Writes to memory, reads from that state saved to an RDB file and opened (rdb_reopen.py)
    "rdb": lambda request: ReopenedRdbBackend(request.getfixturevalue("tmp_path")),
}


async def _aio_redis(server: RedisServer) -> telstate.aio.AsyncBackend:
    return await AioRedisBackend.from_url(f"unix://{server.socket_path}")


def _aio_rdb(directory: Path, runner: EventLoopThread) -> AioReopenedRdbBackend:
    return runner.call(lambda: AioReopenedRdbBackend(directory))


# ... and for the asyncio TelescopeState, driven through tests/aio_facade.py.
AIO_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, EventLoopThread], Any]] = {
    "aio-memory": lambda request, runner: runner.call(telstate.aio.MemoryBackend),
    "aio-redis": lambda request, runner: runner.run(
        _aio_redis(request.getfixturevalue("redis_server"))
    ),
    "aio-sentinel": lambda request, runner: runner.run(
        AioRedisBackend.from_url(request.getfixturevalue("sentinel_url") + "?min_replicas=2")
    ),
    "aio-cluster": lambda request, runner: runner.run(
        AioRedisBackend.from_url(request.getfixturevalue("cluster_url") + "?min_replicas=1")
    ),
    "aio-rdb": lambda request, runner: _aio_rdb(request.getfixturevalue("tmp_path"), runner),
}

# Backends whose reads come from an RDB file, which never changes: tests marked `live`
# (their subject is a wait woken by a later write, or a live notification) cannot run there.
FILE_BACKENDS = frozenset({"rdb", "aio-rdb"})


def skip_live_on_file(request: pytest.FixtureRequest) -> None:
    """Skip a ``live`` test on a backend that reads from a file, saying why."""
    if request.param in FILE_BACKENDS and request.node.get_closest_marker("live") is not None:
        pytest.skip(
            f"live: on {request.param} reads come from an RDB file, which no later write "
            "changes and no notification leaves"
        )


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[telstate.Backend]:
    skip_live_on_file(request)
    made = BACKENDS[request.param](request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sync_ts(backend: telstate.Backend) -> telstate.TelescopeState:
    """A sync TelescopeState on each backend (for sync-only features)."""
    return telstate.TelescopeState(backend)


@pytest.fixture(params=sorted(BACKENDS) + sorted(AIO_BACKENDS))
def ts(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The behaviour suite's subject: every backend, through both front ends."""
    skip_live_on_file(request)
    if request.param in BACKENDS:
        made = BACKENDS[request.param](request)
        yield telstate.TelescopeState(made)
        made.close()
        return
    if request.param == "aio-redis":
        request.getfixturevalue("redis_client")  # flushes the server
    runner = EventLoopThread()
    backend = AIO_BACKENDS[request.param](request, runner)
    try:
        yield SyncFacade(runner.call(lambda: telstate.aio.TelescopeState(backend)), runner)
    finally:
        runner.run(backend.__aexit__(None, None, None))
        runner.close()


@pytest.fixture
def restore_pickle_setting() -> Iterator[None]:
    yield
    telstate.set_allow_pickle(False)
