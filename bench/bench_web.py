"""``telstate serve`` in headless chromium: the three figures of issue 15.

1. Time to first render of a 2 k-key state, with a 1 M-sample sensor, opened from an
   RDB file: from the browser's navigation start to the key list shown (the page's
   own ``performance.now()``), and from a click on the big sensor to its plot drawn.
2. Bytes sent for that sensor's plot (goal: under 200 kB at any zoom): the body of
   each ``/api/series`` answer at full range and at windows 10x, 100x, 1000x narrower.
3. Delay from a Redis write to the page's update (goal: <= 100 ms): the write's
   ``time.time()`` against the wall time at which the page applied the update
   (``performance.timeOrigin + performance.now()``, same machine clock), for
   ``--writes`` writes one after another.

Needs chromium, chromium-driver and redis-server (as the browser tests do).  Run:
``python bench/bench_web.py`` (about half a minute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.servers import RedisServer  # noqa: E402
from tests.web_browser import browser, open_key, plots, serving, wait_for  # noqa: E402

from telstate import TelescopeState  # noqa: E402
from telstate.web._listing import key_id  # noqa: E402

BIG = "anc_big_sensor"


def build(path: Path, n_keys: int, n_samples: int) -> None:
    ts = TelescopeState()
    rng = np.random.default_rng(1)
    with ts.pipeline() as p:
        for i in range(n_keys - 1):
            if i % 4 == 0:
                for j in range(10):
                    p.add(f"m{i % 64:03d}_sensor_{i}", float(j), ts=1.5e9 + j)
            else:
                p.set(f"m{i % 64:03d}_attr_{i}", {"value": i, "text": "x" * 20})
    times = 1.5e9 + np.arange(n_samples) * 0.01
    values = np.cumsum(rng.normal(size=n_samples))
    with ts.pipeline() as p:
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            p.add(BIG, v, ts=t)
    ts.save_to_file(path)


def series_bytes(driver: object, n_samples: int) -> list[tuple[str, int]]:
    start, end = 1.5e9, 1.5e9 + n_samples * 0.01
    width = driver.execute_script(  # type: ignore[attr-defined]
        "return document.getElementById('plots').clientWidth - 10"
    )
    results = []
    for factor in (1, 10, 100, 1000):
        span = (end - start) / factor
        lo = start + (end - start - span) / 2
        size = driver.execute_script(  # type: ignore[attr-defined]
            "const r = await fetch(arguments[0]); return (await r.arrayBuffer()).byteLength;",
            f"/api/series?key={key_id(BIG)}&st={lo}&et={lo + span}&buckets={width}",
        )
        results.append((f"1/{factor} of the range", int(size)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=30)
    args = parser.parse_args()
    driver = browser()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.rdb"
            build(path, args.keys, args.samples)
            with serving(str(path)) as url:
                driver.get(url)
                wait_for(
                    lambda: (
                        driver.execute_script("return window.telstateProbe.keysShown") >= args.keys
                    ),
                    "the key list",
                    60,
                )
                first = driver.execute_script("return window.telstateProbe.firstRender")
                open_key(driver, BIG)
                wait_for(lambda: plots(driver), "the plot", 60)
                opened = driver.execute_script(
                    "const p = window.telstateProbe; return p.drawnAt - p.selectedAt;"
                )
                sizes = series_bytes(driver, args.samples)
        print(f"1. first render of {args.keys} keys from an RDB file: {first:.0f} ms")
        print(f"   opening the {args.samples:,}-sample sensor (click to plot): {opened:.0f} ms")
        print("2. bytes of the plot data of that sensor:")
        for label, size in sizes:
            print(f"   {label:>22}: {size / 1000:.1f} kB")
        server = RedisServer()
        ts = TelescopeState(server.url)
        try:
            for i in range(100):
                ts.add("anc_live", float(i), ts=1.5e9 + i)
            with serving(server.url) as url:
                driver.get(url)
                open_key(driver, "anc_live")
                wait_for(lambda: plots(driver), "the live plot")
                time.sleep(0.5)  # the event stream's subscription
                delays = []
                for i in range(args.writes):
                    before = driver.execute_script("return window.telstateProbe.updates")
                    written = time.time()
                    ts.add("anc_live", float(i), ts=written)
                    wait_for(
                        lambda b=before: (
                            driver.execute_script("return window.telstateProbe.updates") > b
                        ),
                        "an update",
                    )
                    at = driver.execute_script("return window.telstateProbe.lastUpdate.at")
                    delays.append(at / 1e3 - written)
                    time.sleep(0.05)
        finally:
            ts.backend.close()
            server.close()
        ms = sorted(d * 1e3 for d in delays)
        print(
            f"3. Redis write -> page updated ({len(ms)} writes): "
            f"median {statistics.median(ms):.1f} ms, "
            f"90th percentile {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, max {ms[-1]:.1f} ms"
        )
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
