"""telstate against the machine's limits: sensor arrays, many sensors, decimation, single calls.

Every figure is measured in this run, beside what bounds it:

* the single-client rates of one private redis-server, from ``redis-benchmark -c 1``
  (GET, and EVALSHA of a one-line script), for telstate's attribute get and sensor
  add, each a round trip;
* the time a plain socket takes to receive the server's raw ZRANGEBYLEX reply, for
  ``get_range_arrays`` from Redis;
* a bare redis-py publisher and subscriber, for the wake-up of ``wait_key`` on Redis;
* katsdptelstate 1.0 on the same server (or in memory), where it can do the same work.

The script starts its own redis-server on a free loopback port (no persistence, a
temporary directory) and stops it at the end.  Each figure is the median of
``--repeat`` runs.  Run ``python bench/bench_limits.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import katsdptelstate
import numpy as np
import redis

import telstate
import telstate.aio
from telstate._decimate import envelope, points_for_plot
from telstate._redis.resp import pack
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends._redis_protocol import SCRIPTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_redis import RedisServer

ROWS: list[tuple[str, str, str, str, str]] = []
PROFILES: list[tuple[str, str]] = []


def median_of(repeat: int, func: Callable[[], float]) -> float:
    return statistics.median(func() for _ in range(repeat))


def median_time(repeat: int, func: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Median seconds of ``func(*args, **kwargs)``."""
    return median_of(repeat, lambda: timed(lambda: func(*args, **kwargs)))


def aio_median(server: RedisServer, repeat: int, call: Callable[[Any], Awaitable[Any]]) -> float:
    """Median seconds of ``await call(ts)`` on an asyncio telstate of `server`."""

    async def main() -> float:
        url = server.endpoint if server.unix else f"redis://{server.endpoint}"
        backend = await AioRedisBackend.from_url(url)
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            await call(ts)  # connected, scripts loaded
            times = []
            for _ in range(repeat):
                gc.collect()
                start = time.perf_counter()
                await call(ts)
                times.append(time.perf_counter() - start)
            return statistics.median(times)

    return asyncio.run(main())


def row(workload: str, telstate_figure: str, reference: str, ratio: str, goal: str) -> None:
    ROWS.append((workload, telstate_figure, reference, ratio, goal))
    print(f"  {workload}: telstate {telstate_figure} | {reference} | {ratio} | {goal}", flush=True)


def profile(workload: str, figures: str) -> None:
    """A line of the profile that explains a row (printed after the table)."""
    PROFILES.append((workload, figures))
    print(f"  profile of {workload}: {figures}", flush=True)


def timed(func: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the server's limits


def redis_benchmark(port: int, n: int, *command: str) -> tuple[float, float]:
    """Requests per second of one client, from redis-benchmark, and its CPU seconds
    (user and system) per request."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise SystemExit("redis-benchmark is needed (Debian: redis-tools / redis-server)")
    # -r: each __rand_int__ in the command becomes a random number (new sensor samples)
    options = ["-h", "127.0.0.1", "-p", str(port), "-c", "1", "-n", str(n), "-r", "100000000"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [exe, *options, "-q", *command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "GET: 41152.26 requests per second, p50=0.023 msec" (the last \r-separated report)
    last = out.replace("\r", "\n").strip().splitlines()[-1]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return float(last.split(":")[1].split("requests")[0]), cpu / n


def single_calls(server: RedisServer, n: int, repeat: int) -> None:
    """Rates of single calls beside redis-benchmark's.  The machine's speed drifts, so each
    round measures everything back to back, and ratios are taken within a round (the
    table gives the medians of the rates and of the per-round ratios)."""
    print("single calls (ops/s, one client, loopback TCP)")
    admin = server.client()
    admin.flushall()
    port = server.port
    assert port is not None
    admin.set("bench_key", b"\xff\xcb" + struct.pack(">d", 1.5))
    sha = admin.script_load("return redis.call('GET', KEYS[1])")
    # The server's own work for a sample: telstate's add script (ZADD, PUBLISH), run by
    # redis-benchmark with a new member each time (katsdptelstate's script does the same).
    add_sha = admin.script_load(SCRIPTS["add_mutable"])

    def rate(make: Callable[[], Any], op: Callable[[Any, int], Any]) -> tuple[float, float]:
        """Calls per second, and the client's CPU seconds (user and system) per call."""
        ts = make()
        try:
            cpu = time.process_time()
            seconds = timed(lambda: [op(ts, i) for i in range(n)])
            cpu = time.process_time() - cpu
        finally:
            backend = getattr(ts, "backend", None)
            close = getattr(backend, "close", None)
            if callable(close):
                close()
        return n / seconds, cpu / n

    def aio_rate(op: Callable[[Any, int], Awaitable[Any]]) -> tuple[float, float]:
        """:func:`rate` of the asyncio front end."""

        async def main() -> tuple[float, float]:
            backend = await AioRedisBackend.from_url(f"redis://{server.endpoint}")
            async with backend:
                ts = telstate.aio.TelescopeState(backend)
                await op(ts, 0)  # connected
                gc.collect()
                cpu = time.process_time()
                start = time.perf_counter()
                for i in range(n):
                    await op(ts, i)
                seconds = time.perf_counter() - start
                return n / seconds, (time.process_time() - cpu) / n

        return asyncio.run(main())

    endpoint = server.endpoint
    tel = lambda: telstate.TelescopeState(endpoint)  # noqa: E731
    kat = lambda: katsdptelstate.TelescopeState(endpoint, db=1)  # noqa: E731
    for make in (tel, kat):
        ts = make()
        ts["attr"] = 1.5
    # Each entry: (calls per second, client CPU seconds per call)
    rounds: list[dict[str, tuple[float, float]]] = []
    for _ in range(repeat):
        rounds.append(
            {
                "limit_get": redis_benchmark(port, n, "GET", "bench_key"),
                "get_t": rate(tel, lambda ts, i: ts["attr"]),
                "get_k": rate(kat, lambda ts, i: ts["attr"]),
                "get_a": aio_rate(lambda ts, i: ts.get("attr")),
                "limit_eval": redis_benchmark(port, n, "EVALSHA", sha, "1", "bench_key"),
                "limit_add": redis_benchmark(
                    port, n, "EVALSHA", add_sha, "1", "bench_add", "__rand_int____rand_int__"
                ),
                "add_t": rate(tel, lambda ts, i: ts.add("s", 1.0, ts=float(i))),
                "add_k": rate(kat, lambda ts, i: ts.add("s", 1.0, ts=float(i))),
                "add_a": aio_rate(lambda ts, i: ts.add("s", 1.0, ts=float(i))),
            }
        )

    def med(name: str) -> float:
        return statistics.median(r[name][0] for r in rounds)

    def ratio(top: str, bottom: str) -> float:
        return statistics.median(r[top][0] / r[bottom][0] for r in rounds)

    def cpu(name: str) -> str:
        """Client CPU per call against the whole call, in microseconds: the profile of
        a gap (the server's and the kernel's share of a call is the same for all)."""
        used = statistics.median(r[name][1] for r in rounds)
        return f"{used * 1e6:.0f} of {1e6 / med(name):.0f} us"

    row(
        "attribute get",
        f"{med('get_t') / 1e3:.1f} k/s; asyncio {med('get_a') / 1e3:.1f} k/s",
        f"redis-benchmark GET {med('limit_get') / 1e3:.1f} k/s; "
        f"katsdptelstate {med('get_k') / 1e3:.1f} k/s",
        f"{ratio('get_t', 'limit_get'):.2f}x limit (asyncio {ratio('get_a', 'limit_get'):.2f}x; "
        f"katsdptelstate {ratio('get_k', 'limit_get'):.2f}x)",
        ">= 0.8x GET",
    )
    profile(
        "attribute get, client CPU per call",
        f"telstate {cpu('get_t')} (asyncio {cpu('get_a')}); redis-benchmark "
        f"{cpu('limit_get')}; katsdptelstate {cpu('get_k')}",
    )
    row(
        "sensor add",
        f"{med('add_t') / 1e3:.1f} k/s; asyncio {med('add_a') / 1e3:.1f} k/s",
        f"redis-benchmark EVALSHA {med('limit_eval') / 1e3:.1f} k/s, of the add script "
        f"itself {med('limit_add') / 1e3:.1f} k/s; katsdptelstate {med('add_k') / 1e3:.1f} k/s",
        f"{ratio('add_t', 'limit_eval'):.2f}x limit (asyncio {ratio('add_a', 'limit_eval'):.2f}x; "
        f"katsdptelstate {ratio('add_k', 'limit_eval'):.2f}x); "
        f"{ratio('add_t', 'limit_add'):.2f}x the add script's",
        ">= 0.8x EVALSHA",
    )
    profile(
        "sensor add, client CPU per call",
        f"telstate {cpu('add_t')} (asyncio {cpu('add_a')}); redis-benchmark EVALSHA "
        f"{cpu('limit_eval')}, "
        f"the add script {cpu('limit_add')}; katsdptelstate {cpu('add_k')}",
    )
    admin.flushall()
    admin.close()


# --------------------------------------------------------------------------- wake-ups


def _wake_latency(waiter: Any, writer: Callable[[str], Any], waits: int, key_prefix: str) -> float:
    latencies = []
    for i in range(waits):
        key = f"{key_prefix}{i}"
        woke: list[float] = []

        def wait(k: str = key, woke: list[float] = woke) -> None:
            waiter.wait_key(k, timeout=10)
            woke.append(time.perf_counter())

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        time.sleep(0.01)  # the waiter is blocked inside wait_key by now
        start = time.perf_counter()
        writer(key)
        thread.join(20)
        assert woke, f"waiter for {key} did not wake"
        latencies.append(woke[0] - start)
    return statistics.median(latencies)


def _pubsub_floor(server: RedisServer, waits: int) -> float:
    """A bare redis-py pair: one round trip of a write that publishes, to a subscriber."""
    sub, pub = server.client(), server.client()
    pubsub = sub.pubsub()
    latencies = []
    try:
        for i in range(waits):
            channel = f"floor_{i}"
            pubsub.subscribe(channel)
            pubsub.get_message(timeout=1)  # the subscribe confirmation
            woke: list[float] = []

            def listen(woke: list[float] = woke) -> None:
                while pubsub.get_message(timeout=5) is None:
                    pass
                woke.append(time.perf_counter())

            thread = threading.Thread(target=listen, daemon=True)
            thread.start()
            time.sleep(0.01)
            start = time.perf_counter()
            pub.publish(channel, b"x")
            thread.join(10)
            assert woke
            latencies.append(woke[0] - start)
            pubsub.unsubscribe(channel)
            pubsub.get_message(timeout=1)
    finally:
        pubsub.close()
        sub.close()
        pub.close()
    return statistics.median(latencies)


def _queue_floor(waits: int) -> float:
    """A bare thread handoff: put into a queue.SimpleQueue that another thread waits on."""
    import queue

    latencies = []
    for _ in range(waits):
        handoff: queue.SimpleQueue[float] = queue.SimpleQueue()
        woke: list[float] = []

        def take(q: queue.SimpleQueue[float] = handoff, woke: list[float] = woke) -> None:
            q.get(timeout=10)
            woke.append(time.perf_counter())

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        time.sleep(0.01)
        start = time.perf_counter()
        handoff.put(start)
        thread.join(10)
        latencies.append(woke[0] - start)
    return statistics.median(latencies)


def _cold_and_warm(call: Callable[[int], Any], calls: int) -> tuple[float, float]:
    """Median seconds of `call` after the same 10 ms idle as the wake-up timings (code
    and data the idle machine evicted from its caches), and of the same call again."""
    cold, warm = [], []
    for i in range(calls):
        time.sleep(0.01)
        start = time.perf_counter()
        call(2 * i)
        middle = time.perf_counter()
        call(2 * i + 1)
        cold.append(middle - start)
        warm.append(time.perf_counter() - middle)
    return statistics.median(cold), statistics.median(warm)


def _memory_writer_profile(waits: int) -> str:
    """The writer's half of a memory wake-up: its add with nobody waiting, cold and warm."""
    parts = []
    for name, mod in (("telstate", telstate), ("katsdptelstate", katsdptelstate)):
        add = partial(mod.TelescopeState().add, value=1, immutable=True)
        prefix = f"c{time.time()}_"
        cold, warm = _cold_and_warm(lambda i, a=add, p=prefix: a(f"{p}{i}"), waits)
        parts.append(f"{name} {cold * 1e6:.0f} us ({warm * 1e6:.1f} us warm)")
    noop_cold, noop_warm = _cold_and_warm(lambda i: None, waits)
    parts.append(f"an empty lambda {noop_cold * 1e6:.1f} us ({noop_warm * 1e6:.2f} us warm)")
    return "; ".join(parts)


def wake_ups(server: RedisServer, waits: int, repeat: int) -> None:
    print("wait_key wake-up (write issued -> waiter returns)")
    endpoint = server.endpoint
    for where in ("redis", "memory"):

        def measure(mod: Any, where: str = where) -> float:
            if where == "redis":
                waiter = (
                    mod.TelescopeState(endpoint)
                    if mod is telstate
                    else mod.TelescopeState(endpoint, db=1)
                )
                writer = (
                    mod.TelescopeState(endpoint)
                    if mod is telstate
                    else mod.TelescopeState(endpoint, db=1)
                )
            else:
                waiter = mod.TelescopeState()
                writer = waiter
            return _wake_latency(
                waiter, lambda key: writer.add(key, 1, immutable=True), waits, f"w{time.time()}_"
            )

        tel = median_of(repeat, lambda: measure(telstate))
        kat = median_of(repeat, lambda: measure(katsdptelstate))
        if where == "redis":
            bare = median_of(repeat, lambda: _pubsub_floor(server, waits))
            floor = f"; bare redis-py publish->subscriber {bare * 1e3:.3f} ms ({tel / bare:.2f}x)"
        else:
            bare = median_of(repeat, lambda: _queue_floor(waits))
            floor = f"; bare thread handoff (SimpleQueue) {bare * 1e3:.3f} ms ({tel / bare:.2f}x)"
        row(
            f"wait_key wake-up, {where}",
            f"{tel * 1e3:.3f} ms",
            f"katsdptelstate {kat * 1e3:.3f} ms{floor}",
            f"{tel / kat:.2f}x katsdptelstate",
            "<= 0.5x katsdptelstate",
        )
        if where == "memory":
            profile(
                "wait_key wake-up, memory: the writer's add alone, after the same idle",
                f"{_memory_writer_profile(waits)}; the goal leaves "
                f"{(kat / 2 - bare) * 1e6:.0f} us beyond the bare handoff for the writer's "
                "add, the wake and the waiter's return",
            )


# --------------------------------------------------------------------------- arrays


def _fill_memory(mod: Any, n: int) -> Any:
    ts = mod.TelescopeState()
    if mod is telstate:
        with ts.pipeline() as batch:
            for i in range(n):
                batch.add("s", float(i), ts=1e9 + i)
    else:  # katsdptelstate has no pipeline
        for i in range(n):
            ts.add("s", float(i), ts=1e9 + i)
    return ts


def _peak(func: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def arrays_memory(sizes: list[int], repeat: int) -> None:
    print("get_range_arrays, memory backend (float samples)")
    for n in sizes:
        ts = _fill_memory(telstate, n)
        seconds = median_time(repeat, ts.get_range_arrays, "s", st=0)
        peak = _peak(partial(ts.get_range_arrays, "s", st=0))
        tuples = ""
        if n <= 1_000_000:
            kat = _fill_memory(katsdptelstate, n)
            ref = median_time(repeat, kat.get_range, "s", st=0)
            tuples = f"katsdptelstate get_range {ref * 1e3:.1f} ms"
            ratio = f"{seconds / ref:.4f}x"
        else:
            ratio = "-"
        goal = "<= 10 ms and <= 0.01x" if n == 1_000_000 else "report"
        row(
            f"get_range_arrays {n:,} samples, memory",
            f"{seconds * 1e3:.2f} ms, peak {peak:.1f} MiB",
            tuples or "-",
            ratio,
            goal,
        )
        ts = kat = None
        gc.collect()


def _plain_exchange(port: int, payload: bytes, expected: int) -> tuple[float, bytearray]:
    """Seconds for a plain socket to send `payload` and receive `expected` bytes, and them."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = bytearray(expected)
        view = memoryview(buffer)
        gc.collect()
        start = time.perf_counter()
        sock.sendall(payload)
        got = 0
        while got < expected:
            got += sock.recv_into(view[got:])
        return time.perf_counter() - start, buffer


def _raw_zrange(server: RedisServer, key: bytes, n: int, member_size: int) -> float:
    """Seconds for a plain socket to send ZRANGEBYLEX and receive the whole reply."""
    assert server.port is not None
    expected = len(b"*%d\r\n" % n) + n * (len(b"$%d\r\n" % member_size) + member_size + 2)
    request = pack([("ZRANGEBYLEX", key, b"-", b"+")])
    seconds, reply = _plain_exchange(server.port, request, expected)
    assert reply.startswith(b"*%d\r\n" % n)
    return seconds


def arrays_redis(server: RedisServer, sizes: list[int], repeat: int) -> None:
    print("get_range_arrays from Redis (float samples), against a plain socket")
    admin = server.client()
    for n in sizes:
        admin.flushall()
        pipe = admin.pipeline(transaction=False)
        for start in range(0, n, 10_000):
            mapping = {
                struct.pack(">d", 1e9 + i) + b"\xff\xcb" + struct.pack(">d", float(i)): 0
                for i in range(start, min(n, start + 10_000))
            }
            pipe.zadd("s", mapping)
        pipe.execute()
        ts = telstate.TelescopeState(server.endpoint)
        try:
            seconds = median_time(repeat, ts.get_range_arrays, "s", st=0)
            peak = _peak(partial(ts.get_range_arrays, "s", st=0))
        finally:
            ts.backend.close()
        aio = aio_median(server, repeat, lambda ts: ts.get_range_arrays("s", st=0))
        raw = median_of(repeat, partial(_raw_zrange, server, b"s", n, 18))
        row(
            f"get_range_arrays {n:,} samples, Redis",
            f"{seconds * 1e3:.1f} ms, peak {peak:.1f} MiB; asyncio {aio * 1e3:.1f} ms",
            f"plain socket receives the reply in {raw * 1e3:.1f} ms",
            f"{seconds / raw:.2f}x socket (asyncio {aio / raw:.2f}x)",
            "<= 1.5x socket" if n == 1_000_000 else "report",
        )
    admin.flushall()
    admin.close()


def _raw_reads(server: RedisServer, names: list[str], samples: int) -> tuple[float, float]:
    """Seconds for a plain socket to send one read transaction per sensor and get the
    replies, and the server's own time for those commands (INFO commandstats)."""
    assert server.port is not None
    words: list[tuple[object, ...]] = []
    for name in names:
        key = name.encode()
        words += [("MULTI",), ("TYPE", key), ("ZRANGEBYLEX", key, b"-", b"+"), ("EXEC",)]
    one = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+zset\r\n*%d\r\n" % samples
    expected = len(names) * (len(one) + samples * (len(b"$18\r\n") + 18 + 2))
    admin = server.client()
    try:
        admin.config_resetstat()
        seconds = _plain_exchange(server.port, pack(words), expected)[0]
        stats = admin.info("commandstats")
    finally:
        admin.close()
    # EXEC's time includes the commands it runs (TYPE, ZRANGEBYLEX), queued for free
    used = sum(stats[f"cmdstat_{name}"]["usec"] for name in ("multi", "exec"))
    return seconds, used * 1e-6


def many_sensors(server: RedisServer, sensors: int, samples: int, repeat: int) -> None:
    print(f"get_ranges of {sensors} sensors x {samples} samples, Redis")
    admin = server.client()
    admin.flushall()
    names = [f"sensor_{i:04d}" for i in range(sensors)]
    for db in (0, 1):  # telstate reads db 0, katsdptelstate db 1: the same members
        client = server.client(db)
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.zadd(
                name,
                {
                    struct.pack(">d", 1e9 + j) + b"\xff\xcb" + struct.pack(">d", float(j)): 0
                    for j in range(samples)
                },
            )
        pipe.execute()
        client.close()
    tel = telstate.TelescopeState(server.endpoint)
    kat = katsdptelstate.TelescopeState(server.endpoint, db=1)
    # In rounds, everything back to back, ratios taken within a round (as single_calls)
    rounds: list[dict[str, float]] = []
    try:
        got = tel.get_ranges(names[:2], st=0)
        assert got[names[0]] == kat.get_range(names[0], st=0)
        tel.get_ranges(names, st=0, arrays=True)  # connected
        for _ in range(repeat):
            raw, own = _raw_reads(server, names, samples)
            rounds.append(
                {
                    "raw": raw,
                    "own": own,
                    "t": timed(lambda: tel.get_ranges(names, st=0)),
                    "ta": timed(lambda: tel.get_ranges(names, st=0, arrays=True)),
                    "aio": aio_median(
                        server, 1, lambda ts: ts.get_ranges(names, st=0, arrays=True)
                    ),
                    "k": timed(lambda: [kat.get_range(n, st=0) for n in names]),
                }
            )
    finally:
        tel.backend.close()

    def med(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    def speedup(name: str) -> float:
        """How many times faster than katsdptelstate's loop, within a round."""
        return statistics.median(r["k"] / r[name] for r in rounds)

    row(
        f"get_ranges {sensors} x {samples}, Redis",
        f"{med('t') * 1e3:.0f} ms (arrays {med('ta') * 1e3:.0f} ms; asyncio arrays "
        f"{med('aio') * 1e3:.0f} ms)",
        f"katsdptelstate loop of get_range {med('k') * 1e3:.0f} ms; a plain socket sending "
        f"the same transactions receives their replies in {med('raw') * 1e3:.0f} ms, of "
        f"which the server spends {med('own') * 1e3:.0f} ms running the commands",
        f"{speedup('t'):.1f}x faster (arrays {speedup('ta'):.1f}x, asyncio "
        f"{speedup('aio'):.1f}x; the socket {speedup('raw'):.1f}x, the server's command "
        f"time {speedup('own'):.1f}x)",
        ">= 20x",
    )
    admin.flushall()
    admin.close()


def decimation(sizes: list[int], buckets: int, repeat: int) -> None:
    print(f"decimation to {buckets} buckets")
    for n in sizes:
        times = 1e9 + np.arange(n, dtype=np.float64) * 0.1
        values = np.sin(np.arange(n) / 1e4)
        env = median_time(repeat, envelope, times, values, buckets)
        pts = median_time(repeat, points_for_plot, times, values, buckets)
        copy = median_time(repeat, values.copy)
        row(
            f"envelope / points_for_plot of {n:,} samples",
            f"{env * 1e3:.1f} ms / {pts * 1e3:.1f} ms",
            f"a copy of the values (memcpy) {copy * 1e3:.2f} ms",
            f"{pts / copy:.0f}x memcpy",
            "<= 100 ms" if n == 10_000_000 else "report",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20_000, help="single calls per timing")
    parser.add_argument("--waits", type=int, default=50, help="wake-ups per timing")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument(
        "--only", choices=["calls", "wake", "memory", "redis", "many", "decimate"], action="append"
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["calls", "wake", "memory", "redis", "many", "decimate"])
    quick = args.quick
    memory_sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000, 10_000_000]
    redis_sizes = [10_000] if quick else [10_000, 100_000, 1_000_000]
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is needed")
    print(
        f"telstate {telstate.__version__}, katsdptelstate {katsdptelstate.__version__}, "
        f"Python {sys.version.split()[0]}, numpy {np.__version__}, redis-py {redis.__version__}"
    )
    with RedisServer(exe, unix=False) as server:
        print(f"private redis-server {server.info()['redis_version']} on 127.0.0.1:{server.port}")
        if "calls" in only:
            single_calls(server, 2_000 if quick else args.calls, args.repeat)
        if "wake" in only:
            wake_ups(server, 5 if quick else args.waits, args.repeat)
        if "memory" in only:
            arrays_memory(memory_sizes, args.repeat)
        if "redis" in only:
            arrays_redis(server, redis_sizes, args.repeat)
        if "many" in only:
            many_sensors(server, 50 if quick else 1000, 100 if quick else 1000, args.repeat)
        if "decimate" in only:
            decimation([100_000] if quick else [1_000_000, 10_000_000], 2000, args.repeat)
    print("\n| workload | telstate | limit / reference | ratio | goal |\n|---|---|---|---|---|")
    for cells in ROWS:
        print("| " + " | ".join(cells) + " |")
    if PROFILES:
        print("\nProfiles of the gaps:")
        for workload, figures in PROFILES:
            print(f"- {workload}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
