"""The ``telstate`` command.

Each subcommand is a function taking the parsed arguments and returning an
exit code; :func:`main` maps user errors (our exceptions, missing files) to
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from ._errors import TelstateError

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import build_demo, summarize
    from .client import TelescopeState

    ts = TelescopeState()
    start = time.perf_counter()
    build_demo(ts, n_antennas=args.antennas, duration=args.duration, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(summarize(ts))
    print(f"\n(built in memory in {elapsed:.2f} s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telstate", description="Inspect and work with MeerKAT telescope states."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="build a synthetic MeerKAT-like telescope state in memory and summarise it"
    )
    demo.add_argument("--antennas", type=int, default=16, help="number of antennas (16)")
    demo.add_argument("--duration", type=float, default=600.0, help="observation length, s (600)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (1)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``telstate`` command with `argv` (default ``sys.argv[1:]``); return its exit code."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (TelstateError, OSError, KeyError, ValueError) as exc:
        print(f"telstate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
