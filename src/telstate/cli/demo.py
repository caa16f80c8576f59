"""``telstate demo``: build the synthetic state in memory, summarise it, maybe save it.

The state is :func:`telstate._demo.build_demo`'s (deterministic for given
``--antennas``, ``--duration`` and ``--seed``); the summary is exactly
``telstate info demo``'s (:func:`telstate.cli.info.summary`), followed by the
build time, and ``--save FILE.rdb`` writes the state as ``telstate copy demo
FILE.rdb`` would.
"""

from __future__ import annotations

import argparse
import os
import time

from .. import _text as text
from .._demo import build_demo
from .._sources import demo_source
from .._text import CommandError
from ..client import TelescopeState
from .copy import write_rdb
from .info import summary

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``telstate demo``."""
    if args.save and os.path.exists(args.save) and not args.force:
        raise CommandError(f"{args.save} exists: use --force to overwrite it")
    ts = TelescopeState()
    start = time.perf_counter()
    build_demo(ts, n_antennas=args.antennas, duration=args.duration, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(summary(demo_source(ts)))
    print(f"\n(built in memory in {elapsed:.2f} s)")
    if args.save:
        start = time.perf_counter()
        written = write_rdb(ts, args.save, force=args.force, label="demo")
        elapsed = time.perf_counter() - start
        print(f"saved {text.plural(written, 'key')} to {args.save} in {elapsed:.2f} s")
    return 0
