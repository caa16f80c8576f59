"""Side-by-side benchmark of telstate against katsdptelstate 1.0.0 on one private Redis server.

The script starts its own redis-server (a free TCP port on 127.0.0.1, or a unix
socket with ``--unix``; no persistence; data directory in a temporary
directory), runs every workload against it with both libraries, and stops it at
the end, also after an error, Ctrl-C or SIGTERM.  It never touches another
server.  Method (the harness is shared with bench_core.py, see _harness.py):

* Both libraries talk to the same server through their own public API and
  their own redis-py connections: katsdptelstate as
  ``katsdptelstate.TelescopeState(endpoint, db=0)`` and telstate as
  ``telstate.TelescopeState(endpoint, db=1)``.  Separate databases let the two
  1 M-sample fixture sensors live side by side; a database number costs nothing.
* FLUSHALL runs before every measurement, except between consecutive workloads
  that read the shared fixture sensor; fresh TelescopeState objects (and so
  fresh connections) are made for every measurement, and closed after it.
* Workloads that only read (attribute get, indexed get, keys()) get their data
  written with a redis-py pipeline in katsdptelstate's layout, identical for
  both libraries; so does katsdptelstate's fixture sensor (ZADD of members
  ``pack('>d', t) + b'\\xff\\xcb' + pack('>d', value)``), while telstate's is
  written with its own ``ts.pipeline()`` and then compared byte for byte with
  that layout.  Setup is never timed.
* Workloads that write check what the server holds against the bytes
  katsdptelstate 1.0 defines, as well as reading the values back; read
  workloads check values, timestamps and their Python types against answers
  computed without either library, so both libraries are shown to return
  identical results.
* Everything else (repeats, alternation, medians, ratio orientation, gc) is as
  in bench_core.py.

Run ``python bench/bench_redis.py --help`` for the options; see bench/README.md.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import msgpack
import redis
import redis.utils

import _harness
from _harness import CHECKS, Hooks, Registry, add_sensor_reads, timed

T0 = 1e9  # timestamp of sample 0 of every sensor; sample i is at T0 + i
DB = {"katsdptelstate": 0, "telstate": 1}  # each library's database on the server
MSGPACK = b"\xff"  # katsdptelstate's encoding byte in front of a MessagePack value
_MEMBER = struct.Struct(">d2sd")  # timestamp, encoding byte + float64 marker, value
_FLOAT = b"\xff\xcb"


def encoded(value: Any) -> bytes:
    """A value as katsdptelstate 1.0 stores it (default MessagePack encoding)."""
    return MSGPACK + msgpack.packb(value)


def member(i: int) -> bytes:
    """Sorted-set member of sample i (float(i) at T0 + i), as katsdptelstate stores it."""
    return _MEMBER.pack(T0 + i, _FLOAT, float(i))


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    ops: int = 20_000  # single calls per timing (attribute, sensor add, indexed)
    samples: int = 1_000_000  # samples in the sensor that get_range reads
    window: int = 10_000  # samples in the 1 % window
    window_queries: int = 20  # window queries per timing (mean)
    lookups: int = 2_000  # previous-sample lookups per timing (mean)
    waits: int = 100  # wait_key wake-ups per timing (median)
    keys: int = 2_000  # keys in the database for keys()
    keys_queries: int = 20  # keys() calls per timing (mean)
    batch: int = 100_000  # samples in the batched-add timing


FULL = Sizes()
QUICK = Sizes(
    ops=2_000,
    samples=100_000,
    window=1_000,
    window_queries=10,
    lookups=500,
    waits=30,
    keys=2_000,
    keys_queries=10,
    batch=10_000,
)


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this script dies without cleaning up."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


class RedisServer:
    """A private, throw-away redis-server, stopped (and its directory removed) on exit."""

    def __init__(self, executable: str, unix: bool) -> None:
        self.executable = executable
        self.unix = unix
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.socket_path: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- lifetime

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench_redis_")
        directory = self._tmp.name
        for attempt in range(3):  # a free port can be taken before redis-server binds it
            args = [self.executable, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            args += ["--dir", directory]
            if self.unix:
                self.socket_path = os.path.join(directory, "redis.sock")
                args += ["--port", "0", "--unixsocket", self.socket_path]
                args += ["--unixsocketperm", "700"]
            else:
                self.port = _free_port()
                if self.port == 6379:  # never the shared server's port
                    continue
                args += ["--port", str(self.port)]
            log = open(os.path.join(directory, "redis.log"), "wb")  # noqa: SIM115
            with log:
                self.process = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                    start_new_session=True,  # Ctrl-C reaches only this script, which stops it
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            if self._wait_ready():
                return
            if self.process.poll() is None or attempt == 2:
                break
        log_path = Path(directory, "redis.log")
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        raise RuntimeError(f"redis-server did not start:\n{log_text[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        client = self.client()
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    client.ping()
                    return True
                except redis.ConnectionError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- use

    @property
    def endpoint(self) -> str:
        """What both TelescopeState constructors accept."""
        return f"unix://{self.socket_path}" if self.unix else f"127.0.0.1:{self.port}"

    def client(self, db: int = 0) -> redis.Redis:
        """A raw redis-py client, for setup and checks."""
        if self.unix:
            return redis.Redis(unix_socket_path=self.socket_path, db=db)
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def info(self) -> dict[str, Any]:
        client = self.client()
        try:
            info: dict[str, Any] = client.info("server")
        finally:
            client.close()
        return info


SERVER: RedisServer | None = None  # set by main()


def server() -> RedisServer:
    assert SERVER is not None, "the redis server is not running"
    return SERVER


# --------------------------------------------------------------------------- connections

_OPEN: list[Any] = []  # TelescopeStates and clients of the current measurement
_SENSORS: dict[tuple[str, int], Any] = {}  # fixture sensors, kept across sensor workloads
_ADMIN: list[redis.Redis] = []


def connect(mod: ModuleType) -> Any:
    """A new TelescopeState of `mod` on the private server (its own database)."""
    ts = mod.TelescopeState(server().endpoint, db=DB[mod.__name__])
    _OPEN.append(ts)
    return ts


def raw(mod: ModuleType) -> redis.Redis:
    """A raw client on `mod`'s database, for setup and checks."""
    client = server().client(DB[mod.__name__])
    _OPEN.append(client)
    return client


def _close(obj: Any) -> None:
    """Close a raw client, or a TelescopeState's backend (either library)."""
    target = obj if isinstance(obj, redis.Redis) else obj.backend
    close = getattr(target, "close", None) or getattr(target.client, "close")  # noqa: B009
    with contextlib.suppress(redis.RedisError, OSError):
        close()


def _close_open() -> None:
    while _OPEN:
        _close(_OPEN.pop())


def _drop_sensors() -> None:
    for ts in _SENSORS.values():
        _close(ts)
    _SENSORS.clear()


def _flushall() -> None:
    if not _ADMIN:
        _ADMIN.append(server().client())
    _ADMIN[0].flushall()  # synchronous: the memory is free before the next timing
    gc.collect()


def _fresh_server() -> None:
    _close_open()
    _drop_sensors()
    _flushall()


def _before_measure(w: _harness.Workload, lib: str) -> None:
    if w.uses_sensor:
        _close_open()  # keep the fixture sensors and their data
    else:
        _fresh_server()


def _after_run() -> None:
    _close_open()
    _drop_sensors()
    while _ADMIN:
        _close(_ADMIN.pop())


HOOKS = Hooks(before_repeat=_fresh_server, before_measure=_before_measure, after_run=_after_run)


# --------------------------------------------------------------------------- registry

WORKLOADS = Registry()
workload = WORKLOADS.workload


# --------------------------------------------------------------------------- helpers


def expected_samples(lo: int, hi: int) -> list[tuple[float, float]]:
    """What get_range should return for samples lo..hi-1 of a fixture sensor."""
    return _harness.expected_samples(lo, hi, T0)


def check_members(mod: ModuleType, key: str, n: int, what: str) -> None:
    """Check that sensor `key` holds exactly samples 0..n-1 in katsdptelstate's layout."""
    client = raw(mod)
    CHECKS.expect(client.zcard(key) == n, mod, f"{what}: wrong number of members in Redis")
    for lo in sorted({0, max(0, n // 2 - 500), max(0, n - 1000)}):
        hi = min(n, lo + 1000)
        got = client.zrange(key, lo, hi - 1)
        ok = got == [member(i) for i in range(lo, hi)]
        CHECKS.expect(ok, mod, f"{what}: members differ from katsdptelstate's layout")
        scores = client.zrange(key, lo, lo, withscores=True)
        CHECKS.expect(all(s == 0 for _, s in scores), mod, f"{what}: nonzero scores")


def write_attributes(mod: ModuleType, keys: list[str]) -> None:
    """Set attribute keys[i] = i in katsdptelstate's layout, with a raw pipeline."""
    with raw(mod).pipeline(transaction=False) as pipe:
        for i, key in enumerate(keys):
            pipe.set(key, encoded(i))
        pipe.execute()


def sensor_fixture(mod: ModuleType, n: int) -> Any:
    """A TelescopeState whose sensor 'sensor' holds float(i) at T0 + i for i < n."""
    key = (mod.__name__, n)
    if key not in _SENSORS:
        ts = mod.TelescopeState(server().endpoint, db=DB[mod.__name__])
        if mod.__name__ == "telstate":
            with ts.pipeline() as p:
                for i in range(n):
                    p.add("sensor", float(i), ts=T0 + i)
        else:  # katsdptelstate has no batch API: the same members, written directly
            with raw(mod).pipeline(transaction=False) as pipe:
                for lo in range(0, n, 10_000):
                    chunk = range(lo, min(n, lo + 10_000))
                    pipe.zadd("sensor", dict.fromkeys(map(member, chunk), 0))
                pipe.execute()
        check_members(mod, "sensor", n, "fixture sensor")
        _SENSORS[key] = ts
    return _SENSORS[key]


# --------------------------------------------------------------------------- workloads


@workload("attr_set", "attribute set", "ops/s", "rate", target=1.5)
def attr_set(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)
    keys = [f"attr_{i}" for i in range(sizes.ops)]

    def run() -> None:
        for i, key in enumerate(keys):
            ts[key] = i

    seconds, _ = timed(run)
    CHECKS.expect(ts[keys[-1]] == sizes.ops - 1, mod, "attribute set: last value wrong")
    client = raw(mod)
    CHECKS.expect(client.dbsize() == sizes.ops, mod, "attribute set: wrong number of keys")
    probe = sizes.ops // 3
    ok = client.get(keys[probe]) == encoded(probe) and client.type(keys[probe]) == b"string"
    CHECKS.expect(ok, mod, "attribute set: stored bytes differ from katsdptelstate's layout")
    return sizes.ops / seconds


@workload("attr_get", "attribute get", "ops/s", "rate", target=1.5)
def attr_get(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)
    keys = [f"attr_{i}" for i in range(sizes.ops)]
    write_attributes(mod, keys)
    seconds, values = timed(lambda: [ts[key] for key in keys])
    CHECKS.expect(values == list(range(sizes.ops)), mod, "attribute get: wrong values")
    CHECKS.expect(all(type(v) is int for v in values), mod, "attribute get: values not int")
    return sizes.ops / seconds


@workload("sensor_add", "sensor add (single calls)", "ops/s", "rate", target=1.5)
def sensor_add(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)

    def run() -> None:
        for i in range(sizes.ops):
            ts.add("sensor", float(i), ts=T0 + i)

    seconds, _ = timed(run)
    got = ts.get_range("sensor", st=0)
    CHECKS.expect(got == expected_samples(0, sizes.ops), mod, "sensor add: wrong samples")
    check_members(mod, "sensor", sizes.ops, "sensor add")
    return sizes.ops / seconds


add_sensor_reads(WORKLOADS, sensor_fixture, T0, full_target=3)


@workload("indexed_set", "indexed set", "ops/s", "rate", target=1.5)
def indexed_set(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)

    def run() -> None:
        for i in range(sizes.ops):
            ts.set_indexed("idx", i, i)

    seconds, _ = timed(run)
    CHECKS.expect(ts.get_indexed("idx", sizes.ops - 1) == sizes.ops - 1, mod, "indexed set")
    client = raw(mod)
    probe = sizes.ops // 3
    ok = client.hlen("idx") == sizes.ops and client.hget("idx", encoded(probe)) == encoded(probe)
    CHECKS.expect(ok, mod, "indexed set: stored hash differs from katsdptelstate's layout")
    return sizes.ops / seconds


@workload("indexed_get", "indexed get", "ops/s", "rate", target=1.5)
def indexed_get(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)
    with raw(mod).pipeline(transaction=False) as pipe:
        for lo in range(0, sizes.ops, 10_000):
            chunk = range(lo, min(sizes.ops, lo + 10_000))
            pipe.hset("idx", mapping={encoded(i): encoded(i) for i in chunk})
        pipe.execute()
    seconds, values = timed(lambda: [ts.get_indexed("idx", i) for i in range(sizes.ops)])
    CHECKS.expect(values == list(range(sizes.ops)), mod, "indexed get: wrong values")
    CHECKS.expect(all(type(v) is int for v in values), mod, "indexed get: values not int")
    return sizes.ops / seconds


def _waiter(ts: Any, key: str, woke: list[float], errors: list[BaseException]) -> None:
    try:
        ts.wait_key(key, timeout=10)
    except Exception as exc:  # reported by the main thread
        errors.append(exc)
    else:
        woke.append(time.perf_counter())


@workload("wait_key", "wait_key wake-up latency", "ms", "time", target=2)
def wait_key_latency(mod: ModuleType, sizes: Sizes) -> float:
    waiter, writer = connect(mod), connect(mod)  # as if in two processes
    latencies = []
    gc.collect()
    for i in range(sizes.waits):
        key = f"key_{i}"
        woke: list[float] = []
        errors: list[BaseException] = []
        thread = threading.Thread(target=_waiter, args=(waiter, key, woke, errors), daemon=True)
        thread.start()
        time.sleep(0.02)  # long enough for the waiter to be blocked inside wait_key
        start = time.perf_counter()
        writer.add(key, 1, immutable=True)
        thread.join(30)
        if not woke:
            what = f"raised {errors[0]!r}" if errors else "did not return within 30 s"
            CHECKS.expect(False, mod, f"wait_key: waiter for {key} {what}")
            return float("nan")
        CHECKS.expect(woke[0] > start, mod, "wait_key: returned before the key was written")
        latencies.append(woke[0] - start)
    CHECKS.expect(waiter["key_0"] == 1, mod, "wait_key: wrong value")
    return statistics.median(latencies) * 1e3


@workload("keys", "keys() of 2000 keys", "ms", "time")
def keys(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)
    names = [f"key_{i:05d}" for i in range(sizes.keys)]
    write_attributes(mod, names)
    ts.keys()  # warm-up
    seconds, results = timed(lambda: [ts.keys() for _ in range(sizes.keys_queries)])
    ok = results[-1] == names and all(type(k) is str for k in results[-1])
    CHECKS.expect(ok, mod, "keys(): wrong keys, order or type")
    return seconds / sizes.keys_queries * 1e3


@workload(
    "batch_add",
    "batched sensor adds (katsdptelstate: add loop)",
    "samples/s",
    "rate",
    absolute=150_000,
)
def batch_add(mod: ModuleType, sizes: Sizes) -> float:
    ts = connect(mod)
    n = sizes.batch
    if mod.__name__ == "telstate":

        def run() -> None:
            with ts.pipeline() as p:
                for i in range(n):
                    p.add("sensor", float(i), ts=T0 + i)

    else:  # katsdptelstate has no batch API: its best equivalent is a loop of add()

        def run() -> None:
            for i in range(n):
                ts.add("sensor", float(i), ts=T0 + i)

    seconds, _ = timed(run)
    got = ts.get_range("sensor", st=0)
    CHECKS.expect(got == expected_samples(0, n), mod, "batched adds: wrong samples")
    check_members(mod, "sensor", n, "batched adds")
    return n / seconds


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
                "multiplexing": info.get("multiplexing_api"),
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
