"""Shared fixtures: the behaviour suite runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import telstate

# Each entry makes a fresh, empty backend.  The Redis and asyncio front ends add theirs.
BACKENDS: dict[str, Callable[[], telstate.Backend]] = {
    "memory": telstate.MemoryBackend,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[telstate.Backend]:
    made = BACKENDS[request.param]()
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
