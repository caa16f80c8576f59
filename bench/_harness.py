"""The side-by-side harness shared by bench_core.py and bench_redis.py.

A benchmark script registers workloads, each a small function
``f(module, sizes) -> float`` given the library module (``telstate`` or
``katsdptelstate``) and a sizes dataclass; it times only the operation of
interest (see :func:`timed`), checks what it got against answers computed
without either library (:data:`CHECKS`) and returns one number: a rate, a time
or a size.  The harness then

* runs every workload ``--repeat`` times per library, the libraries alternating
  within a repeat and the order flipping between repeats (A B, B A, A B, ...),
  so slow drift and "who goes first" effects hit both equally (:func:`run`);
* prints one table of medians and ratios, with targets (:func:`report`), and
  optionally the raw samples as JSON;
* exits with status 1 if any result check failed.

Ratios are oriented so that the "better" column says which way is good: for
rates telstate / katsdptelstate and for times katsdptelstate / telstate
(> 1 means telstate is better either way); for memory telstate / katsdptelstate
(< 1 means telstate uses less).  Targets are ratios in that same orientation; a
workload may also (or instead) have an absolute target for telstate's own
figure, in the workload's unit.

This module is imported by the scripts as ``_harness`` (their directory is on
``sys.path`` when they run as ``python bench/<script>.py``).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARIES = ("katsdptelstate", "telstate")

# --------------------------------------------------------------------------- registry

Func = Callable[[ModuleType, Any], float]


@dataclass(frozen=True)
class Workload:
    name: str  # for --only
    label: str  # row of the table
    unit: str
    kind: str  # "rate" (higher is better), "time" (lower is better) or "memory"
    target: float | None  # required ratio in the "better" orientation; None: report only
    uses_sensor: bool
    func: Func
    absolute: float | None = None  # required telstate figure, in `unit`; None: none

    def ratio(self, kat: float, tel: float) -> float:
        """The ratio, oriented as described in the module docstring."""
        if self.kind == "rate":
            return tel / kat
        if self.kind == "time":
            return kat / tel
        return tel / kat

    @property
    def better(self) -> str:
        return "< 1" if self.kind == "memory" else "> 1"

    def _beats(self, value: float, target: float) -> bool:
        return value <= target if self.kind in ("memory", "time") else value >= target

    def met(self, ratio: float, tel: float | None = None) -> bool | None:
        """Whether the ratio (and telstate's figure `tel`) meet the targets; None: no target."""
        if self.target is None and self.absolute is None:
            return None
        ok = True
        if self.target is not None:
            ok = ratio <= self.target if self.kind == "memory" else ratio >= self.target
        if self.absolute is not None and tel is not None:
            ok = ok and self._beats(tel, self.absolute)
        return ok

    @property
    def target_text(self) -> str:
        parts = []
        if self.target is not None:
            parts.append(f"{'≤' if self.kind == 'memory' else '≥'} {self.target:g}")
        if self.absolute is not None:
            sign = "≤" if self.kind in ("memory", "time") else "≥"
            parts.append(f"telstate {sign} {fmt(self.absolute)}")
        return ", ".join(parts) if parts else "report"


class Registry(dict[str, Workload]):
    """Workloads by name; registration order is table order."""

    def workload(
        self,
        name: str,
        label: str,
        unit: str,
        kind: str,
        target: float | None = None,
        uses_sensor: bool = False,
        absolute: float | None = None,
    ) -> Callable[[Func], Func]:
        """Decorator: register a workload function under `name`."""

        def register(func: Func) -> Func:
            self[name] = Workload(name, label, unit, kind, target, uses_sensor, func, absolute)
            return func

        return register


# --------------------------------------------------------------------------- checks, timing


@dataclass
class Checks:
    """Result checks: every mismatch is recorded, none is fatal."""

    failures: list[str] = field(default_factory=list)

    def expect(self, ok: bool, mod: ModuleType, what: str) -> None:
        if not ok:
            message = f"{mod.__name__}: {what}"
            if message not in self.failures:
                self.failures.append(message)
                print(f"  CHECK FAILED  {message}", file=sys.stderr)


CHECKS = Checks()


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``func()`` (after a full collection) and its result."""
    gc.collect()
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def expected_samples(lo: int, hi: int, t0: float) -> list[tuple[float, float]]:
    """What get_range should return for samples lo..hi-1 of float(i) at t0 + i."""
    return [(float(i), t0 + i) for i in range(lo, hi)]


def all_floats(pairs: Iterable[tuple[Any, Any]]) -> bool:
    return all(type(v) is float and type(t) is float for v, t in pairs)


# --------------------------------------------------------------------------- runner


@dataclass
class Hooks:
    """Called by :func:`run` around the measurements (e.g. to drop or flush fixtures)."""

    before_repeat: Callable[[], None] = lambda: None
    before_measure: Callable[[Workload, str], None] = lambda workload, lib: None
    after_run: Callable[[], None] = lambda: None


@dataclass
class Result:
    workload: Workload
    samples: dict[str, list[float]]

    def median(self, lib: str) -> float:
        return statistics.median(self.samples[lib])

    @property
    def ratio(self) -> float:
        return self.workload.ratio(self.median("katsdptelstate"), self.median("telstate"))

    @property
    def met(self) -> bool | None:
        return self.workload.met(self.ratio, self.median("telstate"))


def run(
    workloads: list[Workload],
    modules: dict[str, ModuleType],
    sizes: Any,
    repeat: int,
    hooks: Hooks | None = None,
) -> list[Result]:
    hooks = hooks or Hooks()
    results = [Result(w, {lib: [] for lib in modules}) for w in workloads]
    try:
        for rep in range(repeat):
            # A B, then B A, ...: each library goes first equally often.
            order = list(modules) if rep % 2 == 0 else list(reversed(modules))
            hooks.before_repeat()  # fresh objects for every repeat
            for result in results:
                w = result.workload
                for lib in order:
                    hooks.before_measure(w, lib)
                    value = w.func(modules[lib], sizes)
                    result.samples[lib].append(value)
                    print(
                        f"  [{rep + 1}/{repeat}] {w.name:<15} {lib:<15} {fmt(value):>10} {w.unit}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        hooks.after_run()
    return results


# --------------------------------------------------------------------------- output


def fmt(x: float) -> str:
    if x != x:  # NaN
        return "nan"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g} M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.3g} k"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def table(results: list[Result]) -> str:
    header = ["operation", "unit", "katsdptelstate", "telstate", "ratio", "better", "target", "met"]
    rows = [header]
    for r in results:
        w = r.workload
        kat, tel = r.median("katsdptelstate"), r.median("telstate")
        met = r.met
        met_text = "-" if met is None else ("yes" if met else "NO")
        row = [w.label, w.unit, fmt(kat), fmt(tel), f"{r.ratio:.2f}", w.better, w.target_text]
        rows.append([*row, met_text])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = {0, 1, 5, 6, 7}
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    return "\n".join(lines)


def environment(modules: dict[str, ModuleType]) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "libraries": {
            lib: {"version": getattr(mod, "__version__", "?"), "file": mod.__file__}
            for lib, mod in modules.items()
        },
    }


# --------------------------------------------------------------------------- command line


def parser(description: str, workloads: Registry) -> argparse.ArgumentParser:
    """The options every benchmark script has (add more before :func:`parse_args`)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeat", type=int, default=3, help="runs per library (median shown)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--only", metavar="NAME[,NAME]", help=f"among: {', '.join(workloads)}")
    p.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    return p


def parse_args(
    p: argparse.ArgumentParser, workloads: Registry, argv: list[str] | None
) -> tuple[argparse.Namespace, list[Workload]]:
    """Parse and validate the options; also returns the workloads to run, in table order."""
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    names = list(workloads) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in workloads]
    if unknown:
        choices = ", ".join(workloads)
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {choices}")
    return args, [workloads[n] for n in names]


def import_libraries() -> dict[str, ModuleType]:
    """Both libraries; this checkout's telstate, whatever else is installed."""
    sys.path.insert(0, str(SRC))
    return {lib: importlib.import_module(lib) for lib in LIBRARIES}


def print_header(env: dict[str, Any], args: argparse.Namespace, sizes: Any) -> None:
    for lib, info in env["libraries"].items():
        print(f"{lib} {info['version']} from {info['file']}")
    print(
        f"Python {env['python']}, numpy {env['numpy']}, {env['cpus']} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; repeat {args.repeat}, {'quick' if args.quick else 'full'}"
        f" sizes: {asdict(sizes)}",
        flush=True,
    )


def report(
    results: list[Result],
    args: argparse.Namespace,
    env: dict[str, Any],
    sizes: Any,
    elapsed: float,
) -> int:
    """Print the table and the check summary, write the JSON; the exit status."""
    print()
    print(table(results))
    print()
    print(f"median of {args.repeat}; took {elapsed:.0f} s; load {os.getloadavg()[0]:.2f}")
    if CHECKS.failures:
        print("RESULT CHECKS FAILED:")
        for failure in CHECKS.failures:
            print(f"  {failure}")
    else:
        print("Result checks: both libraries returned the expected results.")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for r in results:
            row = {
                "name": r.workload.name,
                "label": r.workload.label,
                "unit": r.workload.unit,
                "kind": r.workload.kind,
                "target": r.workload.target,
                "samples": r.samples,
                "median": {lib: r.median(lib) for lib in r.samples},
                "ratio": r.ratio,
                "met": r.met,
            }
            if r.workload.absolute is not None:
                row["absolute_target"] = r.workload.absolute
            rows.append(row)
        report = {
            "environment": env,
            "repeat": args.repeat,
            "sizes": asdict(sizes),
            "seconds": elapsed,
            "results": rows,
            "check_failures": CHECKS.failures,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if CHECKS.failures else 0


# --------------------------------------------------------------------------- shared workloads


def add_sensor_reads(
    registry: Registry,
    sensor_fixture: Callable[[ModuleType, int], Any],
    t0: float,
    full_target: float,
) -> None:
    """Register the three sensor-read workloads that every backend benchmark runs.

    `sensor_fixture(mod, n)` gives a TelescopeState whose 'sensor' holds float(i) at
    t0 + i for i < n.
    """

    @registry.workload(
        "range_full", "get_range full", "ms", "time", target=full_target, uses_sensor=True
    )
    def range_full(mod: ModuleType, sizes: Any) -> float:
        ts = sensor_fixture(mod, sizes.samples)
        seconds, got = timed(lambda: ts.get_range("sensor", st=0))
        CHECKS.expect(got == expected_samples(0, sizes.samples, t0), mod, "get_range full: wrong")
        CHECKS.expect(all_floats(got), mod, "get_range full: values or times not float")
        return seconds * 1e3

    @registry.workload("range_window", "get_range 1 % window", "ms", "time", uses_sensor=True)
    def range_window(mod: ModuleType, sizes: Any) -> float:
        ts = sensor_fixture(mod, sizes.samples)
        lo = (sizes.samples - sizes.window) // 2
        st, et = t0 + lo, t0 + lo + sizes.window

        def run() -> list[Any]:
            return [ts.get_range("sensor", st=st, et=et) for _ in range(sizes.window_queries)]

        seconds, results = timed(run)
        expected = expected_samples(lo, lo + sizes.window, t0)
        CHECKS.expect(results[-1] == expected, mod, "get_range window: wrong samples")
        CHECKS.expect(all_floats(results[-1]), mod, "get_range window: values or times not float")
        return seconds / sizes.window_queries * 1e3

    @registry.workload("range_previous", "previous-sample lookup", "µs", "time", uses_sensor=True)
    def range_previous(mod: ModuleType, sizes: Any) -> float:
        ts = sensor_fixture(mod, sizes.samples)
        rng = np.random.default_rng(42)
        # Between the first and the last sample, some exactly on a sample (strict "before").
        offsets = rng.uniform(1, sizes.samples, sizes.lookups)
        offsets[::10] = np.floor(offsets[::10])
        times = (t0 + offsets).tolist()
        ts.get_range("sensor", et=times[0])  # warm-up

        seconds, results = timed(lambda: [ts.get_range("sensor", et=t) for t in times])
        sample_times = [t0 + i for i in range(sizes.samples)]
        expected = []
        for t in times:
            i = bisect.bisect_left(sample_times, t) - 1
            expected.append([(float(i), t0 + i)])
        CHECKS.expect(results == expected, mod, "previous-sample lookup: wrong samples")
        CHECKS.expect(all(all_floats(r) for r in results), mod, "previous-sample: not float")
        return seconds / sizes.lookups * 1e6
