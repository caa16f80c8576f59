"""Redis Cluster: what spreading a telescope state over 3 primaries costs and gives.

Measured in one run, on one machine, against a private cluster (3 primaries, a replica
each: the test fixtures' :class:`ClusterDeployment`) and a private single server:

* single-call latency (attribute get, sensor add) on the cluster vs one server
  (goal: <= 1.2x);
* a read through a view whose candidate keys live on 3 different nodes vs the same
  read on one server (goal: <= 1.5x): when the last candidate wins, the first two
  are checked again (a second round trip); when the first wins, one round trip;
* the aggregate rate of 8 writer processes (pipelined sensor adds) on 3 primaries vs
  1 (on 2 cores the point is only that nothing serialises on the client);
* ``keys()`` and a full ``save_to_file`` of a 100 k-key state, cluster vs one server.

Each figure is the median of ``--repeat`` runs, cluster and server alternating.
Usage::

    python bench/bench_cluster.py --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.servers import ClusterDeployment, RedisServer  # noqa: E402

import telstate  # noqa: E402
from telstate._redis.cluster import key_slot  # noqa: E402

T0 = 1_700_000_000.0


def rate(func: Any, seconds: float) -> float:
    func()
    count = 0
    start = time.perf_counter()
    while True:
        for _ in range(50):
            func()
        count += 50
        now = time.perf_counter()
        if now - start >= seconds:
            return count / (now - start)


def spread_view(deployment: ClusterDeployment) -> tuple[str, str]:
    """A view 'a' + 'b' and a key whose 3 candidates (a_k, b_k, k) are on 3 nodes."""
    primaries = deployment.primaries()
    for i in range(10_000):
        key = f"key{i}"
        nodes = {deployment.node_of(name).port for name in (f"a_{key}", f"b_{key}", key)}
        if len(nodes) == len(primaries):
            return key, key
    raise RuntimeError("no spread key found")


def single_calls(url: str, key: str, seconds: float) -> dict[str, float]:
    ts = telstate.TelescopeState(url)
    try:
        ts["attr"] = 1
        ts[key] = 1  # the last candidate of the view exists
        view = ts.view("b").view("a")
        counter = iter(range(10**9))
        ts[f"c_{key}"] = 2  # the first candidate of this view exists
        first_view = ts.view("a").view("b").view("c")
        return {
            "get": rate(lambda: ts["attr"], seconds),
            "add": rate(lambda: ts.add("sensor", 1.0, ts=T0 + next(counter)), seconds),
            "view get": rate(lambda: view[key], seconds),
            "view first": rate(lambda: first_view[key], seconds),
        }
    finally:
        ts.backend.close()


def _writer(url: str, index: int, seconds: float, out: Any) -> None:
    ts = telstate.TelescopeState(url)
    written = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        with ts.pipeline() as batch:
            for i in range(100):
                batch.add(f"w{index}_s{i % 10}", float(i), ts=T0 + written + i)
        written += 100
    out.put(written / (time.perf_counter() - start))
    ts.backend.close()


def aggregate_rate(url: str, processes: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, i, seconds, out)) for i in range(processes)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join()
    return total


def big_state(url: str, keys: int) -> tuple[float, float]:
    """(keys() seconds, save_to_file seconds) of a state of `keys` attributes."""
    ts = telstate.TelescopeState(url)
    try:
        ts.clear()
        for start in range(0, keys, 5000):
            with ts.pipeline() as batch:
                for i in range(start, min(start + 5000, keys)):
                    batch[f"k{i:06d}"] = i
        t0 = time.perf_counter()
        found = ts.keys()
        t1 = time.perf_counter()
        assert len(found) == keys
        with tempfile.TemporaryDirectory() as tmp:
            t2 = time.perf_counter()
            assert ts.save_to_file(Path(tmp) / "state.rdb") == keys
            t3 = time.perf_counter()
        ts.clear()
        return t1 - t0, t3 - t2
    finally:
        ts.backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    print(f"telstate bench_cluster: {args.repeat} repeats; machine: {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    cluster = ClusterDeployment()
    server = RedisServer(tcp=True)
    samples: dict[str, list[float]] = {}
    try:
        key, _ = spread_view(cluster)
        assert len({key_slot(k.encode()) for k in (f"a_{key}", f"b_{key}", key)}) == 3
        urls = {"cluster": cluster.url, "server": server.url}
        for _ in range(args.repeat):
            for name, url in urls.items():
                for what, value in single_calls(url, key, args.seconds).items():
                    samples.setdefault(f"{what} {name}", []).append(value)
            for name, url in urls.items():
                total = aggregate_rate(url, args.processes, args.seconds * 2)
                samples.setdefault(f"writers {name}", []).append(total)
            for name, url in urls.items():
                listing, saving = big_state(url, args.keys)
                samples.setdefault(f"keys {name}", []).append(listing)
                samples.setdefault(f"save {name}", []).append(saving)
    finally:
        cluster.close()
        server.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("attribute get (ops/s)", "get", "rate", "<= 1.2x latency"),
        ("sensor add (ops/s)", "add", "rate", "<= 1.2x latency"),
        ("view read, 3 nodes, last candidate wins (ops/s)", "view get", "rate", "<= 1.5x"),
        ("view read, 3 nodes, first candidate wins (ops/s)", "view first", "rate", "<= 1.5x"),
        (f"{args.processes} writer processes (samples/s)", "writers", "rate", "report"),
        (f"keys() of {args.keys} keys (s)", "keys", "time", "report"),
        (f"save_to_file of {args.keys} keys (s)", "save", "time", "report"),
    ]
    print(f"{'workload':44} {'one server':>12} {'cluster':>12} {'latency/time x':>15}  goal")
    for label, name, kind, goal in rows:
        one, many = med[f"{name} server"], med[f"{name} cluster"]
        ratio = one / many if kind == "rate" else many / one
        print(f"{label:44} {one:12.4g} {many:12.4g} {ratio:15.3f}  {goal}")
    print("latency/time x: the cluster's latency (1/rate) or time relative to one server's")
    print("samples:", {name: [round(v, 4) for v in values] for name, values in samples.items()})


if __name__ == "__main__":
    main()
