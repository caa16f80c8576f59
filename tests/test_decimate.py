"""Decimation (envelope, transitions, plot points) against naive per-bucket references."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate._decimate import Envelope, envelope, points_for_plot, transitions

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(width=64)
TIMES = st.floats(min_value=0, max_value=1e6, allow_nan=False)
BOUNDS = st.one_of(st.none(), st.floats(min_value=-10, max_value=1e6 + 10, allow_nan=False))


@st.composite
def samples(
    draw: st.DrawFn, values: st.SearchStrategy[Any] = FLOATS
) -> tuple[list[float], list[Any]]:
    """Sorted timestamps (with repeats) and as many values."""
    times = sorted(draw(st.lists(st.one_of(TIMES, st.sampled_from([0.0, 1.0, 5.0])), max_size=60)))
    return times, draw(st.lists(values, min_size=len(times), max_size=len(times)))


def _edges(lo: float, hi: float, k: int) -> list[float]:
    edges = np.minimum(lo + (hi - lo) * (np.arange(k + 1) / k), hi)
    edges[-1] = hi
    return edges.tolist()  # type: ignore[no-any-return]


def _buckets(times: list[float], k: int, start: float | None, end: float | None) -> list[list[int]]:
    """Sample indices per bucket, by the documented rule, one comparison at a time."""
    if not times and (start is None or end is None):
        return []
    lo = times[0] if start is None else start
    hi = times[-1] if end is None else end
    if hi < lo:
        return []
    edges = _edges(lo, hi, k)
    out = []
    for i in range(k):
        last = i == k - 1
        out.append(
            [
                j
                for j, t in enumerate(times)
                if edges[i] <= t and (t < edges[i + 1] or (last and t <= hi))
            ]
        )
    return out


def _nan_min(xs: list[Any], pick: Any) -> Any:
    real = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return pick(real) if real else math.nan


def _reference_envelope(
    times: list[float], values: list[Any], k: int, start: float | None, end: float | None
) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {f: [] for f in Envelope._fields}
    lo = times[0] if start is None and times else start
    hi = times[-1] if end is None and times else end
    edges = _edges(lo, hi, k) if lo is not None and hi is not None and hi >= lo else []
    for i, members in enumerate(_buckets(times, k, start, end)):
        if not members:
            continue
        vs = [int(values[j]) if isinstance(values[j], bool) else values[j] for j in members]
        rows["start"].append(edges[i])
        rows["first_time"].append(times[members[0]])
        rows["last_time"].append(times[members[-1]])
        rows["first"].append(vs[0])
        rows["last"].append(vs[-1])
        rows["minimum"].append(_nan_min(vs, min))
        rows["maximum"].append(_nan_min(vs, max))
        rows["count"].append(len(members))
    return rows


def _check_envelope(got: Envelope, expected: dict[str, list[Any]], dtype: Any) -> None:
    for name in Envelope._fields:
        array = getattr(got, name)
        assert isinstance(array, np.ndarray) and array.ndim == 1, name
        want = np.array(expected[name], dtype=array.dtype)
        np.testing.assert_array_equal(array, want, err_msg=name)
        if array.dtype.kind == "f" and name not in ("minimum", "maximum"):
            # assert_array_equal treats -0.0 and 0.0 alike: these are the samples themselves
            assert (np.signbit(array) == np.signbit(want)).all(), name
    for name in ("start", "first_time", "last_time"):
        assert getattr(got, name).dtype == np.float64
    assert got.count.dtype == np.int64
    for name in ("first", "last", "minimum", "maximum"):
        assert getattr(got, name).dtype == dtype, name


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(samples(FLOATS), samples(INT64), samples(st.booleans())),
    k=st.integers(1, 12),
    start=BOUNDS,
    end=BOUNDS,
)
def test_envelope_matches_reference(
    data: tuple[list[float], list[Any]], k: int, start: float | None, end: float | None
) -> None:
    times, values = data
    array = np.array(values, dtype=object).astype(
        float if any(type(v) is float for v in values) else int
    )
    if values and all(type(v) is bool for v in values):
        array = np.array(values, dtype=bool)
    if start is not None and end is not None and end < start:
        with pytest.raises(ValueError, match="before start"):
            envelope(times, array, k, start, end)
        return
    got = envelope(times, array, k, start, end)
    dtype = np.int64 if array.dtype == bool else array.dtype
    _check_envelope(got, _reference_envelope(times, values, k, start, end), dtype)
    if start is None and end is None and times:
        assert got.count.sum() == len(times)  # the default range covers every sample


def test_envelope_nans() -> None:
    nan = math.nan
    got = envelope([0, 1, 2, 3, 4, 5], [nan, nan, 1.0, nan, nan, 3.0], 3)
    np.testing.assert_array_equal(got.minimum, [nan, 1.0, 3.0])
    np.testing.assert_array_equal(got.maximum, [nan, 1.0, 3.0])
    np.testing.assert_array_equal(got.first, [nan, 1.0, nan])
    np.testing.assert_array_equal(got.last, [nan, nan, 3.0])
    np.testing.assert_array_equal(got.count, [2, 2, 2])


def test_envelope_empty_and_single() -> None:
    empty = envelope([], np.array([], np.float32), 5)
    assert all(len(a) == 0 for a in empty)
    assert empty.minimum.dtype == np.float32 and empty.start.dtype == np.float64
    assert len(envelope([], [], 5, start=0.0, end=10.0).count) == 0
    one = envelope([7.0], [2.5], 10)
    assert one.start.tolist() == [7.0] and one.count.tolist() == [1]
    assert one.first.tolist() == one.last.tolist() == one.minimum.tolist() == [2.5]


def test_envelope_one_bucket_and_outside() -> None:
    times = np.arange(10.0)
    got = envelope(times, times * 2, 1)
    assert got.count.tolist() == [10] and got.minimum.tolist() == [0.0]
    assert got.maximum.tolist() == [18.0] and got.last_time.tolist() == [9.0]
    # a range wider than the data: only the buckets holding samples
    wide = envelope(times, times, 4, start=-100.0, end=100.0)
    assert wide.start.tolist() == [0.0] and wide.count.tolist() == [10]
    # a range beside the data: nothing
    assert len(envelope(times, times, 4, start=50.0, end=60.0).count) == 0
    assert len(envelope(times, times, 4, start=50.0).count) == 0  # default end before start
    # a range inside the data, both ends included
    inner = envelope(times, times, 2, start=2.0, end=6.0)
    assert inner.count.tolist() == [2, 3] and inner.last.tolist() == [3.0, 6.0]


def test_envelope_ints_and_bools_keep_exact_values() -> None:
    big = np.array([2**63 - 1, -(2**63), 5, 2**62 + 1], np.int64)
    got = envelope([0, 1, 2, 3], big, 1)
    assert got.minimum.tolist() == [-(2**63)] and got.maximum.tolist() == [2**63 - 1]
    assert got.minimum.dtype == np.int64
    unsigned = envelope([0, 1], np.array([2**64 - 1, 3], np.uint64), 1)
    assert unsigned.maximum.tolist() == [2**64 - 1] and unsigned.maximum.dtype == np.uint64
    flags = envelope([0, 1, 2, 3], [True, False, True, True], 2)
    assert flags.minimum.tolist() == [0, 1] and flags.first.dtype == np.int64


def test_envelope_sorts_unsorted_input() -> None:
    got = envelope([3.0, 1.0, 2.0, 0.0], [30.0, 10.0, 20.0, 0.0], 2)
    assert got.first.tolist() == [0.0, 20.0] and got.last_time.tolist() == [1.0, 3.0]


def test_envelope_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="buckets"):
        envelope([0.0], [1.0], 0)
    with pytest.raises(ValueError, match="2 timestamps but 1 values"):
        envelope([0.0, 1.0], [1.0], 3)
    with pytest.raises(TypeError, match="numbers or booleans"):
        envelope([0.0, 1.0], ["a", "b"], 3)
    with pytest.raises(TypeError, match="numbers or booleans"):
        envelope([0.0], np.array([1.0], dtype=object), 3)
    with pytest.raises(ValueError, match="NaN"):
        envelope([0.0, math.nan, 1.0], [1.0, 2.0, 3.0], 3)
    with pytest.raises(ValueError, match="NaN"):
        envelope([math.nan], [1.0], 3)
    with pytest.raises(ValueError, match="finite"):
        envelope([0.0], [1.0], 3, end=math.inf)
    with pytest.raises(ValueError, match="one-dimensional"):
        envelope([[0.0]], [[1.0]], 3)


# --------------------------------------------------------------------------- transitions


def _reference_transitions(
    times: list[float], values: list[Any], start: float | None, end: float | None
) -> list[tuple[float, Any]]:
    if not times:
        return []
    lo = times[0] if start is None else start
    hi = times[-1] if end is None else end
    inside = [(t, v) for t, v in zip(times, values, strict=True) if lo <= t <= hi]
    out = []
    for i, (t, v) in enumerate(inside):
        prev = inside[i - 1][1] if i else None
        same_nan = isinstance(v, float) and isinstance(prev, float) and v != v and prev != prev
        if i == 0 or (v != prev and not same_nan):
            out.append((t, v))
    return out


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        samples(st.sampled_from(["on", "off", "", "ünï"])),
        samples(st.sampled_from([0.0, 1.0, math.nan])),
        samples(st.integers(0, 2)),
        samples(st.sampled_from([b"x", b"y"])),
        samples(st.one_of(st.none(), st.integers(0, 1), st.text(max_size=1))),
    ),
    start=BOUNDS,
    end=BOUNDS,
    limit=st.one_of(st.none(), st.integers(0, 5)),
)
def test_transitions_match_reference(
    data: tuple[list[float], list[Any]], start: float | None, end: float | None, limit: int | None
) -> None:
    times, values = data
    kinds = {type(v) for v in values}
    array = np.array(values, dtype=object if len(kinds) > 1 or kinds == {type(None)} else None)
    if start is not None and end is not None and end < start:
        with pytest.raises(ValueError):
            transitions(times, array, start, end, limit)
        return
    got = transitions(times, array, start, end, limit)
    expected = _reference_transitions(times, values, start, end)
    if limit is not None:
        expected = expected[:limit]
    assert got.time.dtype == np.float64
    assert got.time.tolist() == [t for t, _ in expected]
    assert [repr(v) for v in got.value.tolist()] == [repr(v) for _, v in expected]


def test_transitions_of_arrays_and_containers() -> None:
    values = np.empty(5, object)
    values[:] = [np.arange(3), np.arange(3), [np.zeros(2)], [np.zeros(2)], [np.ones(2)]]
    got = transitions([0, 1, 2, 3, 4], values)
    assert got.time.tolist() == [0.0, 2.0, 4.0]
    nan_arrays = np.empty(2, object)
    nan_arrays[:] = [np.array([math.nan]), np.array([math.nan])]
    assert transitions([0, 1], nan_arrays).time.tolist() == [0.0]


def test_transitions_paging_with_limit() -> None:
    times = np.arange(10.0)
    values = np.array(["a", "b"] * 5)
    first = transitions(times, values, limit=4)
    assert first.time.tolist() == [0.0, 1.0, 2.0, 3.0]
    rest = transitions(times, values, start=float(first.time[-1]))
    assert rest.time.tolist() == list(np.arange(3.0, 10.0))
    assert len(transitions(times, values, limit=0).time) == 0
    with pytest.raises(ValueError, match="limit"):
        transitions(times, values, limit=-1)


def test_transitions_empty() -> None:
    got = transitions([], np.array([], "U3"))
    assert len(got.time) == 0 and got.value.dtype == np.dtype("U3")


# --------------------------------------------------------------------------- plot points


def _reference_points(times: list[float], values: list[Any], k: int) -> list[int]:
    if len(times) <= 4 * k:
        return list(range(len(times)))
    picks: list[int] = []
    for members in _buckets(times, k, None, None):
        if not members:
            continue
        vs = [values[j] for j in members]
        chosen = {members[0], members[-1]}
        for pick in (min, max):
            target = _nan_min(vs, pick)
            equal = [j for j, v in zip(members, vs, strict=True) if v == target]
            chosen.add(equal[0] if equal else members[0])
        picks.extend(sorted(chosen))
    return picks


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(samples(FLOATS), samples(INT64)), k=st.integers(1, 6))
def test_points_for_plot_match_reference(data: tuple[list[float], list[Any]], k: int) -> None:
    times, values = data
    array = np.array(values, dtype=float if any(type(v) is float for v in values) else np.int64)
    got_t, got_v = points_for_plot(times, array, k)
    picks = _reference_points(times, array.tolist(), k)
    assert len(got_t) <= max(4 * k, 0) or len(times) <= 4 * k
    assert got_t.dtype == np.float64 and got_v.dtype == array.dtype
    assert got_t.tolist() == [times[j] for j in picks]
    np.testing.assert_array_equal(got_v, array[picks])


def test_points_for_plot_draws_the_envelope() -> None:
    rng = np.random.default_rng(7)
    times = np.sort(rng.uniform(0, 1000, 5000))
    values = rng.normal(size=5000)
    values[100:200] = math.nan
    got_t, got_v = points_for_plot(times, values, 50)
    assert len(got_t) <= 200 and (np.diff(got_t) >= 0).all()
    env = envelope(times, values, 50)
    # every bucket's extremes and ends are among the points
    for name in ("minimum", "maximum", "first", "last"):
        assert np.isin(getattr(env, name)[~np.isnan(getattr(env, name))], got_v).all(), name
    assert np.isin(env.first_time, got_t).all() and np.isin(env.last_time, got_t).all()


def test_points_for_plot_small_and_bools() -> None:
    t = np.array([0.0, 1.0])
    got_t, got_v = points_for_plot(t, np.array([True, False]), 1)
    assert got_t.tolist() == [0.0, 1.0] and got_v.tolist() == [1, 0]
    assert got_t is not t
    got_t, got_v = points_for_plot([], np.array([], np.float64), 3)
    assert len(got_t) == len(got_v) == 0
    with pytest.raises(ValueError, match="buckets"):
        points_for_plot(t, t, 0)
    with pytest.raises(TypeError):
        points_for_plot(t, ["a", "b"], 3)
