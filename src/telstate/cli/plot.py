"""``telstate plot SOURCE KEY... -o FILE``: sensors against time, into an image file.

This module reads the samples (each sensor's last sample before ``--st`` too, so
that a value held from before the window is drawn from its start); the figure is
made by :mod:`telstate.cli.figure`, which needs matplotlib, an optional extra
(``telstate[plot]``).  That module is imported only when a plot is drawn, so that
matplotlib costs nothing to the other commands, and its absence is one clear error.
"""

from __future__ import annotations

import argparse

from .._sources import opened, with_views
from .._text import CommandError
from .range import sensor_samples, time_arg

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``telstate plot``."""
    try:
        import matplotlib  # noqa: F401  (the optional extra: checked before any work)
    except ImportError:
        raise CommandError(
            "plotting needs matplotlib, which is not installed: pip install 'telstate[plot]'"
        ) from None
    from .figure import plot  # matplotlib's import, kept off the other commands' start-up

    st, et = time_arg(args.st, "--st"), time_arg(args.et, "--et")
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        series = [
            (key, sensor_samples(ts, key, source, st, et, include_previous=True))
            for key in args.keys
        ]
        plot(series, args.output, title=args.title or source.label, st=st, et=et)
    print(f"wrote {args.output}")
    return 0
