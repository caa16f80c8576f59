"""Side-by-side benchmark of telstate against katsdptelstate 1.0.0 (in-memory backends).

Both libraries run the same workloads in the same process and the same run, so
every figure in the table compares numbers taken minutes apart on the same
machine.  Method:

* A workload is a small function ``f(module, sizes) -> float`` registered with
  :func:`workload`; it is given the module (``telstate`` or ``katsdptelstate``),
  builds a fresh ``module.TelescopeState()`` (in-memory backend), times only the
  operation of interest with :func:`time.perf_counter`, and returns one number
  (a rate, a time or a size).  It also checks the results it got against values
  computed without either library and records any mismatch (see `CHECKS`): a
  faster wrong answer is not a win.
* The machines this runs on are shared and noisy, so every workload runs
  ``--repeat`` times per library and the table shows the median.  Libraries
  alternate within each repeat and the order flips between repeats
  (A B, B A, A B, ...), so slow drift and "who goes first" effects hit both.
* Every repeat uses new TelescopeState objects.  The sensor-read workloads share
  one 1 M-sample sensor per library per repeat (built with the public API, not
  timed) because building it is the slowest part of the run; it is dropped as
  soon as the next workload does not need it.
* The garbage collector stays on (as in real use) but a full collection runs
  before each timed section so that one workload's garbage is not collected on
  the next one's clock.
* Memory is measured in a fresh interpreter per library and repeat: RSS growth
  (from /proc/self/statm) from just before adding the samples (after imports and
  creating an empty TelescopeState) to just after, with a full collection at
  both ends.

Ratios are oriented so that the "better" column says which way is good: for
rates telstate / katsdptelstate and for times katsdptelstate / telstate
(> 1 means telstate is better either way); for memory telstate / katsdptelstate
(< 1 means telstate uses less).  Targets are ratios in that same orientation.

The registry, timing, alternation, table and command line are shared with
bench_redis.py in _harness.py.  Run ``python bench/bench_core.py --help`` for
the options; see bench/README.md.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import _harness
from _harness import CHECKS, SRC, Hooks, Registry, add_sensor_reads, timed

MIB = 1 << 20
T0 = 1e9  # timestamp of sample 0 of every sensor; sample i is at T0 + i


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big each workload is (the full set is the project's reference sizes)."""

    ops: int = 100_000  # attribute, sensor-add and indexed operations per timing
    samples: int = 1_000_000  # samples in the sensor that get_range reads
    window: int = 10_000  # samples in the 1 % window
    window_queries: int = 20  # window queries per timing (mean)
    lookups: int = 10_000  # previous-sample / latest-value calls per timing (mean)
    array_mib: int = 100  # size of the float64 array
    array_ops: int = 3  # array sets / gets per timing (total bytes / total time)
    waits: int = 200  # wait_key wake-ups per timing (median)


FULL = Sizes()
QUICK = Sizes(
    ops=10_000,
    samples=100_000,
    window=1_000,
    window_queries=20,
    lookups=2_000,
    array_mib=10,
    array_ops=3,
    waits=50,
)


# --------------------------------------------------------------------------- registry

WORKLOADS = Registry()
workload = WORKLOADS.workload


# --------------------------------------------------------------------------- helpers


def expected_samples(lo: int, hi: int) -> list[tuple[float, float]]:
    """What get_range should return for samples lo..hi-1 of a fixture sensor."""
    return _harness.expected_samples(lo, hi, T0)


# One sensor per library, shared by consecutive uses_sensor workloads of a repeat.
_SENSORS: dict[tuple[str, int], Any] = {}


def sensor_fixture(mod: ModuleType, n: int) -> Any:
    """A TelescopeState whose sensor 'sensor' holds float(i) at T0 + i for i < n."""
    key = (mod.__name__, n)
    if key not in _SENSORS:
        ts = mod.TelescopeState()
        for i in range(n):
            ts.add("sensor", float(i), ts=T0 + i)
        _SENSORS[key] = ts
    return _SENSORS[key]


# --------------------------------------------------------------------------- workloads


@workload("attr_set", "attribute set", "ops/s", "rate", target=2)
def attr_set(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()
    keys = [f"attr_{i}" for i in range(sizes.ops)]

    def run() -> None:
        for i, key in enumerate(keys):
            ts[key] = i

    seconds, _ = timed(run)
    CHECKS.expect(ts[keys[-1]] == sizes.ops - 1, mod, "attribute set: last value wrong")
    return sizes.ops / seconds


@workload("attr_get", "attribute get", "ops/s", "rate", target=2)
def attr_get(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()
    keys = [f"attr_{i}" for i in range(sizes.ops)]
    for i, key in enumerate(keys):
        ts[key] = i
    seconds, values = timed(lambda: [ts[key] for key in keys])
    CHECKS.expect(values == list(range(sizes.ops)), mod, "attribute get: wrong values")
    CHECKS.expect(all(type(v) is int for v in values), mod, "attribute get: values not int")
    return sizes.ops / seconds


@workload("sensor_add", "sensor add", "ops/s", "rate", target=2)
def sensor_add(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()

    def run() -> None:
        for i in range(sizes.ops):
            ts.add("sensor", float(i), ts=T0 + i)

    seconds, _ = timed(run)
    got = ts.get_range("sensor", st=0)
    CHECKS.expect(got == expected_samples(0, sizes.ops), mod, "sensor add: wrong samples")
    return sizes.ops / seconds


add_sensor_reads(WORKLOADS, sensor_fixture, T0, full_target=4)


@workload("latest_get", "latest value, get()", "µs", "time", uses_sensor=True)
def latest_get(mod: ModuleType, sizes: Sizes) -> float:
    ts = sensor_fixture(mod, sizes.samples)
    ts.get("sensor")  # warm-up
    seconds, results = timed(lambda: [ts.get("sensor") for _ in range(sizes.lookups)])
    last = float(sizes.samples - 1)
    CHECKS.expect(results[-1] == last and type(results[-1]) is float, mod, "get(): wrong value")
    return seconds / sizes.lookups * 1e6


@workload("latest_range", "latest value, get_range()", "µs", "time", uses_sensor=True)
def latest_range(mod: ModuleType, sizes: Sizes) -> float:
    ts = sensor_fixture(mod, sizes.samples)
    ts.get_range("sensor")  # warm-up
    seconds, results = timed(lambda: [ts.get_range("sensor") for _ in range(sizes.lookups)])
    expected = expected_samples(sizes.samples - 1, sizes.samples)
    CHECKS.expect(results[-1] == expected, mod, "get_range() latest: wrong sample")
    return seconds / sizes.lookups * 1e6


def _array(sizes: Sizes) -> np.ndarray[Any, Any]:
    return np.random.default_rng(7).random(sizes.array_mib * MIB // 8)


@workload("array_set", "float64 array set", "MiB/s", "rate")
def array_set(mod: ModuleType, sizes: Sizes) -> float:
    arr = _array(sizes)
    ts = mod.TelescopeState()

    def run() -> None:
        for i in range(sizes.array_ops):
            ts[f"array_{i}"] = arr

    seconds, _ = timed(run)
    CHECKS.expect(np.array_equal(ts["array_0"], arr), mod, "array set: value changed")
    return sizes.array_mib * sizes.array_ops / seconds


@workload("array_get", "float64 array get", "MiB/s", "rate", target=3)
def array_get(mod: ModuleType, sizes: Sizes) -> float:
    arr = _array(sizes)
    ts = mod.TelescopeState()
    ts["array"] = arr
    got = None

    def run() -> None:
        nonlocal got
        for _ in range(sizes.array_ops):
            got = None  # let the previous copy go first, as a caller's loop would
            got = ts["array"]

    seconds, _ = timed(run)
    assert got is not None
    ok = got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)
    CHECKS.expect(ok, mod, "array get: wrong array")
    CHECKS.expect(got.flags.writeable, mod, "array get: returned array is read-only")
    return sizes.array_mib * sizes.array_ops / seconds


@workload("indexed_set", "indexed set", "ops/s", "rate")
def indexed_set(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()

    def run() -> None:
        for i in range(sizes.ops):
            ts.set_indexed("idx", i, i)

    seconds, _ = timed(run)
    CHECKS.expect(ts.get_indexed("idx", sizes.ops - 1) == sizes.ops - 1, mod, "indexed set")
    return sizes.ops / seconds


@workload("indexed_get", "indexed get", "ops/s", "rate")
def indexed_get(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()
    for i in range(sizes.ops):
        ts.set_indexed("idx", i, i)
    seconds, values = timed(lambda: [ts.get_indexed("idx", i) for i in range(sizes.ops)])
    CHECKS.expect(values == list(range(sizes.ops)), mod, "indexed get: wrong values")
    return sizes.ops / seconds


def _waiter(ts: Any, key: str, woke: list[float]) -> None:
    ts.wait_key(key)
    woke.append(time.perf_counter())


@workload("wait_key", "wait_key wake-up latency", "ms", "time", target=2)
def wait_key_latency(mod: ModuleType, sizes: Sizes) -> float:
    ts = mod.TelescopeState()
    latencies = []
    gc.collect()
    for i in range(sizes.waits):
        key = f"key_{i}"
        woke: list[float] = []
        thread = threading.Thread(target=_waiter, args=(ts, key, woke), daemon=True)
        thread.start()
        time.sleep(0.005)  # long enough for the waiter to be blocked inside wait_key
        start = time.perf_counter()
        ts.add(key, 1, immutable=True)
        thread.join(30)
        if not woke:
            CHECKS.expect(False, mod, f"wait_key: waiter for {key} did not wake within 30 s")
            return float("nan")
        latencies.append(woke[0] - start)
    return statistics.median(latencies) * 1e3


# Run in a fresh interpreter: argv = [-c, module name, number of samples].
_MEMORY_CHILD = """
import gc, importlib, os, sys
mod = importlib.import_module(sys.argv[1])
n = int(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
ts = mod.TelescopeState()
gc.collect()
base = rss()
for i in range(n):
    ts.add("sensor", float(i), ts=1e9 + i)
gc.collect()
grown = rss() - base
last = ts.get_range("sensor")
print(grown, repr(last))
"""


@workload("memory", "memory of a float sensor", "MiB", "memory", target=0.5)
def sensor_memory(mod: ModuleType, sizes: Sizes) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    args = [sys.executable, "-c", _MEMORY_CHILD, mod.__name__, str(sizes.samples)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    grown, last = out.split(maxsplit=1)
    expected = repr(expected_samples(sizes.samples - 1, sizes.samples))
    CHECKS.expect(last.strip() == expected, mod, "memory child: wrong latest sample")
    return int(grown) / MIB


# --------------------------------------------------------------------------- runner


def _drop_sensors_unless_needed(w: _harness.Workload, lib: str) -> None:
    if not w.uses_sensor:
        _SENSORS.clear()  # the next workload does not read the shared sensor


HOOKS = Hooks(
    before_repeat=_SENSORS.clear,  # fresh objects for every repeat
    before_measure=_drop_sensors_unless_needed,
    after_run=_SENSORS.clear,
)


def main(argv: list[str] | None = None) -> int:
    parser = _harness.parser(__doc__.split("\n\n")[0], WORKLOADS)
    args, workloads = _harness.parse_args(parser, WORKLOADS, argv)
    sizes = QUICK if args.quick else FULL
    modules = _harness.import_libraries()
    env = _harness.environment(modules)
    _harness.print_header(env, args, sizes)

    started = time.perf_counter()
    results = _harness.run(workloads, modules, sizes, args.repeat, HOOKS)
    elapsed = time.perf_counter() - started
    return _harness.report(results, args, env, sizes, elapsed)


if __name__ == "__main__":
    sys.exit(main())
