"""A sensor's samples as plot data for the page (pure, no I/O).

A plot is never sent whole: a 10 M-sample sensor would be hundreds of megabytes
of JSON, and a screen shows at most a few thousand pixels across.  So each
request names a window and a number of buckets (the plot's width in pixels),
and gets back what draws the same picture:

* numeric sensors: :func:`telstate._decimate.points_for_plot`, at most four
  points per bucket (first, last, minimum and maximum: the M4 rule, which
  draws the same line as every sample would), or the raw samples when fewer;
  times as offsets from the window's first point and values to 7 significant
  digits (the plot's resolution is far coarser), so that a full-width plot
  stays near 100 kB at any zoom;
* string and other sensors (states, like ``m000_activity``): the transitions
  of :func:`telstate._decimate.transitions` (the times where the value
  changes), at most :data:`MAX_TRANSITIONS`, drawn as bands of states.

:func:`sensor_arrays` is the one place where the arrays of ``get_range_arrays``
become what a plot draws.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from .. import _text as text
from .._arrays import SampleArrays
from .._decimate import points_for_plot, transitions

__all__ = ["MAX_TRANSITIONS", "is_numeric", "plot_payload", "sensor_arrays", "state_label"]

#: State changes sent for one band plot; past this the page says the plot is cut.
MAX_TRANSITIONS: Final = 2000
_DIGITS: Final = 7


def state_label(value: Any) -> str:
    """A state's text: a string as it is, anything else as one line (arrays summarised)."""
    return text.printable(value) if isinstance(value, str) else text.one_line(value)


def sensor_arrays(
    arrays: SampleArrays,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, Any]]:
    """``(times, values)`` to plot, from ``get_range_arrays``.

    Numbers (not bools) give a float64 value array; any other value makes the
    whole sensor a state sensor, an object array of labels (:func:`state_label`).
    """
    values = arrays.values
    if values.dtype.kind in "iuf":
        return arrays.timestamps, values.astype(np.float64, copy=False)
    labels = np.empty(len(values), dtype=object)
    labels[:] = [state_label(value) for value in values.tolist()]
    return arrays.timestamps, labels


def is_numeric(values: np.ndarray[Any, Any]) -> bool:
    """Whether a value array from :func:`sensor_arrays` is drawn as a line."""
    return bool(values.dtype.kind == "f")


def _round(value: float) -> float | None:
    if not math.isfinite(value):
        return None  # a gap in the line
    return float(f"{value:.{_DIGITS}g}")


def plot_payload(
    times: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    buckets: int,
    start: float | None = None,
    end: float | None = None,
) -> dict[str, Any]:
    """What the page draws for the samples in ``[start, end]`` at `buckets` pixels across.

    Returns a dict with ``kind`` (``'numeric'`` or ``'state'``), ``t0`` (the
    origin of the times), ``t`` (offsets from ``t0``), ``v`` (values or state
    labels), ``count`` (samples in the window) and ``cut`` (whether transitions
    were left out).
    """
    lo = 0 if start is None else int(np.searchsorted(times, start, side="left"))
    hi = len(times) if end is None else int(np.searchsorted(times, end, side="right"))
    count = max(0, hi - lo)
    if is_numeric(values):
        shown_t, shown_v = points_for_plot(times[lo:hi], values[lo:hi], buckets)
        t0 = float(shown_t[0]) if len(shown_t) else (start or 0.0)
        return {
            "kind": "numeric",
            "t0": t0,
            "t": [round(float(t) - t0, 6) for t in shown_t],
            "v": [_round(float(v)) for v in shown_v],
            "count": count,
            "cut": False,
        }
    # a state holds from its change to the next one: the band at the window's start
    # is the state before it, so the change before the window is included
    first = max(0, lo - 1)
    found = transitions(times[first:hi], values[first:hi], limit=MAX_TRANSITIONS + 1)
    change_times = [float(t) for t in found.time]
    labels = [str(v) for v in found.value]
    cut = len(change_times) > MAX_TRANSITIONS
    change_times, labels = change_times[:MAX_TRANSITIONS], labels[:MAX_TRANSITIONS]
    t0 = change_times[0] if change_times else (start or 0.0)
    return {
        "kind": "state",
        "t0": t0,
        "t": [round(t - t0, 6) for t in change_times],
        "v": labels,
        "count": count,
        "cut": cut,
    }
