"""batch_arrays against decode_batch: same values and times, dtype by the documented rule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate import DecodeError, ImmutableKeyError, encode_value
from telstate._arrays import _PAD_FACTOR, _PAD_SLACK, batch_arrays, batches_arrays, values_array
from telstate._codec import ENCODING_PICKLE, decode_value
from telstate._ranges import resolve_range
from telstate._samples import SampleBatch, decode_batch
from telstate.backends import MemoryBackend

# every MessagePack int encoding and the edges between them
EDGE_INTS = [0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -129, -32769, 2**31]
EDGE_INTS += [-(2**31) - 1, 2**32, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]
INTS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.sampled_from(EDGE_INTS))
FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "a\0", "\0b", "ünï", "日本", "🛰"]))
BINARY = st.binary(max_size=8)
NUMPY = st.one_of(
    st.floats(width=32).map(np.float32),
    st.integers(-(2**15), 2**15 - 1).map(np.int16),
    st.integers(0, 2**64 - 1).map(np.uint64),
    st.booleans().map(np.bool_),
    st.sampled_from(["ab", "cd", "é"]).map(np.str_),
)
OBJECTS = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 3)),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
    st.integers(0, 3).map(lambda n: np.arange(n)),
    st.complex_numbers(allow_nan=False),
)
KINDS = [INTS, FLOATS, st.booleans(), TEXT, BINARY, NUMPY, OBJECTS, st.complex_numbers()]
VALUE_LISTS = st.one_of(
    *[st.lists(kind, max_size=30) for kind in KINDS],
    st.lists(st.one_of(INTS, FLOATS), max_size=30),
    st.lists(st.one_of(*KINDS), max_size=30),
)


def _batch(values: list[Any], as_lists: bool = False) -> SampleBatch:
    encoded = [encode_value(v) for v in values]
    times = np.arange(len(values), dtype=np.float64) * 0.5 + 1e9
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    if as_lists:
        return SampleBatch(times.tolist(), b"".join(encoded), ends.tolist())
    return SampleBatch(times, b"".join(encoded), ends)


def _expected_dtype(values: list[Any]) -> Any:
    """The documented rule, restated."""
    if not values:
        return np.float64
    kinds = {type(v) for v in values}
    if kinds == {float}:
        return np.float64
    if kinds == {bool}:
        return np.bool_
    if kinds == {complex}:
        return np.complex128
    if kinds == {int}:
        if max(values) < 2**63:
            return np.int64
        return np.uint64 if min(values) >= 0 else object
    if kinds == {int, float}:
        ok = all(int(float(v)) == v for v in values if type(v) is int)
        return np.float64 if ok else object
    if kinds in ({str}, {bytes}):
        width = max(map(len, values))
        padded = len(values) * width > _PAD_FACTOR * sum(map(len, values)) + _PAD_SLACK
        nul = any(v[-1:] in ("\0", b"\0") for v in values)
        if padded or nul:
            return object
        return np.dtype(f"{'U' if kinds == {str} else 'S'}{max(width, 1)}")
    if all(isinstance(v, np.generic) for v in values):
        dtypes = {v.dtype for v in values}
        if len(dtypes) == 1 and (dtype := dtypes.pop()).itemsize:  # S0 / U0: object
            return dtype
    return object


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float | complex | np.inexact) or isinstance(b, float | complex | np.inexact):
        if a != a and b != b:
            return True
        if a != b:
            return False
        return (
            not isinstance(a, float)
            or not isinstance(b, float)
            or (math.copysign(1, a) == math.copysign(1, b))
        )
    return bool(a == b)


def _check(values: list[Any], as_lists: bool = False) -> np.ndarray[Any, Any]:
    batch = _batch(values, as_lists)
    got = batch_arrays(batch)
    pairs = decode_batch(batch)
    assert got.timestamps.dtype == np.float64
    assert got.timestamps.tolist() == [t for _, t in pairs]
    assert got.values.ndim == 1 and len(got.values) == len(values)
    assert got.values.dtype == np.dtype(_expected_dtype(values)), (got.values.dtype, values)
    items = list(got.values) if got.values.dtype == object else got.values.tolist()
    for item, (value, _) in zip(items, pairs, strict=True):
        assert _same(item, value), (item, value)
    # the per-sample path (values_array) agrees with the bulk one
    again = values_array([v for v, _ in pairs])
    assert again.dtype == got.values.dtype
    assert all(_same(a, b) for a, b in zip(list(again), list(got.values), strict=True))
    return got.values


@settings(max_examples=500, deadline=None)
@given(values=VALUE_LISTS, as_lists=st.booleans())
def test_batch_arrays_match_decode_batch(values: list[Any], as_lists: bool) -> None:
    _check(values, as_lists)


@pytest.mark.parametrize(
    "values",
    [
        ["a" * n for n in (0, 1, 31, 32, 255, 256, 65535, 65536)],
        ["é" * n for n in (1, 31, 32, 200)],
        [b"b" * n for n in (0, 1, 255, 256, 65535, 65536)],
        ["a" * 3, "b" * 3, "c" * 3],  # one size: the fixed-size path sees them first
        ["x"] * 100 + ["y" * 5000],  # too padded for a fixed-width array
        [b"x"] * 100 + [b"y" * 5000],
        [1.0, 2**53, -(2**63)],
        [1.5, 2**53 + 1],
        [2**64 - 1, 0, 1.5],
        [2**63, 1.5],
        [np.float32(1.5)] * 3 + [np.float64(2.5)],
        [np.str_("ab"), np.str_("abc")],
        [np.bytes_(b"")] * 2,
        [1 + 2j, 3.5j],
        [None, None],
        [True, 1],
        [0, False],
    ],
)
def test_batch_arrays_chosen_cases(values: list[Any]) -> None:
    _check(values)


def test_empty_batch() -> None:
    got = batch_arrays(SampleBatch([], b"", []))
    assert got.values.dtype == got.timestamps.dtype == np.float64
    assert len(got.values) == len(got.timestamps) == 0


def _counting(values: list[Any]) -> tuple[np.ndarray[Any, Any], int]:
    calls = 0

    def decode(value: bytes) -> Any:
        nonlocal calls
        calls += 1
        return decode_value(value)

    got = batch_arrays(_batch(values), decode)
    return got.values, calls


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([float(i) for i in range(1000)], np.float64),
        ([float(i) for i in range(999)] + [2**70 / 3], np.float64),
        ([*range(-500, 500), 2**40, -(2**40)], np.int64),  # six int encodings
        ([2**64 - 1 - i for i in range(1000)], np.uint64),
        ([*range(1000), 0.5], np.float64),
        ([i % 2 == 0 for i in range(1000)], np.bool_),
        ([f"state-{i % 7}" * (i % 3) for i in range(1000)], np.dtype("U14")),
        (["é" * (i % 40) for i in range(1000)], np.dtype("U39")),
        ([bytes([i % 255 + 1]) * (i % 300) for i in range(1, 1000)], np.dtype("S299")),
        ([np.float32(i) for i in range(1000)], np.float32),
        ([complex(i, 1) for i in range(1000)], np.complex128),
    ],
)
def test_homogeneous_batches_avoid_per_sample_decoding(values: list[Any], dtype: Any) -> None:
    got, calls = _counting(values)
    assert calls <= 1  # at most one sample decoded, to learn the type of fixed-size values
    assert got.dtype == np.dtype(dtype)
    expected = values_array(values)
    assert expected.dtype == got.dtype and np.array_equal(got, expected)


def test_mixed_batches_decode_each_value() -> None:
    got, calls = _counting([1, "a", None, 2.5])
    assert calls == 4 and got.dtype == object and got.tolist() == [1, "a", None, 2.5]


def test_pickles_are_refused_unless_allowed() -> None:
    pickled = [encode_value(float(i), ENCODING_PICKLE) for i in range(100)]
    batch = SampleBatch(np.arange(100.0), b"".join(pickled), np.cumsum([len(p) for p in pickled]))
    with pytest.raises(DecodeError, match="pickle"):
        batch_arrays(batch)
    got = batch_arrays(batch, lambda value: decode_value(value, allow_pickle=True))
    assert got.values.dtype == np.float64 and got.values.tolist() == [float(i) for i in range(100)]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xcb" + b"\0" * 7,  # a double one byte short
        b"\xff\xa3ab",  # a fixstr shorter than its header says
        b"\xff\xd9\x05abc",
        b"\xff\xc1",  # a type byte MessagePack never uses
        b"\xfe\x01",  # an unknown header byte
        b"\xff",
        b"\xff\xa2\xc3\xa9",  # "é" is fine ...
    ],
)
def test_corrupt_values_raise_as_decode_value_does(data: bytes) -> None:
    values = [encode_value("ok"), data]
    batch = SampleBatch([1.0, 2.0], b"".join(values), np.cumsum([len(v) for v in values]))
    try:
        expected = [decode_value(v) for v in values]
    except DecodeError:
        with pytest.raises(DecodeError):
            batch_arrays(batch)
    else:
        assert batch_arrays(batch).values.tolist() == expected


def test_strings_split_inside_a_character_are_not_glued() -> None:
    # "é" is c3 a9: cut between two fixstrs, the payloads are valid UTF-8 only together
    data = b"\xff\xa1\xc3" + b"\xff\xa1\xa9"
    batch = SampleBatch([1.0, 2.0], data, [3, 6])
    with pytest.raises(DecodeError):
        batch_arrays(batch)


# --------------------------------------------------------------------------- in place
#
# Backends holding samples in the process convert ranges of more than 64 samples
# straight from views of the store's buffers (SampleStore.borrow + fixed_arrays),
# falling back to a copied batch and batch_arrays: the results must not differ, and
# must never share memory with the store.


def _memory(values: list[Any]) -> MemoryBackend:
    backend = MemoryBackend()
    for i, value in enumerate(values):
        backend.add_mutable(b"s", encode_value(value), 1e9 + 0.5 * i)
    return backend


@settings(max_examples=300, deadline=None)
@given(
    values=VALUE_LISTS.filter(bool),
    copies=st.integers(1, 8),
    bounds=st.tuples(st.integers(0, 300), st.integers(0, 300)),
)
def test_memory_arrays_match_the_copied_batch(
    values: list[Any], copies: int, bounds: tuple[int, int]
) -> None:
    values = values * copies  # long enough, often, for the in-place path
    backend = _memory(values)
    lo, hi = sorted(bounds)
    query = resolve_range(1e9 + 0.5 * lo, 1e9 + 0.5 * hi, None, False)
    batch = backend.get_range([b"s"], query)
    assert batch is not None
    expected = batch_arrays(batch)
    got = backend.get_range_arrays([b"s"], query)
    assert got is not None
    assert got.values.dtype == expected.values.dtype
    assert got.timestamps.tolist() == expected.timestamps.tolist()
    assert all(_same(a, b) for a, b in zip(list(got.values), list(expected.values), strict=True))


@pytest.mark.parametrize(
    "values",
    [
        [float(i) for i in range(1000)],
        [i % 2 == 0 for i in range(1000)],
        [2**40 + i for i in range(1000)],
        [np.float32(i) for i in range(1000)],
        [complex(i, 1) for i in range(1000)],
    ],
)
def test_memory_arrays_are_new_arrays(values: list[Any]) -> None:
    backend = _memory(values)
    query = resolve_range(0, None, None, False)
    got = backend.get_range_arrays([b"s"], query)
    assert got is not None and got.values.flags.owndata and got.timestamps.flags.owndata
    assert got.values.flags.writeable and got.timestamps.flags.writeable
    got.values[:] = got.values[::-1]
    got.timestamps[:] = 0.0
    # the store is untouched, and no view of its buffers is left to stop it growing
    backend.add_mutable(b"s", encode_value(values[0]), 2e9)
    again = backend.get_range_arrays([b"s"], query)
    assert again is not None and len(again.values) == 1001
    assert np.array_equal(again.values[:1000], values_array(values))
    assert again.timestamps[0] == 1e9 and again.timestamps[-1] == 2e9


@pytest.mark.parametrize(
    "values",
    [
        [encode_value(float(i), ENCODING_PICKLE) for i in range(100)],  # refused, one size
        [b"\xff\xc1" + bytes(8) for _ in range(100)],  # a type byte MessagePack never uses
    ],
)
def test_memory_arrays_that_fail_release_the_store(values: list[bytes]) -> None:
    assert len(set(map(len, values))) == 1
    backend = MemoryBackend()
    for i, value in enumerate(values):
        backend.add_mutable(b"s", value, float(i))
    query = resolve_range(0, None, None, False)
    with pytest.raises(DecodeError) as caught:
        backend.get_range_arrays([b"s"], query)
    # the error (kept, with its traceback, as a caller may) holds no view of the store
    for i in range(100, 2100):  # the buffers grow (and move) again
        backend.add_mutable(b"s", values[0], float(i))
    assert caught.value.__traceback__ is not None
    batch = backend.get_range([b"s"], query)
    assert batch is not None and len(batch) == 2100


def test_get_ranges_arrays_on_memory() -> None:
    backend = _memory([float(i) for i in range(200)])
    backend.add_mutable(b"t", encode_value("x"), 5.0)
    backend.set_immutable(b"i", encode_value(1))
    query = resolve_range(0, None, None, False)
    got = backend.get_ranges_arrays([[b"s"], [b"missing"], [b"t"]], query)
    assert got[1] is None
    assert got[0] is not None and got[0].values.tolist() == [float(i) for i in range(200)]
    assert got[2] is not None and got[2].values.tolist() == ["x"]
    with pytest.raises(ImmutableKeyError):
        backend.get_ranges_arrays([[b"i"]], query)


# ------------------------------------------------------------------- many batches at once

# Sensors as get_ranges meets them: long runs of one number encoding (joined), others alone
LONG_NUMBERS = st.one_of(
    st.lists(st.floats(), min_size=65, max_size=200),
    st.lists(st.floats(width=32).map(np.float32), min_size=65, max_size=100),
    *[
        st.lists(st.integers(lo, hi), min_size=65, max_size=100)
        for lo, hi in [(128, 255), (256, 65535), (2**16, 2**32 - 1), (-(2**63), -(2**31) - 1)]
    ],
    st.lists(st.integers(2**63, 2**64 - 1), min_size=65, max_size=100),  # uint64: alone
    st.lists(st.integers(2**32, 2**64 - 1), min_size=65, max_size=100),  # mixed 0xcf / 0xd3
)
BATCH_LISTS = st.lists(st.one_of(LONG_NUMBERS, VALUE_LISTS), max_size=8)


@settings(max_examples=200, deadline=None)
@given(value_lists=BATCH_LISTS, as_lists=st.booleans())
def test_batches_arrays_as_each_alone(value_lists: list[list[Any]], as_lists: bool) -> None:
    batches = [_batch(values, as_lists) for values in value_lists]
    got = batches_arrays(batches)
    assert len(got) == len(batches)
    for arrays, batch in zip(got, batches, strict=True):
        alone = batch_arrays(batch)
        assert arrays.values.dtype == alone.values.dtype
        assert arrays.timestamps.tolist() == alone.timestamps.tolist()
        assert len(arrays.values) == len(alone.values)
        assert all(
            _same(a, b) for a, b in zip(list(arrays.values), list(alone.values), strict=True)
        )


def test_batches_of_one_encoding_are_converted_together() -> None:
    doubles = [_batch([float(i + k) for i in range(100)]) for k in range(3)]
    ints = [_batch([2**40 + i for i in range(100)]) for _ in range(2)]
    odd = _batch([1.5] * 99 + [7])  # one int among the doubles: converted alone
    got = batches_arrays([doubles[0], ints[0], odd, doubles[1], ints[1], doubles[2]])
    assert [a.values.dtype for a in got] == [np.float64, np.int64, np.float64] * 2
    assert got[0].values.base is not None and got[0].values.base is got[3].values.base
    assert got[5].values.tolist() == [float(i + 2) for i in range(100)]
    assert got[2].values.tolist() == [1.5] * 99 + [7.0]
    # a value of another encoding hidden in a batch of the right length: alone, as before
    sneaky = SampleBatch(
        doubles[0].times, (b"\xff\xcb" + bytes(8)) * 99 + b"\xff\xd3" + bytes(8), doubles[0].ends
    )
    got = batches_arrays([sneaky, doubles[1]])
    assert got[0].values.dtype == batch_arrays(sneaky).values.dtype
