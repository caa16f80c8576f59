"""Decimation of sensor data for display: a few thousand points that draw like millions.

A plot ``W`` pixels wide shows at most ``W`` distinct x positions, so a sensor of
millions of samples is cut into ``buckets`` equal-width time buckets and each
non-empty bucket is summarised by its first, last, smallest and largest sample (an
*envelope*).  A polyline through first, minimum, maximum and last of every bucket,
in time order, lights the same pixel columns as a polyline through all the samples:
each column's vertical extent comes from the minimum and maximum, and the joins
between columns from the first and last samples (the "M4" reduction).  State
sensors (strings, enums) are summarised instead by their changes of value.

Bucket ``i`` of ``k`` over ``[start, end]`` holds the samples whose time ``t`` has
``edges[i] <= t < edges[i + 1]``, with
``edges = minimum(start + (end - start) * (arange(k + 1) / k), end)`` and
``edges[k] = end``; the last bucket also holds ``t == end``.  When ``end == start``,
the samples at that time are all in the last bucket.

Samples are in time order (re-sorted, stably, if they are not), so the edges split
them into contiguous slices found with one binary search per edge
(:func:`numpy.searchsorted`: O(k log n)) and each statistic is one
:meth:`numpy.ufunc.reduceat` over those slices.  No Python loop visits a bucket or
a sample.  Minima and maxima use :func:`numpy.fmin` / :func:`numpy.fmax`, which
skip NaNs: a bucket of only NaNs has NaN extremes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import encode_value
from ._errors import EncodeError

__all__ = ["Envelope", "Transitions", "envelope", "points_for_plot", "transitions"]

_Array = NDArray[Any]


class Envelope(NamedTuple):
    """Per non-empty time bucket (ascending), of a numeric sensor.

    Attributes
    ----------
    start
        Start time of the bucket.
    first_time, last_time
        Times of the first and last samples in the bucket.
    first, last
        Values of the first and last samples in the bucket.
    minimum, maximum
        Smallest and largest values in the bucket, NaNs ignored (NaN when the bucket
        holds only NaNs).
    count
        Number of samples in the bucket (at least 1).

    Value arrays have the dtype of the input values, except that booleans become
    int64 0 / 1.
    """

    start: NDArray[np.float64]
    first_time: NDArray[np.float64]
    last_time: NDArray[np.float64]
    first: _Array
    last: _Array
    minimum: _Array
    maximum: _Array
    count: NDArray[np.int64]  # type: ignore[assignment]  # shadows tuple.count, as specified


class Transitions(NamedTuple):
    """The changes of value of a sensor: the first sample, then each sample that differs.

    Attributes
    ----------
    time
        Times of the changes, ascending.
    value
        The value from each change on.
    """

    time: NDArray[np.float64]
    value: _Array


def _prepare(timestamps: ArrayLike, values: ArrayLike) -> tuple[NDArray[np.float64], _Array]:
    """Timestamps (float64) and values as 1-D arrays of equal length, in time order."""
    times = np.asarray(timestamps, dtype=np.float64)
    array = np.asarray(values)
    if times.ndim != 1 or array.ndim != 1:
        raise ValueError("timestamps and values must be one-dimensional")
    if len(times) != len(array):
        raise ValueError(f"{len(times)} timestamps but {len(array)} values")
    if len(times) and not (times[1:] >= times[:-1]).all():
        # NaN compares false, so a NaN anywhere (but alone) lands here too.
        if np.isnan(times).any():
            raise ValueError("timestamps must not be NaN")
        order = np.argsort(times, kind="stable")
        times, array = times[order], array[order]
    elif len(times) == 1 and math.isnan(times[0]):
        raise ValueError("timestamps must not be NaN")
    return times, array


def _numeric(values: _Array) -> _Array:
    """Values that can be ordered as numbers: booleans as int64, others unchanged."""
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind not in "iuf":
        raise TypeError(f"values must be numbers or booleans, not {values.dtype}")
    return values


def _bounds(
    times: NDArray[np.float64], start: float | None, end: float | None
) -> tuple[float, float] | None:
    """The [start, end] range to use, or None if it is empty (after defaults)."""
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and not math.isfinite(bound):
            raise ValueError(f"{name} must be finite, not {bound}")
    if start is not None and end is not None and end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    if not len(times) and (start is None or end is None):
        return None
    lo = float(times[0]) if start is None else float(start)
    hi = float(times[-1]) if end is None else float(end)
    return None if hi < lo else (lo, hi)


def _split(
    times: NDArray[np.float64], lo: float, hi: float, buckets: int
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Bucket start times and the index of the first sample of each bucket (and one past)."""
    # Clipped: rounding must not push an edge past the end (the slices would overlap).
    edges = np.minimum(lo + (hi - lo) * (np.arange(buckets + 1) / buckets), hi)
    edges[-1] = hi
    first = np.empty(buckets + 1, np.intp)
    first[:-1] = np.searchsorted(times, edges[:-1], "left")
    first[-1] = np.searchsorted(times, hi, "right")
    return edges[:-1], first


def _check_buckets(buckets: int) -> None:
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")


def _empty_envelope(values: _Array) -> Envelope:
    none = np.empty(0, np.float64)
    empty = np.empty(0, values.dtype)
    return Envelope(none, none, none.copy(), empty, empty.copy(), empty.copy(), empty.copy(),
                    np.empty(0, np.int64))  # fmt: skip


def envelope(
    timestamps: ArrayLike,
    values: ArrayLike,
    buckets: int,
    start: float | None = None,
    end: float | None = None,
) -> Envelope:
    """First, last, minimum and maximum of a numeric sensor per equal-width time bucket.

    Parameters
    ----------
    timestamps
        Sample times (sorted here, stably, if they are not in order).
    values
        Sample values, numbers or booleans (treated as 0 and 1).
    buckets
        Number of equal-width buckets over ``[start, end]``.
    start, end
        The time range, both ends included; samples outside it are ignored.  They
        default to the first and last timestamps.

    Returns
    -------
    Envelope
        One entry per non-empty bucket, ascending.  Empty when no sample is in the
        range (or when a default bound puts ``end`` before ``start``).

    Raises
    ------
    ValueError
        If `buckets` is below 1, the lengths differ, the arrays are not 1-D, a
        timestamp is NaN, a bound is not finite, or `end` is before `start`.
    TypeError
        If the values are not numbers or booleans.
    """
    _check_buckets(buckets)
    times, raw = _prepare(timestamps, values)
    array = _numeric(raw)
    span = _bounds(times, start, end)
    if span is None:
        return _empty_envelope(array)
    return _envelope(times, array, buckets, *span)


def _envelope(
    times: NDArray[np.float64], array: _Array, buckets: int, start: float, end: float
) -> Envelope:
    starts, first = _split(times, start, end, buckets)
    counts = np.diff(first)
    full = counts > 0
    if not full.any():
        return _empty_envelope(array)
    lo = first[:-1][full]  # first sample of each non-empty bucket
    counts = counts[full]
    hi = lo + counts - 1  # its last sample
    # reduceat over the samples in range: the slices between consecutive non-empty
    # buckets' first samples are exactly the buckets (the empty ones hold nothing).
    inside = array[lo[0] : hi[-1] + 1]
    offsets = lo - lo[0]
    return Envelope(
        start=starts[full],
        first_time=times[lo],
        last_time=times[hi],
        first=array[lo],
        last=array[hi],
        minimum=np.fmin.reduceat(inside, offsets),
        maximum=np.fmax.reduceat(inside, offsets),
        count=counts.astype(np.int64),
    )


def _changes(values: _Array) -> NDArray[np.bool_]:
    """Whether each sample differs from the one before (the first always does)."""
    change = np.ones(len(values), bool)
    if len(values) < 2:
        return change
    after, before = values[1:], values[:-1]
    if values.dtype.hasobject:
        change[1:] = _differ_objects(after, before).astype(bool)
    elif values.dtype.kind in "fc":
        # NaN != NaN, but a run of NaNs is one state, not a change per sample.
        change[1:] = (after != before) & ~(np.isnan(after) & np.isnan(before))
    else:
        change[1:] = after != before
    return change


def _differ(a: Any, b: Any) -> bool:
    """Whether two Python values differ (arrays compared as wholes, NaN equal to NaN)."""
    if a is b:
        return False
    if type(a) is not type(b):
        return True
    if isinstance(a, np.ndarray):
        return not (a.shape == b.shape and a.dtype == b.dtype and bool(_same_array(a, b)))
    try:
        return bool(a != b) and not bool(a != a and b != b)  # NaN-like scalars are equal
    except (ValueError, TypeError):  # e.g. containers holding arrays: compare the encodings
        try:
            return encode_value(a) != encode_value(b)
        except EncodeError:
            return True


def _same_array(a: _Array, b: _Array) -> bool:
    try:
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    except TypeError:
        return bool(np.array_equal(a, b))


_differ_objects = np.frompyfunc(_differ, 2, 1)


def transitions(
    timestamps: ArrayLike,
    values: ArrayLike,
    start: float | None = None,
    end: float | None = None,
    limit: int | None = None,
) -> Transitions:
    """The changes of value of a (string, state or any other) sensor.

    Parameters
    ----------
    timestamps
        Sample times (sorted here, stably, if they are not in order).
    values
        Sample values of any kind.  NaN counts as equal to NaN; numpy arrays held in
        an object array are compared as wholes.
    start, end
        The time range, both ends included; samples outside it are ignored.  They
        default to the first and last timestamps.
    limit
        At most this many changes are returned: the first `limit` ones in time.
        A result of exactly `limit` changes may therefore be cut short; to read on,
        call again with `start` set to the last time returned (that change is
        reported again, as the first sample of the new range).  None: no limit.

    Returns
    -------
    Transitions
        The first sample in the range, then every sample whose value differs from
        the sample before it.

    Raises
    ------
    ValueError
        If the lengths differ, the arrays are not 1-D, a timestamp is NaN, a bound
        is not finite, `end` is before `start`, or `limit` is negative.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    times, array = _prepare(timestamps, values)
    span = _bounds(times, start, end)
    if span is None:
        return Transitions(np.empty(0, np.float64), array[:0].copy())
    lo = int(np.searchsorted(times, span[0], "left"))
    hi = int(np.searchsorted(times, span[1], "right"))
    times, array = times[lo:hi], array[lo:hi]
    where = np.flatnonzero(_changes(array))
    if limit is not None:
        where = where[:limit]
    return Transitions(times[where], array[where])


def points_for_plot(
    timestamps: ArrayLike, values: ArrayLike, buckets: int
) -> tuple[NDArray[np.float64], _Array]:
    """A polyline of at most ``4 * buckets`` points that draws like all the samples.

    Parameters
    ----------
    timestamps
        Sample times (sorted here, stably, if they are not in order).
    values
        Sample values, numbers or booleans (treated as 0 and 1).
    buckets
        Number of equal-width buckets between the first and last timestamps
        (typically the plot's width in pixels).

    Returns
    -------
    times, values
        The samples themselves when there are at most ``4 * buckets``; otherwise,
        for each non-empty bucket, its first, minimum, maximum and last samples in
        time order, each sample once (the first minimum and the first maximum
        when there are ties; the first sample for a bucket of only NaNs).

    Raises
    ------
    ValueError
        If `buckets` is below 1, the lengths differ, the arrays are not 1-D or a
        timestamp is NaN.
    TypeError
        If the values are not numbers or booleans.
    """
    _check_buckets(buckets)
    times, raw = _prepare(timestamps, values)
    array = _numeric(raw)
    if len(times) <= 4 * buckets:
        return np.array(times), np.array(array)  # copies: never the caller's arrays
    env = _envelope(times, array, buckets, float(times[0]), float(times[-1]))
    counts = env.count
    lo = np.cumsum(counts) - counts  # every sample is in a bucket: no gaps
    picks = np.empty((len(counts), 4), np.intp)
    picks[:, 0] = lo
    picks[:, 1] = _first_equal(array, env.minimum, lo, counts)
    picks[:, 2] = _first_equal(array, env.maximum, lo, counts)
    picks[:, 3] = lo + counts - 1
    picks.sort(axis=1)
    keep = np.ones(picks.shape, bool)
    keep[:, 1:] = picks[:, 1:] != picks[:, :-1]
    chosen = picks[keep]
    return times[chosen], array[chosen]


def _first_equal(
    array: _Array, targets: _Array, lo: NDArray[np.intp], counts: NDArray[np.int64]
) -> NDArray[np.intp]:
    """Per bucket, the first index whose value equals the bucket's target (else its first)."""
    hits = np.flatnonzero(array == np.repeat(targets, counts))
    pos = np.searchsorted(hits, lo, "left")
    found = np.minimum(pos, len(hits) - 1) if len(hits) else pos
    candidate = hits[found] if len(hits) else lo
    ok = (pos < len(hits)) & (candidate < lo + counts)
    return np.where(ok, candidate, lo)
