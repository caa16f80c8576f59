"""Sensor data as arrays: telstate's bulk paths against its per-sample ones and the memcpy limit.

For 10 k, 100 k, 1 M and 10 M float samples (``--quick``: up to 1 M):

* ``batch_arrays`` (values and timestamps as numpy arrays) against ``decode_batch``
  ((value, timestamp) tuples), both from the same :class:`SampleBatch`, and the
  peak memory ``batch_arrays`` allocates (tracemalloc, which sees numpy's buffers);
* ``parse_members_reply`` of a raw ZRANGEBYLEX reply holding the same samples,
  with members of one length (floats) and of mixed lengths (ints of several
  MessagePack encodings), against ``np.frombuffer(reply).copy()``: one copy of the
  same bytes, the floor for anything that reads them;
* ``envelope`` and ``points_for_plot`` of the largest size into 2000 buckets.

Every figure is the median of ``--repeat`` runs, after a full garbage collection
(the collector stays enabled).  Results are checked against the per-sample paths
(or, for the biggest size, against the known values); a mismatch exits with
status 1.  ``decode_batch`` of 10 M samples needs ~1.5 GB and ~10 s a run, so it
runs only with ``--big-decode``.

Usage: ``python bench/bench_arrays.py [--repeat 5] [--quick] [--big-decode] [--json PATH]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from telstate._arrays import batch_arrays
from telstate._decimate import envelope, points_for_plot
from telstate._reply import parse_members_reply
from telstate._samples import SampleBatch, decode_batch

T0 = 1.7e9
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
BUCKETS = 2000
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok and what not in FAILURES:
        FAILURES.append(what)
        print(f"  CHECK FAILED  {what}", file=sys.stderr)


def median_time(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `repeat` calls (after a full collection each) and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_mib(func: Callable[[], Any]) -> float:
    """Peak traced allocation of one call, in MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        result = func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / 2**20


# --------------------------------------------------------------------------- fixtures (numpy)


def float_batch(n: int) -> SampleBatch:
    """float(i) at T0 + i, encoded as MessagePack doubles (ff cb + 8 bytes)."""
    rows = np.empty(n, [("head", "u1", 2), ("value", ">f8")])
    rows["head"] = (0xFF, 0xCB)
    rows["value"] = np.arange(n, dtype=np.float64)
    times = T0 + np.arange(n, dtype=np.float64)
    return SampleBatch(times, rows.tobytes(), np.arange(1, n + 1, dtype=np.int64) * 10)


def reply_of(n: int, mixed: bool) -> bytes:
    """A RESP2 reply of n members: float(i) (one length) or ints i % 300 (three lengths)."""
    if not mixed:
        rows = np.empty(n, [("h", "S5"), ("t", ">f8"), ("m", "u1", 2), ("v", ">f8"), ("e", "S2")])
        rows["h"], rows["m"], rows["e"] = b"$18\r\n", (0xFF, 0xCB), b"\r\n"
        rows["t"] = T0 + np.arange(n, dtype=np.float64)
        rows["v"] = np.arange(n, dtype=np.float64)
        return b"*%d\r\n" % n + rows.tobytes()
    # ints 0..299: fixint (ff + 1 byte), uint8 (ff cc + 1), uint16 (ff cd + 2): 3 lengths
    values = np.arange(n) % 300
    kinds = np.select([values < 128, values < 256], [0, 1], 2)
    sizes = np.array([17, 18, 19])[kinds]  # "$1x\r\n" + 8-byte time + value + "\r\n"
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), np.uint8)
    for kind in range(3):
        where = np.flatnonzero(kinds == kind)
        rows = np.empty((len(where), 17 + kind), np.uint8)
        rows[:, :5] = np.frombuffer(b"$%d\r\n" % (10 + kind), np.uint8)
        rows[:, 5:13] = (T0 + where).astype(">f8").view(np.uint8).reshape(-1, 8)
        rows[:, 13] = 0xFF
        if kind == 0:
            rows[:, 14] = values[where]
        else:
            rows[:, 14] = 0xCB + kind  # 0xcc, 0xcd
            payload = values[where].astype(">u1" if kind == 1 else ">u2")
            rows[:, 15 : 15 + kind] = payload.view(np.uint8).reshape(-1, kind)
        rows[:, -2:] = np.frombuffer(b"\r\n", np.uint8)
        out[starts[where][:, None] + np.arange(17 + kind)] = rows
    return b"*%d\r\n" % n + out.tobytes()


# --------------------------------------------------------------------------- runs


def run(repeat: int, sizes: tuple[int, ...], big_decode: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(label: str, n: int, unit: str, value: float) -> None:
        rows.append({"label": label, "samples": n, "unit": unit, "median": value})
        print(f"  {label:<40} {n:>10,} {value:10.3f} {unit}", file=sys.stderr, flush=True)

    for n in sizes:
        batch = float_batch(n)
        seconds, arrays = median_time(lambda b=batch: batch_arrays(b), repeat)
        check(arrays.values.dtype == np.float64, f"batch_arrays {n}: dtype")
        check(np.array_equal(arrays.values, np.arange(n)), f"batch_arrays {n}: values")
        check(np.array_equal(arrays.timestamps, T0 + np.arange(n)), f"batch_arrays {n}: times")
        add("batch_arrays", n, "ms", seconds * 1e3)
        add("batch_arrays peak memory", n, "MiB", peak_mib(lambda b=batch: batch_arrays(b)))
        if n < 10_000_000 or big_decode:
            seconds, pairs = median_time(lambda b=batch: decode_batch(b), max(1, repeat // 2))
            check(pairs[-1] == (float(n - 1), T0 + n - 1), f"decode_batch {n}: last pair")
            del pairs
            add("decode_batch", n, "ms", seconds * 1e3)
        del arrays
        for mixed in (False, True):
            reply = reply_of(n, mixed)
            kind = "mixed lengths" if mixed else "one length"
            seconds, got = median_time(lambda r=reply: parse_members_reply(r), repeat)
            check(len(got) == n and got.times[-1] == T0 + n - 1, f"parse {kind} {n}: times")
            if mixed and n <= 100_000:
                check(
                    batch_arrays(got).values.tolist() == [i % 300 for i in range(n)],
                    f"parse {kind} {n}: values",
                )
            add(f"parse_members_reply ({kind})", n, "ms", seconds * 1e3)
            seconds, _ = median_time(lambda r=reply: np.frombuffer(r, np.uint8).copy(), repeat)
            add(
                f"np.frombuffer copy ({kind}, {len(reply) / 2**20:.0f} MiB)", n, "ms", seconds * 1e3
            )
            del got, reply
    n = sizes[-1]
    rng = np.random.default_rng(1)
    times = T0 + np.arange(n, dtype=np.float64) * 0.1
    values = rng.normal(size=n)
    seconds, env = median_time(lambda: envelope(times, values, BUCKETS), repeat)
    check(int(env.count.sum()) == n and len(env.count) == BUCKETS, "envelope: counts")
    add(f"envelope -> {BUCKETS} buckets", n, "ms", seconds * 1e3)
    seconds, (pt, _) = median_time(lambda: points_for_plot(times, values, BUCKETS), repeat)
    check(len(pt) <= 4 * BUCKETS, "points_for_plot: too many points")
    add(f"points_for_plot -> {BUCKETS} buckets", n, "ms", seconds * 1e3)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median shown)")
    p.add_argument("--quick", action="store_true", help="sizes up to 1 M only")
    p.add_argument("--big-decode", action="store_true", help="also decode_batch of 10 M")
    p.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    sizes = SIZES[:3] if args.quick else SIZES
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}; repeat {args.repeat}")
    started = time.perf_counter()
    rows = run(args.repeat, sizes, args.big_decode)
    print()
    print("| operation | samples | median | unit |")
    print("|---|---:|---:|---|")
    for row in rows:
        print(f"| {row['label']} | {row['samples']:,} | {row['median']:.3g} | {row['unit']} |")
    print(f"\ntook {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows, "failures": FAILURES}, indent=2) + "\n")
    if FAILURES:
        print("RESULT CHECKS FAILED:", *FAILURES, sep="\n  ")
        return 1
    print("Result checks passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
