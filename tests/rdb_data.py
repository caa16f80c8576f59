"""A telescope state with every kind of key and value encoding, for RDB tests."""

from __future__ import annotations

import numpy as np

import telstate


def fill(ts: telstate.TelescopeState) -> None:
    """Write keys that exercise every RDB encoding a server uses for telstate data."""
    ts["small_int"] = 1
    ts["text"] = "x" * 100  # long enough for LZF, compressible
    ts["random_bytes"] = np.random.default_rng(1).bytes(300)  # incompressible
    ts["array"] = np.arange(20000.0).reshape(100, 200)  # big, LZF-compressed
    ts["nested"] = {"a": (1, 2.5, "three"), "b": [None, True, 1 - 2j]}
    ts.view("1556012345")["obs_params"] = {"observer": "ghost", "n": 3}
    for i in range(10):  # small sorted set: listpack / ziplist
        ts.add("sensor_small", float(i), ts=1e9 + i)
    with ts.pipeline() as batch:
        for i in range(3000):  # big sorted set of fixed-size members
            batch.add("sensor_big", i * 0.5, ts=1e9 + i)
        for i in range(500):  # big sorted set of varying members
            batch.add("activity", ["slew", "track", "scan_ready"][i % 3] * (1 + i % 2), ts=1e9 + i)
        for i in range(200):  # samples sharing timestamps
            batch.add("same_time", i, ts=1e9 + i // 10)
    for i in range(5):  # small hash
        ts.set_indexed("idx_small", (f"m{i:03d}", "h"), complex(i, -i))
    for i in range(700):  # big hash
        ts.set_indexed("idx_big", i, np.full(3, i, np.float32))
