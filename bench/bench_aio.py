"""Side-by-side benchmark of telstate.aio against katsdptelstate.aio 1.0.0 (Redis and memory).

The script starts its own redis-server (a free TCP port on 127.0.0.1, or a unix
socket with ``--unix``; no persistence; data in a temporary directory; the
``RedisServer`` of bench_redis.py) and stops it at the end, also after an error,
Ctrl-C or SIGTERM.  It never touches another server.  Method (the harness is
shared with bench_core.py and bench_redis.py, see _harness.py):

* Every measurement runs in its own ``asyncio.run`` with new backends, closed at
  its end: on Redis each library's ``RedisBackend.from_url`` (katsdptelstate in
  database 0, telstate in database 1 of the one server), in memory each
  library's ``aio.MemoryBackend()``.  FLUSHALL runs before every measurement.
* Single-call latency: the mean over ``ops`` sequential awaits of ``add`` (a
  sensor sample), ``set`` (distinct immutables), ``get`` (of those immutables)
  and ``get_range`` (the latest sample), data written beforehand (not timed).
* Wake-up latency: the median over ``waits`` rounds of one waiter task in
  ``wait_key`` and one write, from just before the write starts to the moment
  the waiter resumes.  The writer is either a task in the same event loop on the
  same TelescopeState; or, on Redis, another process using the library's sync
  TelescopeState (time.perf_counter is CLOCK_MONOTONIC, shared by processes);
  or, in memory, a sync TelescopeState in another thread sharing the backend
  (``MemoryBackend.to_sync()``).
* 1000 waiters: ``waiters`` tasks in ``wait_key`` on distinct keys, all
  subscribed (Redis: counted with PUBSUB CHANNELS) before the clock starts; then
  one write per key from another connection in the same loop (``await
  writer.set``, sequentially, for both libraries); the figure is the time from
  the first write to the last waiter woken.  While they wait, the connections
  the waiters' backend holds are counted with CLIENT LIST (all of them, and
  those in pub/sub mode), and in memory the threads of the process.
  telstate's waiters use its own ``from_url`` (connections named with its
  ``client_name`` option).  katsdptelstate's ``from_url`` cannot take 1000
  concurrent waits with redis-py 8: its default asyncio pool raises "Too many
  connections" beyond 100 concurrent commands; so its backend gets a client
  with a ``redis.asyncio.BlockingConnectionPool`` of ``pool`` connections
  (named), and the other options of its ``from_url``.
* Results are checked (values read, every waiter woken, nothing woken early);
  ratios, medians, alternation and the table are as in bench_redis.py.

Run ``python bench/bench_aio.py --help`` for the options.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import shutil
import signal
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

import redis
import redis.asyncio
import redis.utils

import _harness
from _harness import CHECKS, SRC, Hooks, Registry
from bench_redis import RedisServer

T0 = 1e9  # timestamp of sample 0; sample i is at T0 + i
DB = {"katsdptelstate": 0, "telstate": 1}  # each library's database on the server
NAME = "bench_aio_waiters"  # client name of the 1000 waiters' connections

# katsdptelstate 1.0's RedisBackend._close calls redis-py's deprecated close().
warnings.filterwarnings("ignore", "Call to deprecated close", DeprecationWarning)


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    ops: int = 2_000  # sequential awaits per single-call timing (mean)
    waits: int = 100  # wake-ups per wake-latency timing (median)
    waiters: int = 1_000  # concurrent waiters
    pool: int = 50  # connections of katsdptelstate's waiters' command pool (Redis)
    samples: int = 1_000  # samples of the sensor read by get_range


FULL = Sizes()
QUICK = Sizes(ops=300, waits=20, waiters=200)


# --------------------------------------------------------------------------- server, backends

SERVER: RedisServer | None = None  # set by main()
_ADMIN: list[redis.Redis] = []


def server() -> RedisServer:
    assert SERVER is not None, "the redis server is not running"
    return SERVER


def url() -> str:
    """The private server as a URL for both libraries' ``from_url``."""
    srv = server()
    return f"unix://{srv.socket_path}" if srv.unix else f"redis://127.0.0.1:{srv.port}"


def admin() -> redis.Redis:
    if not _ADMIN:
        _ADMIN.append(server().client())
    return _ADMIN[0]


def aio(mod: ModuleType) -> ModuleType:
    """The library's asyncio package (with its redis and memory modules loaded)."""
    importlib.import_module(mod.__name__ + ".aio.redis")
    importlib.import_module(mod.__name__ + ".aio.memory")
    return importlib.import_module(mod.__name__ + ".aio")


def memory_backend(mod: ModuleType) -> Any:
    return aio(mod).memory.MemoryBackend()


async def redis_backend(mod: ModuleType) -> Any:
    """The library's asyncio RedisBackend, as its from_url makes it."""
    return await aio(mod).redis.RedisBackend.from_url(url(), db=DB[mod.__name__])


async def waiters_backend(mod: ModuleType, size: int) -> Any:
    """The backend of the 1000 waiters, its connections named NAME.

    telstate's from_url (a blocking pool of its own); katsdptelstate's RedisBackend
    on a blocking pool of `size` connections (its from_url's pool cannot queue).
    """
    if mod.__name__ == "telstate":
        return await aio(mod).redis.RedisBackend.from_url(
            url(), db=DB[mod.__name__], client_name=NAME
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url(),
        db=DB[mod.__name__],
        max_connections=size,
        timeout=None,
        client_name=NAME,
        socket_timeout=5,  # katsdptelstate's from_url options
        health_check_interval=30,
    )
    return aio(mod).redis.RedisBackend(redis.asyncio.Redis.from_pool(pool))


async def close(backend: Any) -> None:
    """``close()`` then ``wait_closed()``, bounded.

    On Python 3.11 a task cancellation that lands while redis-py sends a
    command (inside ``asyncio.wait_for``) is lost; katsdptelstate's close then
    waits forever for its pub/sub task, so that task is cancelled again.
    """
    backend.close()
    closing = asyncio.ensure_future(backend.wait_closed())
    for _ in range(20):
        done, _ = await asyncio.wait({closing}, timeout=0.5)
        if done:
            closing.result()
            return
        task = getattr(backend, "_pubsub_task", None)  # katsdptelstate's
        if task is not None:
            task.cancel()
    raise RuntimeError(f"{backend!r} did not close within 10 s")


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait for them (again for those whose cancellation was lost)."""
    for _ in range(5):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)


def _before_measure(w: _harness.Workload, lib: str) -> None:
    if SERVER is not None:
        admin().flushall()
    gc.collect()


def _after_run() -> None:
    while _ADMIN:
        _ADMIN.pop().close()


HOOKS = Hooks(before_measure=_before_measure, after_run=_after_run)

WORKLOADS = Registry()


# --------------------------------------------------------------------------- single calls


async def _single_calls(mod: ModuleType, sizes: Sizes, where: str, op: str) -> float:
    """Mean µs of one ``await ts.<op>(...)``."""
    lib = aio(mod)
    backend = await redis_backend(mod) if where == "redis" else memory_backend(mod)
    try:
        ts = lib.TelescopeState(backend)
        n = sizes.ops
        keys = [f"attr_{i}" for i in range(n)]
        if op == "get":
            for i, key in enumerate(keys):
                await ts.set(key, i)
        if op == "latest":
            for i in range(sizes.samples):
                await ts.add("sensor", float(i), ts=T0 + i)

        async def work() -> list[Any]:
            if op == "add":
                for i in range(n):
                    await ts.add("sensor", float(i), ts=T0 + i)
            elif op == "set":
                for i, key in enumerate(keys):
                    await ts.set(key, i)
            elif op == "get":
                return [await ts.get(key) for key in keys]
            else:
                return [await ts.get_range("sensor") for _ in range(n)]
            return []

        gc.collect()
        start = time.perf_counter()
        got = await work()
        seconds = time.perf_counter() - start

        what = f"{where} {op}"
        if op == "add":
            ok = await ts.get_range("sensor", st=0) == [(float(i), T0 + i) for i in range(n)]
            CHECKS.expect(ok, mod, f"{what}: wrong samples")
        elif op == "set":
            CHECKS.expect(await ts.get(keys[-1]) == n - 1, mod, f"{what}: wrong value")
        elif op == "get":
            CHECKS.expect(got == list(range(n)), mod, f"{what}: wrong values")
        else:
            latest = [(float(sizes.samples - 1), T0 + sizes.samples - 1)]
            CHECKS.expect(all(g == latest for g in got), mod, f"{what}: wrong latest sample")
        return seconds / n * 1e6
    finally:
        await close(backend)


OPS = {
    "add": "await add (sensor sample)",
    "set": "await set (immutable)",
    "get": "await get (immutable)",
    "latest": "await get_range (latest)",
}
for _where in ("redis", "memory"):
    for _op, _label in OPS.items():

        def _run_single(mod: ModuleType, sizes: Sizes, where: str = _where, op: str = _op) -> float:
            return asyncio.run(_single_calls(mod, sizes, where, op))

        WORKLOADS.workload(f"{_where}_{_op}", f"{_where}: {_label}", "µs", "time")(_run_single)


# --------------------------------------------------------------------------- wake-up latency

Writer = Callable[[str], Awaitable[float]]  # writes key; returns perf_counter() at its start


async def _wake_latencies(ts: Any, write: Writer, sizes: Sizes, settle: float) -> list[float]:
    """Seconds from each write's start to its waiter resuming."""
    latencies = []
    for i in range(sizes.waits):
        key = f"wake_{i}"
        woke: list[float] = []

        async def waiter(key: str = key, woke: list[float] = woke) -> None:
            await ts.wait_key(key)
            woke.append(time.perf_counter())

        task = asyncio.create_task(waiter())
        await asyncio.sleep(settle)  # long enough for the waiter to be blocked in wait_key
        if task.done():
            task.result()
            raise RuntimeError(f"the waiter for {key} returned before the write")
        start = await write(key)
        await asyncio.wait({task}, timeout=30)
        if not woke:
            await cancel_all([task])
            raise RuntimeError(f"the waiter for {key} did not wake within 30 s")
        latencies.append(woke[0] - start)
    return latencies


async def _wake(mod: ModuleType, sizes: Sizes, where: str, writer: str) -> float:
    """Median ms from a write to its waiter resuming."""
    lib = aio(mod)
    backend = await redis_backend(mod) if where == "redis" else memory_backend(mod)
    ts = lib.TelescopeState(backend)
    settle = 0.02 if where == "redis" else 0.01
    process: asyncio.subprocess.Process | None = None
    try:
        if writer == "loop":

            async def write(key: str) -> float:
                start = time.perf_counter()
                await ts.add(key, 1, immutable=True)
                return start

        elif writer == "thread":
            writer_ts = mod.TelescopeState(backend.to_sync())

            def write_sync(key: str) -> float:
                start = time.perf_counter()
                writer_ts.add(key, 1, immutable=True)
                return start

            async def write(key: str) -> float:
                return await asyncio.to_thread(write_sync, key)

        else:  # another process
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                str(SRC),
                mod.__name__,
                server().endpoint,
                str(DB[mod.__name__]),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdin is not None and process.stdout is not None
            stdin, stdout = process.stdin, process.stdout
            ready = await asyncio.wait_for(stdout.readline(), 30)
            if ready.strip() != b"ready":
                raise RuntimeError(f"the writer process did not start: {ready!r}")

            async def write(key: str) -> float:
                stdin.write(key.encode() + b"\n")
                await stdin.drain()
                return float(await stdout.readline())

        latencies = await _wake_latencies(ts, write, sizes, settle)
        CHECKS.expect(all(t > 0 for t in latencies), mod, f"wake ({where}, {writer}): early")
        CHECKS.expect(await ts.get("wake_0") == 1, mod, f"wake ({where}, {writer}): wrong value")
        return statistics.median(latencies) * 1e3
    finally:
        if process is not None:
            assert process.stdin is not None
            process.stdin.close()
            await process.wait()
        await close(backend)


# The writer process: the library's sync TelescopeState, one write per line read.
_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import importlib
mod = importlib.import_module(sys.argv[2])
ts = mod.TelescopeState(sys.argv[3], db=int(sys.argv[4]))
print("ready", flush=True)
for line in sys.stdin:
    key = line.strip()
    start = time.perf_counter()
    ts.add(key, 1, immutable=True)
    print(repr(start), flush=True)
"""

WAKES = [
    ("redis", "loop", "redis: wake-up, writer task in the same loop"),
    ("redis", "process", "redis: wake-up, writer in another process"),
    ("memory", "loop", "memory: wake-up, writer task in the same loop"),
    ("memory", "thread", "memory: wake-up, sync writer in another thread"),
]
for _where, _writer, _label in WAKES:

    def _run_wake(
        mod: ModuleType, sizes: Sizes, where: str = _where, writer: str = _writer
    ) -> float:
        return asyncio.run(_wake(mod, sizes, where, writer))

    WORKLOADS.workload(f"wake_{_where}_{_writer}", _label, "ms", "time")(_run_wake)


# --------------------------------------------------------------------------- many waiters


@dataclass
class ManyWaiters:
    seconds: float  # first write to last waiter woken
    connections: int  # connections named NAME (the waiters' backend), while waiting
    pubsub: int  # of which in pub/sub mode
    threads: int  # threads of this process while waiting


async def _many_waiters(mod: ModuleType, sizes: Sizes, where: str) -> ManyWaiters:
    lib = aio(mod)
    n = sizes.waiters
    if where == "redis":
        backend = await waiters_backend(mod, sizes.pool)
        writer_backend = await redis_backend(mod)
    else:
        backend = writer_backend = memory_backend(mod)
    ts, writer = lib.TelescopeState(backend), lib.TelescopeState(writer_backend)
    woke = [0.0] * n

    async def waiter(i: int) -> None:
        await ts.wait_key(f"w_{i}")
        woke[i] = time.perf_counter()

    tasks = [asyncio.create_task(waiter(i)) for i in range(n)]
    try:
        if where == "redis":
            deadline = time.monotonic() + 120
            while len(admin().pubsub_channels("update/w_*")) < n:
                if time.monotonic() > deadline or any(task.done() for task in tasks):
                    raise RuntimeError(f"{mod.__name__}: the {n} waiters did not all subscribe")
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # past the re-check after subscribing (memory: threads up)
        named = [c for c in admin().client_list() if c["name"] == NAME] if where == "redis" else []
        pubsub = sum(1 for c in named if int(c["sub"]) or int(c["psub"]))
        threads = threading.active_count()
        early = sum(task.done() for task in tasks)
        CHECKS.expect(early == 0, mod, f"{n} waiters ({where}): {early} returned early")

        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            await writer.set(f"w_{i}", i)
        _, pending = await asyncio.wait(tasks, timeout=60)
        CHECKS.expect(not pending, mod, f"{n} waiters ({where}): {len(pending)} never woke")
        seconds = max(woke) - start if not pending else float("nan")
        CHECKS.expect(min(woke) > start, mod, f"{n} waiters ({where}): woken before the writes")
        return ManyWaiters(seconds, len(named), pubsub, threads)
    finally:
        await cancel_all(tasks)
        await close(backend)
        if writer_backend is not backend:
            await close(writer_backend)


MANY = [
    ("redis", "seconds", "ms", "time", "redis: 1000 waiters, first write to last woken"),
    ("redis", "pubsub", "conns", "memory", "redis: 1000 waiters, pub/sub connections"),
    ("redis", "connections", "conns", "memory", "redis: 1000 waiters, connections in all"),
    ("memory", "seconds", "ms", "time", "memory: 1000 waiters, first write to last woken"),
    ("memory", "threads", "threads", "memory", "memory: 1000 waiters, threads in process"),
]
for _where, _field, _unit, _kind, _label in MANY:

    def _run_many(mod: ModuleType, sizes: Sizes, where: str = _where, field: str = _field) -> float:
        result = asyncio.run(_many_waiters(mod, sizes, where))
        value = getattr(result, field)
        return float(value * 1e3 if field == "seconds" else value)

    WORKLOADS.workload(f"{_where}_many_{_field}", _label, _unit, _kind)(_run_many)


# --------------------------------------------------------------------------- main


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the server's cleanup


def main(argv: list[str] | None = None) -> int:
    global SERVER
    parser = _harness.parser(__doc__.split("\n\n")[0], WORKLOADS)
    parser.add_argument(
        "--unix", action="store_true", help="connect through a unix socket instead of TCP"
    )
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        default="redis-server",
        help="the redis-server executable (default: redis-server on PATH)",
    )
    args, workloads = _harness.parse_args(parser, WORKLOADS, argv)
    executable = shutil.which(args.redis_server)
    if executable is None:
        parser.error(f"cannot find {args.redis_server!r}; install redis-server or pass its path")
    sizes = QUICK if args.quick else FULL
    modules = _harness.import_libraries()
    env = _harness.environment(modules)

    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with RedisServer(executable, args.unix) as srv:
            SERVER = srv
            info = srv.info()
            env["redis_server"] = {
                "version": info.get("redis_version"),
                "executable": executable,
                "endpoint": srv.endpoint,
            }
            env["redis_py"] = redis.__version__
            env["hiredis"] = redis.utils.HIREDIS_AVAILABLE
            _harness.print_header(env, args, sizes)
            print(
                f"redis-server {info.get('redis_version')} (private, pid {info.get('process_id')},"
                f" {'unix socket' if args.unix else 'TCP'} {srv.endpoint}); redis-py"
                f" {redis.__version__}, hiredis {'yes' if env['hiredis'] else 'no'}",
                flush=True,
            )
            started = time.perf_counter()
            try:
                results = _harness.run(workloads, modules, sizes, args.repeat, HOOKS)
            except KeyboardInterrupt:
                print("interrupted; stopping redis-server", file=sys.stderr)
                return 130
            elapsed = time.perf_counter() - started
    finally:
        SERVER = None
        signal.signal(signal.SIGTERM, previous)
    return _harness.report(results, args, env, sizes, elapsed)


if __name__ == "__main__":
    sys.exit(main())
