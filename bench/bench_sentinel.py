"""Redis Sentinel: what a highly available telescope state costs, and how it fails over.

Measured on private deployments (a primary, two replicas, three sentinels with a
1 s down-after time; the test fixtures' :class:`SentinelDeployment`), in one run:

* single-call latency (attribute get, sensor add) through a ``redis+sentinel://``
  URL vs ``redis://`` straight to the same primary (goal: <= 1.1x);
* the cost of ``min_replicas=1`` (``WAIT`` after the writes, same round trip): per
  sensor add and per pipeline of 1000 adds, vs no waiting;
* the write gap a client sees during a SIGKILL failover (longest time between two
  acknowledged adds) vs the sentinels' own failover time (kill to ``+switch-master``
  heard on a sentinel; goal: within 0.5 s), and the same for a graceful
  ``SENTINEL FAILOVER``.

Each figure is the median of ``--repeat`` runs; the two sides of each comparison
alternate within a run.  Usage::

    python bench/bench_sentinel.py --repeat 5
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import redis  # noqa: E402
from tests.servers import SentinelDeployment  # noqa: E402

import telstate  # noqa: E402

T0 = 1_700_000_000.0


def rate(func: Any, seconds: float) -> float:
    """Calls of `func` per second, over about `seconds`."""
    func()  # warm up (connections, scripts)
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(100):
            func()
        count += 100
        now = time.perf_counter()
        if now >= end:
            return count / (now - start)


def latencies(deployment: SentinelDeployment, seconds: float) -> dict[str, float]:
    """Calls per second through Sentinel and straight to the primary (alternating)."""
    primary = deployment.primary()
    direct = telstate.TelescopeState(f"redis://127.0.0.1:{primary.port}")
    sentinel = telstate.TelescopeState(deployment.url)
    acked = telstate.TelescopeState(deployment.url + "?min_replicas=1")
    out: dict[str, float] = {}
    try:
        direct["attr"] = 1
        counter = iter(range(10**9))
        for name, ts in (("direct", direct), ("sentinel", sentinel)):
            out[f"get {name}"] = rate(lambda ts=ts: ts["attr"], seconds)
            out[f"add {name}"] = rate(
                lambda ts=ts: ts.add("sensor", 1.0, ts=T0 + next(counter)), seconds
            )
        for name, ts in (("min_replicas=0", sentinel), ("min_replicas=1", acked)):
            out[f"add {name}"] = rate(
                lambda ts=ts: ts.add("sensor", 1.0, ts=T0 + next(counter)), seconds
            )

            def pipeline(ts: telstate.TelescopeState = ts) -> None:
                with ts.pipeline() as batch:
                    for _ in range(1000):
                        batch.add("piped", 1.0, ts=T0 + next(counter))

            out[f"pipeline {name}"] = rate(pipeline, seconds)
    finally:
        for ts in (direct, sentinel, acked):
            ts.backend.close()
    return out


def failover_gap(fault: str) -> tuple[float, float]:
    """(longest gap between acknowledged adds, sentinels' failover time), in seconds."""
    deployment = SentinelDeployment()
    try:
        ts = telstate.TelescopeState(deployment.url)
        acks: list[float] = []
        stop = threading.Event()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                try:
                    ts.add("stream", float(n), ts=T0 + n)
                    acks.append(time.monotonic())
                except telstate.ConnectionError:
                    pass
                n += 1

        switched: list[float] = []
        # the earliest announcement: the leader's (the others follow it)
        sentinels = [sentinel.client() for sentinel in deployment.sentinels]
        listeners = [client.pubsub() for client in sentinels]
        for pubsub in listeners:
            pubsub.subscribe("+switch-master")
            pubsub.get_message(timeout=1)  # the confirmation

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(0.5)
        old = deployment.primary()
        started = time.monotonic()
        if fault == "kill":
            old.kill()
        else:
            deployment.failover()
        deadline = started + 30
        while not switched and time.monotonic() < deadline:
            for pubsub in listeners:
                message = pubsub.get_message(timeout=0.002)
                if message is not None and message["type"] == "message":
                    switched.append(time.monotonic() - started)
                    break
        time.sleep(1.0)
        stop.set()
        thread.join(10)
        for pubsub, client in zip(listeners, sentinels, strict=True):
            pubsub.close()
            client.close()
        ts.backend.close()
        around = [t for t in acks if started - 1 < t]
        gaps = [b - a for a, b in itertools.pairwise(around)]
        return max(gaps), switched[0]
    finally:
        deployment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="per rate measurement")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"telstate bench_sentinel: {args.repeat} repeats; redis-py {redis.__version__}")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    samples: dict[str, list[float]] = {}
    deployment = SentinelDeployment()
    try:
        for _ in range(args.repeat):
            for name, value in latencies(deployment, args.seconds).items():
                samples.setdefault(name, []).append(value)
    finally:
        deployment.close()
    for fault in ("kill", "failover"):
        for _ in range(args.repeat):
            gap, switched = failover_gap(fault)
            samples.setdefault(f"{fault} gap", []).append(gap)
            samples.setdefault(f"{fault} switch", []).append(switched)
    med = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        (
            "attribute get (ops/s)",
            med["get direct"],
            med["get sentinel"],
            med["get direct"] / med["get sentinel"],
            "<= 1.1x latency",
        ),
        (
            "sensor add (ops/s)",
            med["add direct"],
            med["add sentinel"],
            med["add direct"] / med["add sentinel"],
            "<= 1.1x latency",
        ),
        (
            "sensor add (ops/s), min_replicas 0 vs 1",
            med["add min_replicas=0"],
            med["add min_replicas=1"],
            med["add min_replicas=0"] / med["add min_replicas=1"],
            "cost",
        ),
        (
            "1000-add pipeline (/s), min_replicas 0 vs 1",
            med["pipeline min_replicas=0"],
            med["pipeline min_replicas=1"],
            med["pipeline min_replicas=0"] / med["pipeline min_replicas=1"],
            "cost",
        ),
        (
            "SIGKILL: write gap vs failover (s)",
            med["kill gap"],
            med["kill switch"],
            med["kill gap"] - med["kill switch"],
            "gap within 0.5 s",
        ),
        (
            "SENTINEL FAILOVER: write gap vs failover (s)",
            med["failover gap"],
            med["failover switch"],
            med["failover gap"] - med["failover switch"],
            "gap within 0.5 s",
        ),
    ]
    print(f"{'workload':48} {'A':>12} {'B':>12} {'A/B or A-B':>11}  goal")
    for label, a, b, ratio, goal in rows:
        print(f"{label:48} {a:12.4g} {b:12.4g} {ratio:11.3f}  {goal}")
    print("A/B for rates is the latency of B relative to A; gaps: A - B in seconds.")
    print("samples:", {name: [round(v, 4) for v in values] for name, values in samples.items()})


if __name__ == "__main__":
    main()
