"""Shared fixtures: the behaviour suite runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

import telstate
from telstate.backends.redis import RedisBackend

from .servers import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole session (tests FLUSHALL before use)."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


# Each entry makes a fresh, empty backend.  The asyncio front end adds its own.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest], telstate.Backend]] = {
    "memory": lambda request: telstate.MemoryBackend(),
    "redis": lambda request: RedisBackend(request.getfixturevalue("redis_client")),
    # Users test their code with fakeredis: telstate must work on it too.
    "fakeredis": lambda request: RedisBackend(fakeredis.FakeRedis()),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[telstate.Backend]:
    made = BACKENDS[request.param](request)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ts(backend: telstate.Backend) -> telstate.TelescopeState:
    return telstate.TelescopeState(backend)


@pytest.fixture
def restore_pickle_setting() -> Iterator[None]:
    yield
    telstate.set_allow_pickle(False)
