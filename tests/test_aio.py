"""The asyncio TelescopeState: API parity, asyncio-specific behaviour, katsdptelstate.aio interop.

The behaviour shared with the sync API (values, views, ranges, immutables, ...)
is covered by the sync suite run through ``tests/aio_facade.py``; this module
covers what only an asyncio client has:

- the same public operations as :class:`telstate.TelescopeState`, with the
  same parameters, and a short, explicit list of deliberate differences;
- timeouts, task cancellation (and the pub/sub subscription it must release),
  ``watch()``, thousands of concurrent waiters on one pub/sub connection, a
  dropped pub/sub connection, a memory backend shared with sync clients in
  other threads, RDB loading that keeps the event loop responsive, pipelines;
- katsdptelstate.aio and telstate.aio waking each other and reading each
  other's values on one live server.

Every test runs its coroutine with plain :func:`asyncio.run` (see :func:`run`),
on both ``telstate.aio.MemoryBackend()`` and ``telstate.aio.redis.RedisBackend``
on the session's private redis-server (flushed first), unless it is about
Redis only.  Some tests reproduce bugs found (and since fixed) in
telstate.aio: a wait cancelled while subscribing leaked its subscription;
Python 3.11 lost cancellations inside redis-py (``wait_key(timeout=0)`` waited
forever); ``from_url`` failed beyond 100 concurrent commands; ``watch()`` yielded
samples twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import shutil
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import katsdptelstate.aio
import katsdptelstate.aio.redis
import pytest
import redis
import redis.asyncio

import telstate
import telstate.aio
import telstate.client
from telstate.aio.redis import RedisBackend as AioRedisBackend

from .servers import RedisServer
from .test_interop import SUB_KEYS, VALUES, same

T = TypeVar("T")

CHANNEL = "update/"  # katsdptelstate's notification channel of a key: update/<key>


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run `coro` in a new event loop (no pytest-asyncio), failing after `timeout` seconds.

    Also fails if the loop reported an unhandled error, such as a task whose
    exception nobody retrieved.  Such reports are only collected (not
    formatted) and abandoned tasks are finalised here: on Python 3.11 a
    traceback formatted by a finaliser that runs while pytest parses source
    with ``ast`` breaks pytest (SystemError: AST constructor recursion depth
    mismatch).
    """
    unhandled: list[str] = []

    async def bounded() -> T:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: unhandled.append(context["message"]))
        async with asyncio.timeout(timeout):
            return await coro

    try:
        result = asyncio.run(bounded())
    finally:
        gc.collect()
    assert unhandled == []
    return result


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds (letting the loop run), or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.005)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for them, retrieving their exceptions.

    A task whose cancellation is lost (Python 3.11's asyncio.wait_for inside
    redis-py; see :func:`test_cancellation_is_never_lost`) is cancelled again,
    so that a failing test cannot hang.
    """
    for _ in range(3):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)


async def next_of(updates: AsyncIterator[T]) -> T:
    """``anext`` as a coroutine (for create_task)."""
    return await anext(updates)


@dataclass
class Env:
    """Where a test's asyncio backends live: process memory, or the private redis-server."""

    kind: str
    server: RedisServer | None = None
    admin: redis.Redis | None = None  # sync client, for checks (blocks the loop briefly)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"unix://{self.server.socket_path}"

    async def backend(self, **kwargs: Any) -> telstate.aio.AsyncBackend:
        """A new backend (closed by ``async with``)."""
        if self.server is None:
            return telstate.aio.MemoryBackend()
        return await AioRedisBackend.from_url(self.url, **kwargs)

    async def peer(self, backend: telstate.aio.AsyncBackend) -> telstate.aio.AsyncBackend:
        """Another client of `backend`'s data (memory: sharing it; Redis: a new connection)."""
        if isinstance(backend, telstate.aio.MemoryBackend):
            return telstate.aio.MemoryBackend(backend.to_sync())
        return await self.backend()

    def subscribers(self, key: str) -> int | None:
        """Connections subscribed to `key`'s notifications (None: not observable)."""
        if self.admin is None:
            return None
        return int(self.admin.pubsub_numsub(CHANNEL + key)[0][1])

    async def until_subscribed(self, *keys: str) -> None:
        """Until waiters on `keys` are subscribed (memory: a moment for the tasks to start)."""
        if self.admin is None:
            await asyncio.sleep(0.02)
            return
        await until(lambda: all(self.subscribers(key) for key in keys), f"{keys} subscribed")
        await asyncio.sleep(0.02)  # and past the re-check that follows subscribing

    async def until_released(self, *keys: str) -> None:
        """Until nobody is subscribed to `keys` (memory: not observable, nothing to do)."""
        if self.admin is not None:
            await until(lambda: not any(self.subscribers(key) for key in keys), f"{keys} freed")

    def pubsub_connections(self, name: str) -> int:
        """Connections named `name` that are in pub/sub mode."""
        assert self.admin is not None
        return sum(1 for c in self.admin.client_list(_type="pubsub") if c["name"] == name)


@pytest.fixture(params=["memory", "redis"])
def env(request: pytest.FixtureRequest) -> Env:
    if request.param == "memory":
        return Env("memory")
    admin = request.getfixturevalue("redis_client")  # FLUSHALL done
    return Env("redis", request.getfixturevalue("redis_server"), admin)


@pytest.fixture
def redis_env(redis_server: RedisServer, redis_client: redis.Redis) -> Env:
    return Env("redis", redis_server, redis_client)


def blocking_pool_backend(env: Env, name: str, size: int = 20) -> AioRedisBackend:
    """A RedisBackend on a client of one's own: a blocking pool of `size` connections.

    ``RedisBackend`` accepts any ``redis.asyncio.Redis`` client; ``from_url``
    makes a similar one (see :func:`test_many_waiters_from_url`).  Connections
    are named `name` so that CLIENT LIST can count them.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        env.url, max_connections=size, timeout=None, client_name=name, socket_timeout=5.0
    )
    return AioRedisBackend(redis.asyncio.Redis.from_pool(pool))


# --------------------------------------------------------------------------- API parity

# The operations of the brief, by how the asyncio class offers them.
AIO_COROUTINES = {
    "add", "set", "set_indexed", "get", "get_indexed", "get_range", "exists", "key_type",
    "keys", "delete", "clear", "wait_key", "wait_indexed", "load_from_file", "open",
    "save_to_file",  # not in katsdptelstate: writes an RDB file
    "get_range_arrays", "get_ranges",  # not in katsdptelstate: samples as arrays, many sensors
    "__getitem__",  # await ts[key]
}  # fmt: skip
AIO_PLAIN = {"view", "root", "join", "pipeline"}  # no I/O: plain methods on both sides
PROPERTIES = {"prefixes", "backend"}
CONSTANTS = {"SEPARATOR", "SEPARATOR_BYTES"}

# Protocol methods that count as API when a class (not object) defines them.
PROTOCOL = (
    "__getitem__", "__setitem__", "__contains__", "__getattr__", "__setattr__", "__len__",
    "__iter__", "__aiter__", "__enter__", "__exit__", "__aenter__", "__aexit__",
    "_ipython_key_completions_",
)  # fmt: skip

# The ONLY allowed differences between telstate.TelescopeState and telstate.aio.TelescopeState.
SYNC_ONLY = {
    # Attribute access ``ts.name`` / ``ts.name = value``: a plain attribute cannot be awaited.
    "__getattr__": "attribute reads",
    "__setattr__": "attribute writes",
    # ``ts[key] = value``: assignment cannot be awaited; use ``await ts.set(key, value)``.
    "__setitem__": "item assignment",
    # ``key in ts``: ``in`` cannot be awaited; use ``await ts.exists(key)``.
    "__contains__": "membership test",
    # Deprecated (FutureWarning) in the sync API; katsdptelstate.aio never had it.
    "is_immutable": "deprecated",
    # IPython calls it synchronously for tab completion.
    "_ipython_key_completions_": "IPython completion",
}
AIO_ONLY: dict[str, str] = {}
# Update streams: a generator (``for value, ts in ts.watch(key)``) and an async generator.
GENERATORS = {"watch"}
PARAM_DIFFERENCES = {
    # Sync waits are cancelled through a future (polled); asyncio waits are
    # cancelled like any task (task.cancel(), asyncio.timeout, TaskGroup), so
    # they take no cancel_future.
    ("wait_key", "cancel_future"): "sync only",
    ("wait_indexed", "cancel_future"): "sync only",
}

PIPELINE_PLAIN = {"add", "set", "set_indexed", "__setitem__", "__len__"}  # queue, no I/O
PIPELINE_COROUTINES = {"execute"}  # sends the batch
PIPELINE_SYNC_ONLY = {"__enter__": "with", "__exit__": "with: sends the batch"}
PIPELINE_AIO_ONLY = {"__aenter__": "async with", "__aexit__": "async with: awaits the send"}


def api(cls: type) -> set[str]:
    """Public names of `cls`, plus the protocol methods its own classes define."""
    names = {name for name in dir(cls) if not name.startswith("_")}
    for name in PROTOCOL:
        if any(name in vars(klass) for klass in cls.__mro__ if klass is not object):
            names.add(name)
    return names


def parameters(
    func: Callable[..., Any], op: str, skip: dict[tuple[str, str], str]
) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter, without the allowed differences."""
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(func).parameters.values()
        if (op, p.name) not in skip
    ]


def compare_classes(
    sync_cls: type,
    aio_cls: type,
    sync_only: dict[str, str],
    aio_only: dict[str, str],
    coroutines: set[str],
    plain: set[str],
    properties: set[str],
    constants: set[str],
    param_differences: dict[tuple[str, str], str],
    generators: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """Every difference between the two classes that is not on the allowed lists."""
    problems = []
    sync_api, aio_api = api(sync_cls), api(aio_cls)
    for name in sorted(sync_api - aio_api - set(sync_only)):
        problems.append(f"{name}: only in {sync_cls.__qualname__} (sync)")
    for name in sorted(aio_api - sync_api - set(aio_only)):
        problems.append(f"{name}: only in the asyncio {aio_cls.__qualname__}")
    for name in sorted(set(sync_only) & aio_api):
        problems.append(f"{name}: listed as sync-only but the asyncio class has it now")
    for name in sorted(set(aio_only) & sync_api):
        problems.append(f"{name}: listed as asyncio-only but the sync class has it now")
    unclassified = (sync_api & aio_api) - coroutines - plain - properties - constants - generators
    for name in sorted(unclassified):
        problems.append(f"{name}: new shared name; classify it in this test")
    for name in sorted(sync_api & aio_api):
        s_raw, a_raw = inspect.getattr_static(sync_cls, name), inspect.getattr_static(aio_cls, name)
        if type(s_raw) is not type(a_raw):
            problems.append(f"{name}: {type(s_raw).__name__} (sync) vs {type(a_raw).__name__}")
            continue
        if name in constants:
            if s_raw != a_raw:
                problems.append(f"{name}: {s_raw!r} (sync) vs {a_raw!r}")
            continue
        if isinstance(s_raw, property):
            continue
        s_func, a_func = getattr(sync_cls, name), getattr(aio_cls, name)
        s_params = parameters(s_func, name, param_differences)
        a_params = parameters(a_func, name, param_differences)
        if s_params != a_params:
            problems.append(f"{name}: parameters {s_params} (sync) vs {a_params}")
        if inspect.iscoroutinefunction(s_func) or inspect.isasyncgenfunction(s_func):
            problems.append(f"{name}: the sync one is a coroutine function")
        if name in generators and not (
            inspect.isgeneratorfunction(s_func) and inspect.isasyncgenfunction(a_func)
        ):
            problems.append(f"{name}: should be a generator (sync) and an async generator")
        if name in coroutines and not inspect.iscoroutinefunction(a_func):
            problems.append(f"{name}: the asyncio one is not a coroutine function")
        if name in plain and (
            inspect.iscoroutinefunction(a_func) or inspect.isasyncgenfunction(a_func)
        ):
            problems.append(f"{name}: the asyncio one should be a plain function")
    # The allowed parameter differences must still exist (or the list is stale).
    for op, param in param_differences:
        sync_names = inspect.signature(getattr(sync_cls, op)).parameters
        aio_names = inspect.signature(getattr(aio_cls, op)).parameters
        if param not in sync_names or param in aio_names:
            problems.append(f"{op}({param}): allowed difference no longer holds; update the list")
    return problems


def test_telescope_state_api_parity() -> None:
    wanted = AIO_COROUTINES | AIO_PLAIN | PROPERTIES
    sync_api, aio_api = api(telstate.TelescopeState), api(telstate.aio.TelescopeState)
    assert wanted <= sync_api and wanted <= aio_api
    problems = compare_classes(
        telstate.TelescopeState,
        telstate.aio.TelescopeState,
        SYNC_ONLY,
        AIO_ONLY,
        AIO_COROUTINES,
        AIO_PLAIN,
        PROPERTIES,
        CONSTANTS,
        PARAM_DIFFERENCES,
        GENERATORS,
    )
    assert problems == []
    # The update stream is an async generator (``async for``).
    assert inspect.isasyncgenfunction(telstate.aio.TelescopeState.watch)


def test_pipeline_api_parity() -> None:
    problems = compare_classes(
        telstate.client.Pipeline,
        telstate.aio.Pipeline,
        PIPELINE_SYNC_ONLY,
        PIPELINE_AIO_ONLY,
        PIPELINE_COROUTINES,
        PIPELINE_PLAIN,
        set(),
        set(),
        {},
    )
    assert problems == []
    assert inspect.iscoroutinefunction(telstate.aio.Pipeline.__aexit__)
    assert inspect.iscoroutinefunction(telstate.aio.Pipeline.__aenter__)


def test_parity_check_catches_differences() -> None:
    # The comparison above is only as good as its ability to see a difference.
    class Sync:
        def op(self, key: str, timeout: float | None = None) -> None: ...
        def extra(self) -> None: ...

    class Aio:
        async def op(self, key: str, timeout: float | None = 1.0) -> None: ...

    problems = compare_classes(Sync, Aio, {}, {}, {"op"}, set(), set(), set(), {})
    assert any(p.startswith("extra: only in") for p in problems)
    assert any(p.startswith("op: parameters") for p in problems)

    class AioNotAsync:
        def op(self, key: str, timeout: float | None = None) -> None: ...
        def extra(self) -> None: ...

    problems = compare_classes(Sync, AioNotAsync, {}, {}, {"op"}, {"extra"}, set(), set(), {})
    assert problems == ["op: the asyncio one is not a coroutine function"]


# --------------------------------------------------------------------------- timeouts


def test_wait_timeouts(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            start = time.monotonic()
            with pytest.raises(telstate.TimeoutError, match="'absent'"):
                await ts.wait_key("absent", timeout=0.1)
            assert time.monotonic() - start >= 0.1  # not before its timeout
            # A condition that never holds on an existing sensor
            await ts.add("sensor", 1.0, ts=1.0)
            with pytest.raises(telstate.TimeoutError):
                await ts.wait_key("sensor", lambda value, stamp: value > 5, timeout=0.1)
            # Indexed: key absent, then present without the sub-key
            with pytest.raises(telstate.TimeoutError):
                await ts.wait_indexed("idx", "b", timeout=0.1)
            await ts.set_indexed("idx", "a", 1)
            with pytest.raises(telstate.TimeoutError):
                await ts.wait_indexed("idx", "b", timeout=0.1)
            with pytest.raises(telstate.TimeoutError):
                await ts.wait_indexed("idx", "a", lambda value: value == 2, timeout=0.1)
            # A satisfied wait returns at once, whatever the timeout.
            await ts.wait_key("sensor", timeout=0)
            await ts.wait_indexed("idx", "a", timeout=0)
            # Nothing stays subscribed after a timeout.
            await env.until_released("absent", "sensor", "idx")

    run(body())


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("what", ["wait_key", "wait_key_condition", "wait_indexed", "watch"])
def test_cancel_releases_subscription(env: Env, what: str) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.add("sensor", 1.0, ts=1.0)
            await ts.set_indexed("idx", "a", 1)

            async def watch() -> None:
                async for _ in ts.watch("sensor"):
                    pass

            waits: dict[str, Callable[[], Awaitable[None]]] = {
                "wait_key": lambda: ts.wait_key("absent"),
                "wait_key_condition": lambda: ts.wait_key("sensor", lambda v, t: v > 1),
                "wait_indexed": lambda: ts.wait_indexed("idx", "b"),
                "watch": watch,
            }
            key = {"wait_key": "absent", "wait_indexed": "idx"}.get(what, "sensor")
            task = asyncio.ensure_future(waits[what]())
            await env.until_subscribed(key)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await env.until_released(key)
            # The backend still serves new waits (the hub is not wedged).
            waiter = asyncio.create_task(ts.wait_key("later", timeout=5))
            await env.until_subscribed("later")
            await ts.set("later", 1)
            await waiter
            await env.until_released("later")

    run(body())


def test_cancel_while_subscribing_releases_subscription(redis_env: Env) -> None:
    # Cancel at each of the first loop iterations after the server has seen the
    # SUBSCRIBE, i.e. while the waiter awaits the confirmation (a second cancel
    # only keeps the test from hanging if a cancellation is lost: next test).
    async def body() -> None:
        async with await redis_env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.exists("warm-up")  # a connection in the pool already
            leaked = []
            for i in range(16):
                key = f"key{i}"
                task = asyncio.create_task(ts.wait_key(key))
                deadline = time.monotonic() + 5
                while not redis_env.subscribers(key):  # checked at every loop iteration
                    assert time.monotonic() < deadline and not task.done()
                    await asyncio.sleep(0)
                for _ in range(i % 8):
                    await asyncio.sleep(0)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=0.3)
                if not done:
                    task.cancel()
                    await asyncio.wait({task})
                await asyncio.sleep(0.02)
                if redis_env.subscribers(key):
                    leaked.append(key)
            assert leaked == []

    run(body())


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_cancellation_is_never_lost(redis_env: Env, how: str) -> None:
    # Regression: with socket_timeout set, redis-py sends commands inside
    # asyncio.wait_for, which on Python 3.11 swallows a cancellation landing as the
    # send completes; wait_key(key, timeout=0) on an absent key then waited forever.
    async def body() -> None:
        async with await redis_env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            with pytest.raises(telstate.TimeoutError):
                await ts.wait_key("absent", timeout=0)
            for i in range(40):
                if how == "timeout":
                    task = asyncio.create_task(ts.wait_key(f"key{i}", timeout=i * 2e-5))
                else:
                    task = asyncio.create_task(ts.wait_key(f"key{i}"))
                    for _ in range(i % 12):
                        await asyncio.sleep(0)
                    task.cancel()
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if not done:
                    task.cancel()  # lands this time: the wait is blocked on its queue
                    await asyncio.wait({task})
                    pytest.fail(f"step {i}: the wait outlived its {how} by > 1 s")
                if how == "timeout":
                    assert isinstance(task.exception(), telstate.TimeoutError)
                else:
                    assert task.cancelled()

    run(body())


# --------------------------------------------------------------------------- watch


def test_watch_sensor(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.add("sensor", 0.0, ts=100.0)
            async with contextlib.aclosing(ts.watch("sensor")) as updates:
                assert await anext(updates) == (0.0, 100.0)  # the latest sample first
                for i in range(1, 21):
                    await ts.add("sensor", float(i), ts=100.0 + i)
                await ts.set("other", 1)  # not watched
                async with ts.pipeline() as batch:  # a burst in one round trip
                    for i in range(21, 221):
                        batch.add("sensor", float(i), ts=100.0 + i)
                got = [await anext(updates) for _ in range(220)]
            assert got == [(float(i), 100.0 + i) for i in range(1, 221)]
            await env.until_released("sensor")
            # initial=False: only what comes next
            async with contextlib.aclosing(ts.watch("sensor", initial=False)) as updates:
                first = asyncio.create_task(next_of(updates))
                await env.until_subscribed("sensor")
                await ts.add("sensor", "next", ts=1000.0)
                assert await first == ("next", 1000.0)

    run(body())


def test_watch_sensor_created_while_watching(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            async with contextlib.aclosing(ts.watch("new")) as updates:
                first = asyncio.create_task(next_of(updates))
                await env.until_subscribed("new")
                await ts.add("new", [1, 2], ts=5.0)
                await ts.add("new", [3], ts=6.0)
                assert await first == ([1, 2], 5.0)
                assert await anext(updates) == ([3], 6.0)

    run(body())


def test_watch_immutable(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            # Created while watching: one update, then the stream ends.
            updates = ts.watch("attr")
            first = asyncio.create_task(next_of(updates))
            await env.until_subscribed("attr")
            await ts.set("attr", {"a": (1, 2)})
            assert await first == ({"a": (1, 2)}, None)
            with pytest.raises(StopAsyncIteration):
                await anext(updates)
            await env.until_released("attr")
            # Already there: its value (initial), then the end; nothing without initial.
            assert [u async for u in ts.watch("attr")] == [({"a": (1, 2)}, None)]
            assert [u async for u in ts.watch("attr", initial=False)] == []
            await env.until_released("attr")

    run(body())


def test_watch_indexed(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.set_indexed("idx", "a", 1)
            async with contextlib.aclosing(ts.watch("idx")) as updates:
                assert await anext(updates) == ({"a": 1}, None)  # the whole dict first
                await ts.set_indexed("idx", "b", [2])
                assert await anext(updates) == ({"b": [2]}, None)
                await ts.set_indexed("idx", "a", 1)  # same value again: not a new sub-key
                await ts.set_indexed("idx", (3, "c"), 3.5)
                assert await anext(updates) == ({(3, "c"): 3.5}, None)
            await env.until_released("idx")

    run(body())


def test_watch_leaving_async_for_releases_subscription(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            await ts.add("sensor", 1.0, ts=1.0)
            seen = []
            async for update in ts.watch("sensor"):
                seen.append(update)
                break
            assert seen == [(1.0, 1.0)]
            # The abandoned generator is closed by the event loop's finaliser.
            await env.until_released("sensor")
            # Also when the loop body raises
            with pytest.raises(RuntimeError, match="stop"):
                async for _ in ts.watch("sensor"):
                    raise RuntimeError("stop")
            await env.until_released("sensor")

    run(body())


def _inject_before_first_call(
    backend: telstate.aio.AsyncBackend, method: str, write: Callable[[], Awaitable[None]]
) -> None:
    """Make the backend's first `method` call run `write` first (a concurrent writer's timing)."""
    real = getattr(backend, method)
    calls = []

    async def wrapper(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            await write()
        return await real(*args)

    setattr(backend, method, wrapper)  # instance attribute: shadows the method


def test_watch_sample_written_while_starting_is_yielded_once(env: Env) -> None:
    # Regression: a sample written between watch()'s SUBSCRIBE and its initial read
    # was yielded twice (initial value, then its notification).
    async def body() -> None:
        async with await env.backend() as backend, await env.peer(backend) as other:
            ts, writer = telstate.aio.TelescopeState(backend), telstate.aio.TelescopeState(other)
            await writer.add("sensor", 1.0, ts=1.0)
            # Another client writes just as the watch starts (after it subscribed).
            _inject_before_first_call(backend, "get", lambda: writer.add("sensor", 2.0, ts=2.0))
            seen: list[tuple[Any, Any]] = []

            async def watch() -> None:
                async for update in ts.watch("sensor"):
                    seen.append(update)

            task = asyncio.create_task(watch())
            await env.until_subscribed("sensor")
            await writer.add("sensor", 3.0, ts=3.0)
            await until(lambda: (3.0, 3.0) in seen, "sample 3 seen")
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert seen == [(2.0, 2.0), (3.0, 3.0)]

    run(body())


# --------------------------------------------------------------------------- many waiters

N_KEYS, N_SAME = 2000, 500


async def _many_waiters(env: Env, backend: telstate.aio.AsyncBackend, name: str) -> None:
    """2000 waiters on 2000 keys and 500 on one key, all woken by writes."""
    ts = telstate.aio.TelescopeState(backend)
    distinct = [asyncio.create_task(ts.wait_key(f"key{i}", timeout=20)) for i in range(N_KEYS)]
    same_key = [
        asyncio.create_task(ts.wait_key("counter", lambda v, t: v >= 3, timeout=20))
        for _ in range(N_SAME)
    ]
    tasks = distinct + same_key
    try:
        if env.admin is not None:

            def all_subscribed() -> bool:
                assert env.admin is not None
                failed = [task for task in tasks if task.done()]
                if failed:
                    pytest.fail(f"{len(failed)} waiters ended early: {failed[0].exception()!r}")
                return len(env.admin.pubsub_channels(CHANNEL + "*")) == N_KEYS + 1

            await until(all_subscribed, "every waiter subscribed", timeout=15)
            # ONE pub/sub connection carries all 2500 waits.
            assert env.pubsub_connections(name) == 1
            assert env.subscribers("counter") == 1
        else:
            await asyncio.sleep(0.05)
        assert not any(task.done() for task in tasks)
        async with ts.pipeline() as batch:  # half in one round trip ...
            for i in range(0, N_KEYS, 2):
                batch.set(f"key{i}", i)
        for i in range(1, N_KEYS, 2):  # ... half one by one
            await ts.set(f"key{i}", i)
        for value in range(4):
            await ts.add("counter", value)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [r for r in results if r is not None] == []
        if env.admin is not None:
            await until(lambda: env.admin.pubsub_channels(CHANNEL + "*") == [], "all released")
    finally:
        await cancel_all(tasks)


def test_many_waiters(env: Env) -> None:
    async def body() -> None:
        if env.kind == "memory":
            async with await env.backend() as backend:
                await _many_waiters(env, backend, "")
        else:
            name = f"aio-many-{uuid.uuid4().hex[:8]}"
            async with blocking_pool_backend(env, name) as backend:
                await _many_waiters(env, backend, name)

    run(body())


def test_many_waiters_from_url(redis_env: Env) -> None:
    # Regression: from_url kept redis-py 8's default asyncio pool, which raises
    # "Too many connections" beyond 100 concurrent commands.
    async def body() -> None:
        name = f"aio-from-url-{uuid.uuid4().hex[:8]}"
        async with await redis_env.backend(client_name=name) as backend:
            await _many_waiters(redis_env, backend, name)

    run(body())


def test_from_url_bounds_its_connections(redis_env: Env) -> None:
    # Concurrent calls should queue for a bounded pool (a few dozen connections),
    # not open one connection each: 300 waiters need no more than 100.
    async def body() -> None:
        name = f"aio-bounded-{uuid.uuid4().hex[:8]}"
        async with await redis_env.backend(client_name=name) as backend:
            ts = telstate.aio.TelescopeState(backend)
            tasks = [asyncio.create_task(ts.wait_key(f"key{i}")) for i in range(300)]
            try:
                assert redis_env.admin is not None
                admin = redis_env.admin
                await until(
                    lambda: len(admin.pubsub_channels(CHANNEL + "key*")) == 300, "subscribed"
                )
                named = [c for c in admin.client_list() if c["name"] == name]
                assert sum(1 for c in named if int(c["sub"])) == 1
                assert len(named) <= 100
            finally:
                await cancel_all(tasks)

    run(body())


# --------------------------------------------------------------------------- dropped pub/sub


def test_pubsub_connection_killed(redis_env: Env) -> None:
    async def body() -> None:
        name = f"aio-kill-{uuid.uuid4().hex[:8]}"
        async with (
            await redis_env.backend(client_name=name) as backend,
            await redis_env.backend() as other,
        ):
            ts, writer = telstate.aio.TelescopeState(backend), telstate.aio.TelescopeState(other)
            await writer.add("sensor", 1.0, ts=1.0)
            seen: list[tuple[Any, Any]] = []

            async def watch() -> None:
                async for update in ts.watch("sensor"):
                    seen.append(update)

            plain = [asyncio.create_task(ts.wait_key(f"key{i}", timeout=15)) for i in range(6)]
            waiters = [
                *plain,
                asyncio.create_task(ts.wait_key("counter", lambda v, t: v == 5, timeout=15)),
                asyncio.create_task(ts.wait_indexed("idx", "b", timeout=15)),
                asyncio.create_task(ts.wait_indexed("idx", "a", lambda v: v == 1, timeout=15)),
            ]
            watcher = asyncio.create_task(watch())
            keys = [f"key{i}" for i in range(6)] + ["counter", "idx", "sensor"]
            await redis_env.until_subscribed(*keys)
            await writer.add("sensor", 2.0, ts=2.0)
            await until(lambda: len(seen) == 2, "sample 2 seen")

            assert redis_env.admin is not None
            assert redis_env.admin.client_kill_filter(_type="pubsub") >= 1
            # Written at once, while the pub/sub connection is down
            await writer.add("sensor", 3.0, ts=3.0)
            await writer.add("sensor", 4.0, ts=4.0)
            for i in range(3):
                await writer.set(f"key{i}", i)
            for value in range(6):
                await writer.add("counter", value)
            await writer.set_indexed("idx", "a", 1)
            want = [(float(i), float(i)) for i in range(1, 5)]
            await until(lambda: set(want) <= set(seen), "watch caught up with samples 3 and 4")
            # Written after the hub is back
            await redis_env.until_subscribed(*keys[3:6], "idx", "sensor")
            for i in range(3, 6):
                await writer.set(f"key{i}", i)
            await writer.set_indexed("idx", "b", 2)
            await writer.add("sensor", 5.0, ts=5.0)
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert results == [None] * len(waiters)
            await until(lambda: (5.0, 5.0) in seen, "sample 5 seen")
            watcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watcher
            # Every sample once, in order
            assert seen == [*want, (5.0, 5.0)]
            # Still one pub/sub connection for this backend
            assert redis_env.pubsub_connections(name) <= 1

    run(body())


def test_watch_after_reconnection_yields_each_sample_once(redis_env: Env) -> None:
    # Regression: the catch-up read after a reconnection and the notifications of
    # the same samples both reached the caller, e.g. [1, 10, 11, 10, 11, 100].
    async def body() -> None:
        async with await redis_env.backend() as backend, await redis_env.backend() as other:
            ts, writer = telstate.aio.TelescopeState(backend), telstate.aio.TelescopeState(other)
            await writer.add("sensor", 1.0, ts=1.0)
            real_get_range = backend.get_range
            stamps = iter(range(10, 100))

            async def get_range(*args: Any) -> Any:
                # Only watch's catch-up reads ranges: another client writes just before.
                stamp = float(next(stamps))
                await writer.add("sensor", stamp, ts=stamp)
                return await real_get_range(*args)

            backend.get_range = get_range  # type: ignore[method-assign]
            seen: list[tuple[Any, Any]] = []

            async def watch() -> None:
                async for update in ts.watch("sensor"):
                    seen.append(update)

            watcher = asyncio.create_task(watch())
            await redis_env.until_subscribed("sensor")
            assert redis_env.admin is not None
            redis_env.admin.client_kill_filter(_type="pubsub")
            await asyncio.sleep(0.5)  # reconnected and caught up
            await writer.add("sensor", 100.0, ts=100.0)
            await until(lambda: (100.0, 100.0) in seen, "sample 100 seen")
            await asyncio.sleep(0.05)
            watcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watcher
            stamps_seen = [stamp for _, stamp in seen]
            assert stamps_seen == sorted(set(stamps_seen))

    run(body())


# --------------------------------------------------------------------------- sync + asyncio memory


def test_memory_backend_shared_with_sync_clients() -> None:
    sync_backend = telstate.MemoryBackend()
    sync_ts = telstate.TelescopeState(sync_backend)

    async def body() -> None:
        backend = telstate.aio.MemoryBackend(sync_backend)
        assert backend.to_sync() is sync_backend
        assert telstate.aio.MemoryBackend.from_sync(sync_backend).to_sync() is sync_backend
        ts = telstate.aio.TelescopeState(backend)
        sync_ts.set("from_sync", 1)
        await ts.set("from_aio", 2)
        assert await ts.get("from_sync") == 1 and sync_ts["from_aio"] == 2

        waiters = [
            asyncio.create_task(ts.wait_key("sensor", lambda v, t: v == 3, timeout=5)),
            asyncio.create_task(ts.wait_key("attr", timeout=5)),
            asyncio.create_task(ts.wait_indexed("idx", "b", lambda v: v == "x", timeout=5)),
        ]
        seen: list[tuple[Any, Any]] = []

        async def watch() -> None:
            async for update in ts.watch("sensor", initial=False):
                seen.append(update)
                if len(seen) == 4:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in waiters)

        def write() -> None:  # a sync client in another thread
            for i in range(4):
                sync_ts.add("sensor", i, ts=10.0 + i)
                time.sleep(0.005)
            sync_ts.set("attr", "done")
            sync_ts.set_indexed("idx", "a", "y")
            sync_ts.set_indexed("idx", "b", "x")

        thread = threading.Thread(target=write)
        thread.start()
        await asyncio.gather(*waiters, watcher)
        await asyncio.to_thread(thread.join)
        assert seen == [(i, 10.0 + i) for i in range(4)]

    run(body())
    # and after the loop is gone, the sync client still works (no stale sinks raise)
    sync_ts.add("sensor", 99, ts=99.0)
    assert sync_ts.get("sensor") == 99


# --------------------------------------------------------------------------- RDB files


@dataclass
class Dump:
    path: Path
    expected: dict[str, Any]  # what get() returns for each key
    samples: list[tuple[Any, float]]  # the sensor's samples


@pytest.fixture
def small_dump(redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path) -> Dump:
    """An RDB file made by the real server from data written with the sync TelescopeState."""
    from telstate.backends.redis import RedisBackend

    ts = telstate.TelescopeState(RedisBackend(redis_server.client()))
    try:
        samples = [(value, 1e9 + i) for i, (_, value) in enumerate(VALUES[:20])]
        for value, stamp in samples:
            ts.add("sensor", value, ts=stamp)
        expected: dict[str, Any] = {"sensor": samples[-1][0]}
        for name, value in VALUES:
            ts.set(f"attr_{name}", value)
            expected[f"attr_{name}"] = value
        for sub_key in SUB_KEYS:
            ts.set_indexed("idx", sub_key, [sub_key])
        expected["idx"] = {sub_key: [sub_key] for sub_key in SUB_KEYS}
        ts.view("ns").set("attr", "in a namespace")
        expected["ns_attr"] = "in a namespace"
        redis_client.save()
    finally:
        ts.backend.close()
    path = tmp_path / "small.rdb"
    shutil.copy(redis_server.dir / "dump.rdb", path)
    redis_client.flushall()
    return Dump(path, expected, samples)


async def _check_dump(ts: telstate.aio.TelescopeState, dump: Dump) -> None:
    assert await ts.keys() == sorted(dump.expected)
    for key, value in dump.expected.items():
        assert same(await ts.get(key), value), key
    got = await ts.get_range("sensor", st=0)
    assert len(got) == len(dump.samples)
    assert all(same(g, s) for g, s in zip(got, dump.samples, strict=True))
    assert await ts.key_type("idx") == telstate.KeyType.INDEXED
    assert same(await ts.get_indexed("idx", (2, (3, 4))), [(2, (3, 4))])
    assert await ts.view("ns")["attr"] == "in a namespace"


def test_load_from_file(env: Env, small_dump: Dump) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            assert await ts.load_from_file(small_dump.path) == len(small_dump.expected)
            await _check_dump(ts, small_dump)
            # Loading again merges: same values, nothing changes.
            assert await ts.load_from_file(small_dump.path.read_bytes()) == len(small_dump.expected)
            await _check_dump(ts, small_dump)

    run(body())


def test_open(small_dump: Dump) -> None:
    async def body() -> None:
        for source in (small_dump.path, str(small_dump.path), small_dump.path.read_bytes()):
            ts = await telstate.aio.TelescopeState.open(source)
            await _check_dump(ts, small_dump)
        ts = await telstate.aio.TelescopeState.open(small_dump.path, verify_checksum=True)
        await _check_dump(ts, small_dump)
        with small_dump.path.open("rb") as file:
            await _check_dump(await telstate.aio.TelescopeState.open(file), small_dump)
        # Read-only and never changing: waits time out, present keys return at once.
        await ts.wait_key("sensor", timeout=0.01)
        with pytest.raises(telstate.TimeoutError):
            await ts.wait_key("absent", timeout=0.05)
        with pytest.raises(telstate.RdbParseError):
            await telstate.aio.TelescopeState.open(b"REDIS0009 not really")

    run(body())


_MEMBER = struct.Struct(">d2sd")  # katsdptelstate's member of a float sample


@pytest.fixture(scope="module")
def large_dump(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~10 MB RDB file by the real server: 8 sensors of 50 000 float samples."""
    client = redis_server.client()
    try:
        client.flushall()
        with client.pipeline(transaction=False) as pipe:
            for k in range(8):
                for lo in range(0, 50_000, 10_000):
                    members = {
                        _MEMBER.pack(1e9 + i, b"\xff\xcb", float(i)): 0
                        for i in range(lo, lo + 10_000)
                    }
                    pipe.zadd(f"sensor_{k}", members)
            pipe.execute()
        client.save()
        path = tmp_path_factory.mktemp("rdb") / "large.rdb"
        shutil.copy(redis_server.dir / "dump.rdb", path)
        client.flushall()
    finally:
        client.close()
    return path


@contextlib.contextmanager
def _threads_running(*targets: tuple[Any, str]) -> Iterator[list[threading.Thread]]:
    """Record the thread each call of the given (owner, method name) runs in."""
    seen: list[threading.Thread] = []
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def recording(original: Any) -> Any:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append(threading.current_thread())
            return original(*args, **kwargs)

        return wrapper

    for owner, name, original in originals:
        setattr(owner, name, recording(original))
    try:
        yield seen
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def test_load_large_file_keeps_loop_responsive(env: Env, large_dump: Path) -> None:
    """Parsing, checksumming and payload building run in worker threads, never on the loop."""
    heavy = (
        (telstate.rdb._reader.RdbIndex, "__init__"),
        (telstate.backends.memory.MemoryBackend, "load_new_keys"),
        (telstate.backends._redis_protocol, "restore_payload"),
    )

    async def body() -> None:
        loop_thread = threading.current_thread()
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            with _threads_running(*heavy) as seen:
                assert await ts.load_from_file(large_dump) == 8
            assert seen and loop_thread not in seen
            got = await ts.get_range("sensor_3", st=0)
            assert len(got) == 50_000 and got[-1] == (49_999.0, 1e9 + 49_999)
            with _threads_running(*heavy) as seen:
                opened = await telstate.aio.TelescopeState.open(large_dump, verify_checksum=True)
            assert seen and loop_thread not in seen
            assert await opened.get("sensor_7") == 49_999.0

    run(body())


# --------------------------------------------------------------------------- pipelines


def test_pipeline(env: Env) -> None:
    async def body() -> None:
        async with await env.backend() as backend:
            ts = telstate.aio.TelescopeState(backend)
            waiter = asyncio.create_task(ts.wait_key("sensor", lambda v, t: v == 9, timeout=5))
            indexed_waiter = asyncio.create_task(ts.wait_indexed("idx", 2, timeout=5))
            await env.until_subscribed("sensor", "idx")
            async with ts.pipeline() as batch:
                for i in range(10):
                    batch.add("sensor", i, ts=100.0 + i)
                batch.set("attr", {"x": 1})
                batch["item"] = (1, 2)
                for i in range(3):
                    batch.set_indexed("idx", i, str(i))
                assert len(batch) == 15
                assert not await ts.exists("attr")  # nothing sent before the block ends
            await asyncio.gather(waiter, indexed_waiter)
            assert await ts.get_range("sensor", st=0) == [(i, 100.0 + i) for i in range(10)]
            assert await ts.get("attr") == {"x": 1} and await ts["item"] == (1, 2)
            assert await ts.get("idx") == {0: "0", 1: "1", 2: "2"}

            # Explicit execute(); then an empty batch sends nothing.
            batch = ts.view("ns").pipeline()
            batch.add("s", 1.0, ts=1.0)
            await batch.execute()
            assert len(batch) == 0 and await ts.get("ns_s") == 1.0
            await batch.execute()

            # An exception in the block: nothing is sent.
            with pytest.raises(ZeroDivisionError):
                async with ts.pipeline() as batch:
                    batch.set("never", 1)
                    1 / 0  # noqa: B018
            assert not await ts.exists("never")

            # Bad input raises when queued; a changed immutable raises on exit,
            # after the other writes of the batch are applied.
            async with ts.pipeline() as batch:
                with pytest.raises(telstate.InvalidTimestampError):
                    batch.add("sensor", 1, ts=float("nan"))
            with pytest.raises(telstate.ImmutableKeyError):
                async with ts.pipeline() as batch:
                    batch.set("attr", {"x": 2})
                    batch.set("fresh", 3)
                    batch.set_indexed("idx", 0, "0")  # same value: fine
            assert await ts.get("fresh") == 3 and await ts.get("attr") == {"x": 1}

    run(body())


# --------------------------------------------------------------------------- katsdptelstate.aio

kat_close_warning = pytest.mark.filterwarnings(
    # katsdptelstate 1.0's RedisBackend._close calls redis-py's deprecated close()
    "ignore:Call to deprecated close:DeprecationWarning"
)


@contextlib.asynccontextmanager
async def kat_backend(env: Env) -> AsyncIterator[katsdptelstate.aio.redis.RedisBackend]:
    backend = await katsdptelstate.aio.redis.RedisBackend.from_url(env.url)
    try:
        yield backend
    finally:
        backend.close()
        await backend.wait_closed()


@contextlib.asynccontextmanager
async def both(env: Env) -> AsyncIterator[tuple[Any, telstate.aio.TelescopeState]]:
    """(katsdptelstate.aio, telstate.aio) TelescopeStates on the same server."""
    async with kat_backend(env) as kb, await env.backend() as tb:
        yield katsdptelstate.aio.TelescopeState(kb), telstate.aio.TelescopeState(tb)


@kat_close_warning
@pytest.mark.parametrize("waiter_lib", ["katsdptelstate", "telstate"])
def test_interop_waits(redis_env: Env, waiter_lib: str) -> None:
    async def body() -> None:
        async with both(redis_env) as (kat, tel):
            waiter, writer = (kat, tel) if waiter_lib == "katsdptelstate" else (tel, kat)
            waits = [
                waiter.wait_key("sensor", lambda v, t: v >= 3 and t == 103.0),
                waiter.wait_key("attr"),
                waiter.wait_key("attr2", lambda v, t: v == {"a": [1]} and t is None),
                waiter.wait_indexed("idx", "b", lambda v: v == "x"),
                waiter.wait_indexed("idx", ("t", 1)),
            ]
            tasks = [asyncio.ensure_future(w) for w in waits]
            await redis_env.until_subscribed("sensor", "attr", "attr2", "idx")
            await asyncio.sleep(0.05)  # katsdptelstate re-checks after subscribing too
            assert not any(task.done() for task in tasks)
            for i in range(4):
                await writer.add("sensor", i, ts=100.0 + i)
            await writer.set("attr", 1)
            await writer.set("attr2", {"a": [1]})
            await writer.set_indexed("idx", "a", "y")
            await writer.set_indexed("idx", "b", "x")
            await writer.set_indexed("idx", ("t", 1), None)
            async with asyncio.timeout(5):
                await asyncio.gather(*tasks)
            # and a telstate watch sees katsdptelstate's samples (or its own)
            async with contextlib.aclosing(tel.watch("sensor")) as updates:
                assert await anext(updates) == (3, 103.0)
                await writer.add("sensor", 4, ts=104.0)
                assert await anext(updates) == (4, 104.0)

    run(body())


@kat_close_warning
@pytest.mark.parametrize("writer_lib", ["katsdptelstate", "telstate"])
def test_interop_values(redis_env: Env, writer_lib: str) -> None:
    async def body() -> None:
        async with both(redis_env) as (kat, tel):
            writer, reader = (kat, tel) if writer_lib == "katsdptelstate" else (tel, kat)
            for i, (name, value) in enumerate(VALUES):
                await writer.set(f"attr_{name}", value)
                await writer.add("sensor", value, ts=1000.0 + i)
            for i, sub_key in enumerate(SUB_KEYS):
                await writer.set_indexed("idx", sub_key, VALUES[i][1])
            for name, value in VALUES:
                assert same(await reader.get(f"attr_{name}"), value), name
                assert same(await reader[f"attr_{name}"], value), name
            got = await reader.get_range("sensor", st=0)
            expected = [(value, 1000.0 + i) for i, (_, value) in enumerate(VALUES)]
            assert len(got) == len(expected)
            for g, e in zip(got, expected, strict=True):
                assert same(tuple(g), e), e
            for i, sub_key in enumerate(SUB_KEYS):
                assert same(await reader.get_indexed("idx", sub_key), VALUES[i][1]), sub_key
            assert same(await reader.get("idx"), {k: VALUES[i][1] for i, k in enumerate(SUB_KEYS)})
            assert await reader.keys() == await writer.keys()
            for key in ("attr_int", "sensor", "idx"):
                kinds = await reader.key_type(key), await writer.key_type(key)
                assert kinds[0].name == kinds[1].name  # two KeyType enums, same names
            # Immutables are immutable across libraries.
            with pytest.raises(Exception, match="immutable") as info:
                await reader.set("attr_int", 1)
            assert type(info.value).__name__ == "ImmutableKeyError"

    run(body())


# --------------------------------------------------------------------------- test helpers


def test_run_helper_times_out() -> None:
    with pytest.raises(TimeoutError):
        run(asyncio.sleep(1), timeout=0.01)
