"""``telstate plot SOURCE KEY... -o FILE``: sensors against time, into an image file.

This module reads the samples (each sensor's last sample before ``--st`` too, so
that a value held from before the window is drawn from its start) as arrays and
decimates them to what a figure can show: a numeric sensor of more than
``4 * PLOT_BUCKETS`` samples becomes, per time bucket (narrower than a pixel),
its first, lowest, highest and last samples, which draw the same line; a state
sensor becomes its changes of state, which draw the same bands.  A plot of ten
million samples then draws about 8,000 points.  The figure is
made by :mod:`telstate.cli.figure`, which needs matplotlib, an optional extra
(``telstate[plot]``).  That module is imported only when a plot is drawn, so that
matplotlib costs nothing to the other commands, and its absence is one clear error.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._arrays import SampleArrays
from .._decimate import points_for_plot, transitions
from .._sources import opened, with_views
from .._text import CommandError
from .range import sensor_arrays, time_arg

__all__ = ["PLOT_BUCKETS", "decimated", "run"]

#: Time buckets across a plot: more than the figure's width in pixels.
PLOT_BUCKETS = 2000


def decimated(arrays: SampleArrays) -> list[tuple[Any, float]]:
    """The ``(value, timestamp)`` samples that draw `arrays` as all of them would."""
    values, times = arrays
    if len(times) > 4 * PLOT_BUCKETS:
        if values.dtype.kind in "iuf":  # numbers (not bools): the envelope of each bucket
            times, values = points_for_plot(times, values, PLOT_BUCKETS)
        else:  # states, and anything else: each change
            times, values = transitions(times, values)
    return list(zip(values.tolist(), times.tolist(), strict=True))


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
            (key, decimated(sensor_arrays(ts, key, source, st, et, include_previous=True)))
            for key in args.keys
        ]
        plot(series, args.output, title=args.title or source.label, st=st, et=et)
    print(f"wrote {args.output}")
    return 0
