"""Sensor storage and range rules against simple reference models."""

from __future__ import annotations

import bisect
import concurrent.futures
import gc
import math
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate import decode_value, encode_value
from telstate._ranges import pack_timestamp, resolve_range
from telstate._samples import SampleBatch, SampleStore, decode_batch

timestamps = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 2.5, 1e9, 5e-324]),
    st.floats(min_value=0, max_value=1e10, allow_nan=False, allow_infinity=False),
)
values = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.binary(max_size=3),
)
bounds = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, -1.0, math.inf, -math.inf, 1.0, 2.0, 2.5]),
    st.floats(min_value=-10, max_value=1e10, allow_nan=False),
)


def _member(ts: float, value: bytes) -> bytes:
    return struct.pack(">d", ts + 0.0) + value


def _lex_range(members: list[bytes], lo: bytes, hi: bytes) -> list[bytes]:
    """ZRANGEBYLEX as Redis defines it, on a sorted list."""

    def above(m: bytes) -> bool:
        return lo == b"-" or (lo != b"+" and (m >= lo[1:] if lo[:1] == b"[" else m > lo[1:]))

    def below(m: bytes) -> bool:
        return hi == b"+" or (hi != b"-" and (m <= hi[1:] if hi[:1] == b"[" else m < hi[1:]))

    return [m for m in members if above(m) and below(m)]


@settings(max_examples=300, deadline=None)
@given(
    samples=st.lists(st.tuples(timestamps, values), max_size=40),
    start=bounds,
    stop=bounds,
    include_previous=st.one_of(st.none(), st.booleans()),
    include_end=st.booleans(),
)
def test_store_matches_redis_lex_semantics(
    samples: list[tuple[float, Any]],
    start: float | None,
    stop: float | None,
    include_previous: bool | None,
    include_end: bool,
) -> None:
    store = SampleStore()
    members: list[bytes] = []
    for ts, value in samples:
        encoded = encode_value(value)
        member = _member(ts, encoded)
        added = store.add(ts + 0.0, encoded)
        pos = bisect.bisect_left(members, member)
        is_new = pos == len(members) or members[pos] != member
        assert added == is_new
        if is_new:
            members.insert(pos, member)
    assert list(store.members()) == members
    assert len(store) == len(members)

    query = resolve_range(start, stop, include_previous, include_end)
    start_lex, stop_lex = query.lex_bounds()
    # What Redis does: ZREVRANGEBYLEX start - LIMIT 0 1, then ZRANGEBYLEX start stop
    expected: list[bytes] = []
    if query.previous:
        before = _lex_range(members, b"-", b"(" + start_lex[1:]) if start_lex != b"+" else members
        expected += before[-1:]
    if query.scan:
        expected += _lex_range(members, start_lex, stop_lex)
    batch = store.query(query)
    assert [(v, t) for v, t in batch.encoded()] == [
        (m[8:], struct.unpack(">d", m[:8])[0]) for m in expected
    ]
    assert decode_batch(batch) == [
        (decode_value(m[8:]), struct.unpack(">d", m[:8])[0]) for m in expected
    ] or any(isinstance(v, float) and math.isnan(v) for _, v in samples)


fixed_size = st.sampled_from(
    [
        st.floats(width=64),
        st.floats(width=32).map(lambda x: np.float32(x).item()),
        st.integers(-32, 127),
        st.integers(0, 255),
        st.integers(-128, 127),
        st.integers(0, 2**16 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**64 - 1),
        st.booleans(),
        st.none(),
    ]
)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), strategy=fixed_size, n=st.integers(0, 60))
def test_bulk_decoding_equals_one_by_one(data: st.DataObject, strategy: Any, n: int) -> None:
    items = [data.draw(strategy) for _ in range(n)]
    encoded = [encode_value(v) for v in items]
    batch = SampleBatch.from_members([_member(float(i), e) for i, e in enumerate(encoded)])
    slow = [(decode_value(e), float(i)) for i, e in enumerate(encoded)]
    fast = decode_batch(batch)
    assert len(fast) == len(slow)
    for (a, ta), (b, tb) in zip(fast, slow, strict=True):
        assert ta == tb
        assert type(a) is type(b)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_bulk_decoding_rejects_corrupt_values_like_one_by_one() -> None:
    good = [encode_value(float(i)) for i in range(20)]
    good[7] = b"\xfe" + good[7][1:]  # reserved header byte
    batch = SampleBatch.from_members([_member(float(i), e) for i, e in enumerate(good)])
    try:
        decode_batch(batch)
    except ValueError as exc:
        assert "header" in str(exc)
    else:
        raise AssertionError("corrupt value decoded")


def test_store_insert_out_of_order_keeps_offsets() -> None:
    store = SampleStore()
    for i in range(1000, 0, -1):
        store.add(float(i), encode_value("x" * (i % 7)))
    batch = store.query(resolve_range(0, None, None, False))
    assert [t for _, t in decode_batch(batch)] == [float(i) for i in range(1, 1001)]
    assert [v for v, _ in decode_batch(batch)] == ["x" * (i % 7) for i in range(1, 1001)]


# --------------------------------------------------------------------------- the collector


def _mixed_batch(n: int) -> SampleBatch:
    """A batch of values of several sizes (decoded one by one), n >= 10 000."""
    members = [pack_timestamp(float(i)) + encode_value("x" * (i % 7)) for i in range(n)]
    return SampleBatch.from_members(members)


@pytest.fixture
def thresholds() -> Iterator[tuple[int, ...]]:
    saved, enabled = gc.get_threshold(), gc.isenabled()
    yield saved
    gc.set_threshold(*saved)
    if enabled:
        gc.enable()


def test_big_decode_pauses_and_restores_young_collections(thresholds: tuple[int, ...]) -> None:
    seen: list[tuple[int, ...]] = []

    def decode(data: bytes) -> Any:
        if not seen:
            seen.append(gc.get_threshold())
        return decode_value(data)

    assert len(decode_batch(_mixed_batch(10_000), decode)) == 10_000
    assert seen[0][0] > 10**6  # paused while it ran
    assert gc.get_threshold() == thresholds and gc.isenabled()


def test_big_decode_leaves_a_program_s_own_gc_settings(thresholds: tuple[int, ...]) -> None:
    gc.disable()
    decode_batch(_mixed_batch(10_000))
    assert not gc.isenabled() and gc.get_threshold() == thresholds
    gc.enable()

    # Thresholds the program sets while a decode runs are the ones it keeps
    def decode(data: bytes) -> Any:
        gc.set_threshold(1234, 5, 6)
        return decode_value(data)

    decode_batch(_mixed_batch(10_000), decode)
    assert gc.get_threshold() == (1234, 5, 6) and gc.isenabled()

    # ... and so is the collector's switch, turned off while a decode runs
    def switch_off(data: bytes) -> Any:
        gc.disable()
        return decode_value(data)

    decode_batch(_mixed_batch(10_000), switch_off)
    assert not gc.isenabled()


def test_concurrent_big_decodes_restore_the_collector_once(thresholds: tuple[int, ...]) -> None:
    batch = _mixed_batch(20_000)
    barrier = threading.Barrier(4)

    def work() -> int:
        barrier.wait(10)
        return len(decode_batch(batch))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: work(), range(4))) == [20_000] * 4
    assert gc.get_threshold() == thresholds and gc.isenabled()
