"""Side-by-side benchmark of telstate against katsdptelstate 1.0.0 on RDB files.

The workload is one telescope state of attributes and float sensors (by default
900 attributes and 100 sensors of 10 000 samples: 1000 keys, a 21 MB file),
built identically in both libraries' memory backends (telstate with
``ts.pipeline()``, katsdptelstate with plain adds; not timed) and saved to two
files, also untimed:

* file K: ``katsdptelstate.rdb_writer.RDBWriter(path).save(ts)`` from
  katsdptelstate's memory backend (``REDIS0006``, sorted sets with string
  scores, zero checksum);
* file T: ``ts.save_to_file(path)`` from telstate's memory backend (RDB 9,
  sorted sets with binary scores, a real CRC-64).

Both libraries read both files.  The rows: loading a file into memory; telstate's
lazy ``TelescopeState.open`` against katsdptelstate's full load (it has no lazy
mode), alone and followed by three reads; loading into a private redis-server;
redis-server's own start-up load of each file (the physical reference); saving
from memory and from Redis; and peak memory in a fresh interpreter.  Method (the
harness is shared with bench_core.py, see _harness.py):

* Each workload runs ``--repeat`` times per library, the libraries alternating
  and the order flipping between repeats; the table shows medians.  Only the
  library call is timed; a full collection runs before it.
* After every load or open, what the library then holds is compared with the
  source data: the key names, every attribute (value and Python type, numpy
  dtype and shape), each sensor's sample count and first, second, middle and
  last samples, and the key types.  Saved files are read back the same way
  (with telstate; and with katsdptelstate for files saved from Redis).
* The Redis rows use one private redis-server (bench_redis.RedisServer: free TCP
  port on 127.0.0.1, no persistence, stopped at the end, also after an error,
  Ctrl-C or SIGTERM), FLUSHALL before every measurement, and new connections for
  each measurement.  The start-up row starts further private servers whose
  dbfilename is the file (see :func:`startup_seconds`).
* Peak memory: a fresh interpreter per library and repeat, started through a
  small one (see _SPAWN); ru_maxrss after the operation minus ru_maxrss before.
* The two source states are built once per run; files live in a temporary
  directory, removed at the end; a save's output file is deleted (untimed)
  before it is written again.
* Once per run (with save_redis), :func:`listpack_check` shows which files saved
  from a Redis 7 server each library can read.

Run ``python bench/bench_rdb.py --help`` for the options; see bench/README.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import redis

import _harness
import bench_redis
from _harness import CHECKS, SRC, Hooks, Registry, timed

T0 = 1.6e9  # timestamp of sample 0
MIB = 1 << 20


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big the telescope state is."""

    attributes: int = 900
    sensors: int = 100
    samples: int = 10_000  # per sensor
    startups: int = 5  # redis-server start-ups per measurement, with and without the file


FULL = Sizes()
QUICK = Sizes(samples=1_000, startups=3)  # ~10x smaller file (2.3 MB)


# --------------------------------------------------------------------------- the data


def attribute_value(i: int, rng: np.random.Generator) -> Any:
    """Attribute i: mostly small values, every 45th a large dict, a few arrays and long text."""
    if i % 45 == 0:  # 3 kB of MessagePack: per-input gains and delays
        return {f"m{j:03d}h": {"gain": j * 0.1, "delay": [j, j + 1]} for j in range(100)}
    if i % 90 == 5:
        return rng.standard_normal((16, 8)).astype(np.float32)
    if i % 150 == 7:
        return "A long description of an observation. " * 50
    kind = i % 10
    if kind == 0:
        return i
    if kind == 1:
        return i * 0.25
    if kind == 2:
        return f"value_{i}"
    if kind == 3:
        return {"name": f"m{i:03d}", "position": [i, i + 0.5, -i], "on": bool(i % 2)}
    if kind == 4:
        return (i, f"band_{i % 4}", 1.5)
    if kind == 5:
        return bool(i % 3)
    if kind == 6:
        return [float(x) for x in range(i % 7)]
    if kind == 7:
        return np.arange(i % 5 + 1, dtype=np.int16) if i % 20 == 17 else f"{i:x}" * 5
    if kind == 8:
        return None
    return {"centre_freq": 1284e6 + i, "product": f"c856M{i % 32}k"}


@dataclass
class Data:
    """The source data; sample i of sensor j is :meth:`sample`."""

    sizes: Sizes
    attributes: dict[str, Any]
    sensors: list[str]

    @classmethod
    def make(cls, sizes: Sizes) -> Data:
        rng = np.random.default_rng(7)
        attributes = {f"attr_{i:04d}": attribute_value(i, rng) for i in range(sizes.attributes)}
        sensors = [f"sensor_{j:03d}" for j in range(sizes.sensors)]
        return cls(sizes, attributes, sensors)

    @staticmethod
    def sample(j: int, i: int) -> tuple[float, float]:
        """(value, timestamp) of sample i of sensor j."""
        return j * 1000.0 + i * 0.25, T0 + i + j / 1000

    @property
    def keys(self) -> list[str]:
        return sorted([*self.attributes, *self.sensors])

    def expected_range(self, j: int) -> list[tuple[float, float]]:
        return [self.sample(j, i) for i in range(self.sizes.samples)]


def build(mod: ModuleType, data: Data) -> Any:
    """The telescope state in `mod`'s memory backend (telstate: pipeline; katsdptelstate: adds)."""
    ts = mod.TelescopeState()
    n = data.sizes.samples
    if mod.__name__ == "telstate":
        with ts.pipeline() as p:
            for key, value in data.attributes.items():
                p[key] = value
            for j, key in enumerate(data.sensors):
                for i in range(n):
                    value, t = data.sample(j, i)
                    p.add(key, value, ts=t)
    else:
        for key, value in data.attributes.items():
            ts[key] = value
        for j, key in enumerate(data.sensors):
            for i in range(n):
                value, t = data.sample(j, i)
                ts.add(key, value, ts=t)
    return ts


def same(got: Any, expected: Any) -> bool:
    """Equal, of the same Python types throughout (arrays: same dtype, shape and contents)."""
    if isinstance(expected, np.ndarray):
        return (
            isinstance(got, np.ndarray)
            and got.dtype == expected.dtype
            and got.shape == expected.shape
            and bool(np.array_equal(got, expected))
        )
    if type(got) is not type(expected):
        return False
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in expected)
    if isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(
            same(a, b) for a, b in zip(got, expected, strict=True)
        )
    return bool(got == expected)


def check_contents(mod: ModuleType, ts: Any, what: str) -> None:
    """Compare what `ts` holds with the source data (see the module docstring)."""
    data = DATA
    keys = sorted(ts.keys())
    CHECKS.expect(keys == data.keys, mod, f"{what}: wrong keys ({len(keys)} of {len(data.keys)})")
    bad = [key for key, value in data.attributes.items() if not same(ts.get(key), value)]
    CHECKS.expect(not bad, mod, f"{what}: {len(bad)} attributes differ, e.g. {bad[:3]}")
    n = data.sizes.samples
    picks = sorted({0, 1, n // 2, n - 1})
    for j, key in enumerate(data.sensors):
        got = ts.get_range(key, st=0)
        ok = len(got) == n and all(
            got[i] == data.sample(j, i) and type(got[i][0]) is float and type(got[i][1]) is float
            for i in picks
        )
        if not ok:
            CHECKS.expect(False, mod, f"{what}: sensor {key} has {len(got)} samples or wrong ones")
            break
    attr, sensor = next(iter(data.attributes)), data.sensors[0]
    types = ts.key_type(attr).name, ts.key_type(sensor).name
    CHECKS.expect(types == ("IMMUTABLE", "MUTABLE"), mod, f"{what}: wrong key types {types}")


# --------------------------------------------------------------------------- run state


@dataclass
class Files:
    directory: Path
    katsdptelstate: Path  # katsdptelstate's RDBWriter from its memory backend
    telstate: Path  # telstate's save_to_file from its memory backend

    def of(self, mod: ModuleType) -> Path:
        """The file that `mod` wrote."""
        path: Path = getattr(self, mod.__name__)
        return path


DATA: Data  # set by main()
FILES: Files
SOURCES: dict[str, Any] = {}  # the built telescope states, by library
SERVER: bench_redis.RedisServer | None = None
EXECUTABLE = "redis-server"
NOTES: list[str] = []  # printed below the table (and in the JSON's environment)
_OPEN: list[Any] = []  # TelescopeStates and clients of the current measurement


def server() -> bench_redis.RedisServer:
    assert SERVER is not None, "the redis server is not running"
    return SERVER


def note(text: str) -> None:
    if text not in NOTES:
        NOTES.append(text)


def katsdptelstate_writer() -> Any:
    from katsdptelstate.rdb_writer import RDBWriter

    return RDBWriter


def write_file(mod: ModuleType, source: Any, path: Path) -> None:
    """Save `source` (a TelescopeState of `mod`, or a redis.Redis) with `mod`'s writer."""
    path.unlink(missing_ok=True)  # no truncation of the previous file on anyone's clock
    if mod.__name__ == "telstate":
        if isinstance(source, redis.Redis):
            source = mod.TelescopeState(server().endpoint)
            _OPEN.append(source)
        source.save_to_file(str(path))
    else:
        with katsdptelstate_writer()(str(path)) as writer:
            writer.save(source)


def _close(obj: Any) -> None:
    if isinstance(obj, redis.Redis):
        client = obj
    else:
        client = getattr(obj.backend, "client", None)
        if client is None:
            with contextlib.suppress(Exception):
                obj.backend.close()
            return
    with contextlib.suppress(redis.RedisError, OSError):
        client.close()


def _close_open() -> None:
    while _OPEN:
        _close(_OPEN.pop())


def _before_measure(w: _harness.Workload, lib: str) -> None:
    _close_open()
    if w.name in REDIS_WORKLOADS:
        admin = server().client()
        try:
            admin.flushall()  # synchronous: memory is free before the next timing
        finally:
            admin.close()
    gc.collect()


HOOKS = Hooks(before_repeat=_close_open, before_measure=_before_measure, after_run=_close_open)


# --------------------------------------------------------------------------- registry

WORKLOADS = Registry()
workload = WORKLOADS.workload
REDIS_WORKLOADS = {"redis_kat", "redis_tel", "save_redis"}  # need the private server
SERVER_WORKLOADS = REDIS_WORKLOADS | {"startup"}  # need redis-server


def _open_or_load(mod: ModuleType, path: Path) -> Any:
    """telstate: TelescopeState.open (lazy); katsdptelstate: a full load into memory."""
    if mod.__name__ == "telstate":
        ts = mod.TelescopeState.open(str(path))
    else:
        ts = mod.TelescopeState()
        ts.load_from_file(str(path))
    _OPEN.append(ts)
    return ts


def _whose(path: Path) -> str:
    return "file K" if path == FILES.katsdptelstate else "file T"


# --------------------------------------------------------------------------- workloads


def _load_memory(mod: ModuleType, path: Path) -> float:
    ts = mod.TelescopeState()
    seconds, n = timed(lambda: ts.load_from_file(str(path)))
    what = f"load into memory of {_whose(path)}"
    CHECKS.expect(n == len(DATA.keys), mod, f"{what}: load_from_file returned {n}")
    check_contents(mod, ts, what)
    return seconds * 1e3


@workload("load_kat", "load into memory, file K", "ms", "time", target=5)
def load_kat(mod: ModuleType, sizes: Sizes) -> float:
    return _load_memory(mod, FILES.katsdptelstate)


@workload("load_tel", "load into memory, file T", "ms", "time", target=5)
def load_tel(mod: ModuleType, sizes: Sizes) -> float:
    return _load_memory(mod, FILES.telstate)


def _open(mod: ModuleType, path: Path) -> float:
    seconds, ts = timed(lambda: _open_or_load(mod, path))
    check_contents(mod, ts, f"lazy open (katsdptelstate: load) of {_whose(path)}")
    return seconds * 1e3


@workload("open_kat", "lazy open (k.: load), file K", "ms", "time", target=20)
def open_kat(mod: ModuleType, sizes: Sizes) -> float:
    return _open(mod, FILES.katsdptelstate)


@workload("open_tel", "lazy open (k.: load), file T", "ms", "time", target=20)
def open_tel(mod: ModuleType, sizes: Sizes) -> float:
    return _open(mod, FILES.telstate)


def _open_read3(mod: ModuleType, path: Path) -> float:
    attr, sensor, latest = next(iter(DATA.attributes)), len(DATA.sensors) // 2, -1

    def run() -> tuple[Any, Any, Any]:
        ts = _open_or_load(mod, path)
        return ts[attr], ts.get_range(DATA.sensors[sensor], st=0), ts.get(DATA.sensors[latest])

    seconds, (value, samples, last) = timed(run)
    what = f"open + read 3 keys of {_whose(path)}"
    CHECKS.expect(same(value, DATA.attributes[attr]), mod, f"{what}: wrong attribute")
    CHECKS.expect(samples == DATA.expected_range(sensor), mod, f"{what}: wrong get_range")
    expected_last = DATA.sample(len(DATA.sensors) - 1, DATA.sizes.samples - 1)[0]
    CHECKS.expect(same(last, expected_last), mod, f"{what}: wrong latest value")
    return seconds * 1e3


@workload("read3_kat", "open + read 3 keys (k.: load + 3), file K", "ms", "time")
def read3_kat(mod: ModuleType, sizes: Sizes) -> float:
    return _open_read3(mod, FILES.katsdptelstate)


@workload("read3_tel", "open + read 3 keys (k.: load + 3), file T", "ms", "time")
def read3_tel(mod: ModuleType, sizes: Sizes) -> float:
    return _open_read3(mod, FILES.telstate)


def _load_redis(mod: ModuleType, path: Path) -> float:
    ts = mod.TelescopeState(server().endpoint)
    _OPEN.append(ts)
    seconds, n = timed(lambda: ts.load_from_file(str(path)))
    what = f"load into Redis of {_whose(path)}"
    CHECKS.expect(n == len(DATA.keys), mod, f"{what}: load_from_file returned {n}")
    check_contents(mod, ts, what)
    return seconds * 1e3


@workload("redis_kat", "load into Redis, file K", "ms", "time", target=4)
def redis_kat(mod: ModuleType, sizes: Sizes) -> float:
    return _load_redis(mod, FILES.katsdptelstate)


@workload("redis_tel", "load into Redis, file T", "ms", "time", target=4)
def redis_tel(mod: ModuleType, sizes: Sizes) -> float:
    return _load_redis(mod, FILES.telstate)


def _read_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        buf += chunk
    return buf[:-2]


def _startup_once(directory: Path, dbfilename: str) -> tuple[float, int] | None:
    """Start redis-server on `dbfilename`: (seconds until PONG, DBSIZE); None: port taken."""
    port = bench_redis._free_port()
    if port == 6379:  # never the shared server's port
        return None
    args = [EXECUTABLE, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory), "--dbfilename", dbfilename]
    with open(directory / "redis.log", "ab") as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
            preexec_fn=bench_redis._die_with_parent if sys.platform.startswith("linux") else None,
        )
    sock: socket.socket | None = None
    try:
        while True:
            if process.poll() is not None:
                return None  # e.g. the port was taken; the caller retries, then reports
            if time.perf_counter() - start > 120:
                raise RuntimeError("redis-server did not answer PING within 120 s")
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                except OSError:
                    time.sleep(0.0005)
                    continue
            sock.sendall(b"PING\r\n")
            reply = _read_line(sock)
            if reply == b"+PONG":
                seconds = time.perf_counter() - start
                break
            if not reply.startswith(b"-LOADING"):
                raise RuntimeError(f"redis-server answered PING with {reply!r}")
            time.sleep(0.0005)
        sock.sendall(b"DBSIZE\r\n")
        return seconds, int(_read_line(sock)[1:])
    finally:
        if sock is not None:
            sock.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def startup_seconds(path: Path | None) -> tuple[float, int]:
    """Seconds from starting redis-server (with `path` as its RDB file) until it answers PING.

    The server runs in its own directory (FILES.directory / "server", holding copies
    of the files) with ``--dbfilename``; ``None`` starts it without a file.
    """
    directory = FILES.directory / "server"
    name = path.name if path is not None else "absent.rdb"
    for _ in range(3):
        result = _startup_once(directory, name)
        if result is not None:
            return result
    log = (directory / "redis.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"redis-server did not start:\n{log}")


@workload("startup", "redis-server's own load: file K | file T", "ms", "time")
def startup(mod: ModuleType, sizes: Sizes) -> float:
    path = FILES.of(mod)
    loaded, empty = [], []
    for _ in range(sizes.startups):
        seconds, n = startup_seconds(None)
        empty.append(seconds)
        CHECKS.expect(n == 0, mod, "redis-server without a file: keys in it")
        seconds, n = startup_seconds(path)
        loaded.append(seconds)
        CHECKS.expect(n == len(DATA.keys), mod, f"redis-server loaded {n} keys of {_whose(path)}")
    return (statistics.median(loaded) - statistics.median(empty)) * 1e3


def _reason(exc: BaseException) -> str:
    """An exception and its cause (katsdptelstate wraps rdbtools' errors), in one line."""
    text = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        text += f", from {type(exc.__cause__).__name__}: {exc.__cause__}"
    return text


def _check_saved(mod: ModuleType, path: Path, what: str) -> None:
    """Read a saved file back with telstate (lazily) and compare it with the source."""
    import telstate

    ts = telstate.TelescopeState.open(str(path))
    _OPEN.append(ts)
    check_contents(mod, ts, f"{what}, read back by telstate")


@workload("save_memory", "save from memory", "ms", "time", target=3)
def save_memory(mod: ModuleType, sizes: Sizes) -> float:
    source = SOURCES[mod.__name__]
    path = FILES.directory / f"saved_{mod.__name__}.rdb"
    seconds, _ = timed(lambda: write_file(mod, source, path))
    _check_saved(mod, path, "save from memory")
    return seconds * 1e3


@workload("save_redis", "save from Redis (same server data)", "ms", "time")
def save_redis(mod: ModuleType, sizes: Sizes) -> float:
    import telstate

    # The server's data: katsdptelstate's file, loaded by telstate (untimed); the
    # same for both libraries.
    telstate.TelescopeState(server().endpoint).load_from_file(str(FILES.katsdptelstate))
    admin = server().client()
    _OPEN.append(admin)
    with admin.pipeline(transaction=False) as pipe:
        for key in DATA.keys:
            pipe.object("encoding", key)
        encodings = Counter(e.decode() for e in pipe.execute())
    note(
        f"save from Redis: the server holds the data in encodings {dict(sorted(encodings.items()))}"
    )
    path = FILES.directory / f"saved_redis_{mod.__name__}.rdb"
    path.unlink(missing_ok=True)
    if mod.__name__ == "telstate":
        source: Any = mod.TelescopeState(server().endpoint)

        def run() -> None:
            source.save_to_file(str(path))

    else:
        source = server().client()
        writer_class = katsdptelstate_writer()

        def run() -> None:
            with writer_class(str(path)) as writer:
                writer.save(source)

    _OPEN.append(source)
    seconds, _ = timed(run)
    _check_saved(mod, path, "save from Redis")
    # Can katsdptelstate read the file back?
    kat = sys.modules["katsdptelstate"]
    ts = kat.TelescopeState()
    try:
        ts.load_from_file(str(path))
    except Exception as exc:
        what = f"save from Redis: katsdptelstate cannot read it: {_reason(exc)}"
        CHECKS.expect(mod.__name__ != "telstate", mod, what)
        note(f"save from Redis, {mod.__name__}'s file: katsdptelstate cannot read it back")
    else:
        check_contents(mod, ts, "save from Redis, read back by katsdptelstate")
        note(f"save from Redis, {mod.__name__}'s file: katsdptelstate reads it back")
    return seconds * 1e3


# Run in a fresh interpreter: argv = [-c, module, mode ("load" or "readall"), path].
_MEMORY_CHILD = """
import gc, importlib, json, os, resource, sys
name, mode, path = sys.argv[1:4]
mod = importlib.import_module(name)
for extra in {"katsdptelstate": ["katsdptelstate.rdb_reader"],
              "telstate": ["telstate.backends.rdb", "telstate.rdb._reader"]}[name]:
    importlib.import_module(extra)  # readers imported before the baseline
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
gc.collect()
before = peak()
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if mode == "readall" and name == "telstate":
    ts = mod.TelescopeState.open(path)
else:
    ts = mod.TelescopeState()
    ts.load_from_file(path)
samples = 0
if mode == "readall":
    for key in ts.keys():
        if ts.key_type(key).name == "MUTABLE":
            samples += len(ts.get_range(key, st=0))
        else:
            ts.get(key)
grown = peak() - before
keys = ts.keys()
last = ts.get_range(sorted(keys)[-1])
print(json.dumps({"grown": grown, "before": before, "rss": rss, "keys": len(keys),
                  "samples": samples, "last": last}))
"""


# Linux copies a process's RSS high-water mark into a child it forks (or vforks) and
# execs, so a child of this big process would start with this process's peak and
# never exceed it: the measuring interpreter is started by a small one instead.
_SPAWN = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _peak_memory(mod: ModuleType, mode: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    path = str(FILES.katsdptelstate)
    args = [sys.executable, "-c", _SPAWN, sys.executable, "-c", _MEMORY_CHILD]
    args += [mod.__name__, mode, path]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    what = f"peak memory ({mode})"
    excess = (result["before"] - result["rss"]) / MIB
    ok = excess < 16
    CHECKS.expect(ok, mod, f"{what}: baseline high-water mark {excess:.0f} MiB above the RSS")
    CHECKS.expect(result["keys"] == len(DATA.keys), mod, f"{what}: {result['keys']} keys")
    j, n = len(DATA.sensors) - 1, DATA.sizes.samples
    last = [list(DATA.sample(j, n - 1))]
    CHECKS.expect(result["last"] == last, mod, f"{what}: wrong latest sample of the last sensor")
    if mode == "readall":
        total = len(DATA.sensors) * n
        CHECKS.expect(result["samples"] == total, mod, f"{what}: read {result['samples']} samples")
    return float(result["grown"]) / MIB


@workload("memory_load", "peak memory: load into memory, file K", "MiB", "memory")
def memory_load(mod: ModuleType, sizes: Sizes) -> float:
    return _peak_memory(mod, "load")


@workload("memory_readall", "peak memory: open (k.: load) + read all, file K", "MiB", "memory")
def memory_readall(mod: ModuleType, sizes: Sizes) -> float:
    return _peak_memory(mod, "readall")


# --------------------------------------------------------------------------- once per run


def listpack_check(modules: dict[str, ModuleType]) -> None:
    """Do katsdptelstate's files from a Redis 7 server hold listpacks it cannot read?

    The benchmark's own data has none: every sensor has more samples than Redis
    keeps in a listpack (128 entries) and attributes are strings.  So this writes,
    with katsdptelstate, the small keys that do become listpacks (a 5-sample
    sensor, a 3-entry indexed key) plus an attribute, saves the server with both
    writers and reads both files with both libraries.
    """
    kat, tel = modules["katsdptelstate"], modules["telstate"]
    client = server().client()
    _OPEN.append(client)
    client.flushall()
    ts = kat.TelescopeState(server().endpoint)
    _OPEN.append(ts)
    ts["attribute"] = {"a": 1}
    for i in range(5):
        ts.add("small_sensor", float(i), ts=T0 + i)
    for i in range(3):
        ts.set_indexed("indexed", f"sub{i}", i)
    encodings = {
        k: client.object("encoding", k).decode() for k in ("small_sensor", "indexed", "attribute")
    }
    note(f"small keys written to Redis by katsdptelstate have encodings {encodings}")
    expected = ([(float(i), T0 + i) for i in range(5)], {f"sub{i}": i for i in range(3)})
    for writer in (kat, tel):
        path = FILES.directory / f"small_{writer.__name__}.rdb"
        write_file(writer, client, path)
        for reader in (kat, tel):
            loaded = reader.TelescopeState()
            try:
                loaded.load_from_file(str(path))
                got = (loaded.get_range("small_sensor", st=0), loaded.get("indexed"))
                outcome = "reads it" if got == expected else f"reads wrong values {got}"
            except Exception as exc:
                outcome = f"cannot read it ({_reason(exc)})"
            note(f"{writer.__name__}'s file of those keys: {reader.__name__} {outcome}")
            if reader is tel or writer is tel:
                CHECKS.expect(outcome == "reads it", reader, f"small keys from Redis: {outcome}")
    client.flushall()
    _close_open()


# --------------------------------------------------------------------------- main


def reference_notes(results: list[_harness.Result]) -> None:
    """Compare the loads into Redis with redis-server's own load of the same file."""
    by_name = {r.workload.name: r for r in results}
    if "startup" not in by_name:
        return
    own = {
        "K": by_name["startup"].median("katsdptelstate"),
        "T": by_name["startup"].median("telstate"),
    }
    for name, file in (("redis_kat", "K"), ("redis_tel", "T")):
        if name in by_name and own[file] > 0:
            r = by_name[name]
            kat, tel = r.median("katsdptelstate"), r.median("telstate")
            note(
                f"load into Redis, file {file}: redis-server's own load takes {own[file]:.0f} ms;"
                f" telstate {tel / own[file]:.2f}x that, katsdptelstate {kat / own[file]:.2f}x"
                f" (the ratio a loader costing the server no more than its own load would reach)"
            )


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the servers' cleanup


def setup(modules: dict[str, ModuleType], sizes: Sizes, directory: Path) -> None:
    """Build the data in both libraries, write both files (all untimed)."""
    global DATA, FILES
    DATA = Data.make(sizes)
    FILES = Files(directory, directory / "katsdptelstate.rdb", directory / "telstate.rdb")
    for lib, mod in modules.items():
        start = time.perf_counter()
        SOURCES[lib] = build(mod, DATA)
        built = time.perf_counter() - start
        write_file(mod, SOURCES[lib], FILES.of(mod))
        print(f"  built {lib}'s state in {built:.1f} s (not timed)", file=sys.stderr)
    (directory / "server").mkdir()
    for path in (FILES.katsdptelstate, FILES.telstate):
        shutil.copyfile(path, directory / "server" / path.name)


def main(argv: list[str] | None = None) -> int:
    global SERVER, EXECUTABLE
    parser = _harness.parser(__doc__.split("\n\n")[0], WORKLOADS)
    for name, what in (
        ("attributes", f"attributes (default {FULL.attributes})"),
        ("sensors", f"sensors (default {FULL.sensors})"),
        ("samples", f"samples per sensor (default {FULL.samples}, --quick {QUICK.samples})"),
    ):
        parser.add_argument(f"--{name}", type=int, metavar="N", help=f"number of {what}")
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        default="redis-server",
        help="the redis-server executable (default: redis-server on PATH)",
    )
    args, workloads = _harness.parse_args(parser, WORKLOADS, argv)
    sizes = QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in ("attributes", "sensors", "samples")}
    sizes = dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    if sizes.sensors < 1 or sizes.samples < 2 or sizes.attributes < 1:
        parser.error("need at least 1 attribute, 1 sensor and 2 samples per sensor")
    names = {w.name for w in workloads}
    executable = shutil.which(args.redis_server)
    if executable is None and names & SERVER_WORKLOADS:
        parser.error(f"cannot find {args.redis_server!r}; install redis-server or pass its path")
    EXECUTABLE = executable or args.redis_server
    modules = _harness.import_libraries()
    env = _harness.environment(modules)

    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with contextlib.ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_rdb_")))
            setup(modules, sizes, directory)
            env["files"] = {lib: FILES.of(mod).stat().st_size for lib, mod in modules.items()}
            _harness.print_header(env, args, sizes)
            print(
                f"{len(DATA.keys)} keys, {sizes.sensors * sizes.samples} samples; file K ="
                f" katsdptelstate's RDBWriter, {env['files']['katsdptelstate'] / 1e6:.1f} MB;"
                f" file T = telstate's save_to_file, {env['files']['telstate'] / 1e6:.1f} MB;"
                " k. = katsdptelstate",
                flush=True,
            )
            if names & REDIS_WORKLOADS:
                SERVER = stack.enter_context(bench_redis.RedisServer(EXECUTABLE, False))
                info = SERVER.info()
                env["redis_server"] = {"version": info.get("redis_version"), "exe": EXECUTABLE}
                env["redis_py"] = redis.__version__
                print(f"redis-server {info.get('redis_version')} (private, {SERVER.endpoint})")
                if "save_redis" in names:
                    listpack_check(modules)
            started = time.perf_counter()
            try:
                results = _harness.run(workloads, modules, sizes, args.repeat, HOOKS)
            except KeyboardInterrupt:
                print("interrupted; stopping", file=sys.stderr)
                return 130
            elapsed = time.perf_counter() - started
            SOURCES.clear()
    finally:
        SERVER = None
        signal.signal(signal.SIGTERM, previous)
    reference_notes(results)
    env["notes"] = NOTES
    status = _harness.report(results, args, env, sizes, elapsed)
    if NOTES:
        print()
        print("Notes:")
        for text in NOTES:
            print(f"  {text}")
    return status


if __name__ == "__main__":
    sys.exit(main())
