"""The behaviour suite: every public TelescopeState method, on every backend.

Written once against the sync API; the ``ts`` fixture (conftest.py) supplies
one TelescopeState per backend.  Expected results come from the documented
semantics (README: the key types, get_range's rules), never from running the code under test.

On ``rdb`` and ``aio-rdb`` every read is answered by an RDB file of the state written so
far, opened read-only (tests/rdb_reopen.py).  A file never changes, so tests whose subject
is a wait woken by a later write carry the ``live`` marker and are skipped there.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import telstate
from telstate import (
    ENCODING_MSGPACK,
    ENCODING_PICKLE,
    CancelledError,
    DecodeError,
    EncodeError,
    ImmutableKeyError,
    InvalidTimestampError,
    KeyType,
    TelescopeState,
    TimeoutError,
)

from .aio_facade import SyncFacade

# --------------------------------------------------------------------------- immutables


def test_attribute_round_trip(ts: TelescopeState) -> None:
    ts.add("n_chans", 32768, immutable=True)
    assert ts["n_chans"] == 32768
    assert ts.get("n_chans") == 32768
    assert ts.key_type("n_chans") == KeyType.IMMUTABLE
    assert "n_chans" in ts
    assert ts.exists("n_chans")


def test_attribute_values_of_every_kind(ts: TelescopeState) -> None:
    values: dict[str, Any] = {
        "none": None,
        "int": -(2**63),
        "float": 1.5,
        "str": "ünïcode",
        "bytes": b"\x00\xff",
        "tuple": (1, (2, "x")),
        "list": [1, [2.5, None]],
        "dict": {"a": 1, "b": [1, 2]},
        "complex": 1 - 2j,
        "scalar": np.float32(2.5),
    }
    for key, value in values.items():
        ts[key] = value
    for key, value in values.items():
        got = ts[key]
        assert type(got) is type(value)
        assert got == value
    array = np.arange(12, dtype=">i2").reshape(3, 4)
    ts["array"] = array
    got_array = ts["array"]
    assert got_array.dtype == array.dtype
    np.testing.assert_array_equal(got_array, array)


def test_set_same_value_again_is_accepted(ts: TelescopeState) -> None:
    ts["x"] = {"a": (1, 2)}
    ts["x"] = {"a": (1, 2)}
    ts.set("x", {"a": (1, 2)})
    assert ts["x"] == {"a": (1, 2)}


def test_set_str_and_bytes_alike_is_accepted(ts: TelescopeState) -> None:
    ts["x"] = "abc"
    ts["x"] = b"abc"  # equal as UTF-8
    assert ts["x"] == "abc"


def test_change_immutable_is_refused(ts: TelescopeState) -> None:
    ts["no_change"] = 1234
    with pytest.raises(ImmutableKeyError, match="no_change"):
        ts["no_change"] = 456
    with pytest.raises(ImmutableKeyError):
        ts.add("no_change", 1234.0, immutable=True)  # float is not int
    assert ts["no_change"] == 1234


def test_refusal_says_when_the_stored_value_cannot_be_decoded(sync_ts: TelescopeState) -> None:
    sync_ts.backend.set_immutable(b"bad", b"")  # empty bytes are never a valid encoding
    # The words katsdptelstate used, which its users' tests match
    with pytest.raises(ImmutableKeyError, match=r"'bad'.*failed to decode the previous value"):
        sync_ts.set("bad", "")


def test_immutable_over_sensor_and_indexed_is_refused(ts: TelescopeState) -> None:
    ts.add("sensor", 1.0, ts=1.0)
    ts.set_indexed("indexed", "a", 1)
    with pytest.raises(ImmutableKeyError):
        ts["sensor"] = 1
    with pytest.raises(ImmutableKeyError):
        ts["indexed"] = 1
    assert ts.get_range("sensor", st=0) == [(1.0, 1.0)]
    assert ts["indexed"] == {"a": 1}


def test_attribute_access(sync_ts: TelescopeState) -> None:
    sync_ts.answer = 42
    assert sync_ts.answer == 42
    assert sync_ts["answer"] == 42
    with pytest.raises(AttributeError):
        sync_ts.missing  # noqa: B018
    with pytest.raises(AttributeError):
        sync_ts.get = 1  # type: ignore[method-assign]  # a method's name
    assert "get" not in sync_ts


def test_pickle_encoding_round_trip(ts: TelescopeState, restore_pickle_setting: None) -> None:
    ts.add("pickled", {"a": 1}, immutable=True, encoding=ENCODING_PICKLE)
    assert ts.get("pickled", return_encoded=True)[:1] == ENCODING_PICKLE
    with pytest.raises(DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
        ts["pickled"]
    telstate.set_allow_pickle(True)
    assert ts["pickled"] == {"a": 1}


def test_unencodable_value_writes_nothing(ts: TelescopeState) -> None:
    with pytest.raises(EncodeError):
        ts["bad"] = {1, 2}
    with pytest.raises(EncodeError):
        ts.add("bad", object())
    with pytest.raises(EncodeError):
        ts.set_indexed("bad", "a", np.array([object()]))
    assert "bad" not in ts
    assert ts.keys() == []


def test_unknown_encoding(ts: TelescopeState) -> None:
    with pytest.raises(ValueError, match="encoding"):
        ts.add("x", 1, encoding=b"\x42")
    assert "x" not in ts


def test_return_encoded(ts: TelescopeState) -> None:
    ts["x"] = 1
    assert ts.get("x", return_encoded=True) == b"\xff\x01"


def test_get_default(ts: TelescopeState) -> None:
    assert ts.get("missing") is None
    assert ts.get("missing", 5) == 5
    with pytest.raises(KeyError, match="missing"):
        ts["missing"]


def test_bytes_and_str_keys_are_the_same(ts: TelescopeState) -> None:
    ts[b"key"] = 1
    assert ts["key"] == 1
    ts["ключ"] = 2
    assert ts["ключ".encode()] == 2
    assert "ключ" in ts.keys()


def test_non_utf8_key_round_trips(ts: TelescopeState) -> None:
    ts[b"\xff\xfe"] = 1
    (key,) = ts.keys()
    assert ts[key] == 1
    assert key.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_bad_key_type(ts: TelescopeState) -> None:
    with pytest.raises(TypeError):
        ts.add(1, 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sensors


def test_sensor_latest_and_range(ts: TelescopeState) -> None:
    for t in (3.0, 1.0, 2.0):
        ts.add("s", t * 10, ts=t)
    assert ts.key_type("s") == KeyType.MUTABLE
    assert ts["s"] == 30.0
    assert ts.get_range("s") == [(30.0, 3.0)]
    assert ts.get_range("s", st=0) == [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)]


def test_sensor_default_timestamp_is_now(ts: TelescopeState) -> None:
    before = time.time()
    ts.add("s", 1)
    after = time.time()
    ((value, stamp),) = ts.get_range("s")
    assert value == 1
    assert before <= stamp <= after


def test_duplicate_samples_collapse(ts: TelescopeState) -> None:
    ts.add("s", "a", ts=1.0)
    ts.add("s", "a", ts=1.0)
    ts.add("s", "b", ts=1.0)
    assert ts.get_range("s", st=0) == [("a", 1.0), ("b", 1.0)]


def test_same_timestamp_orders_by_encoded_value(ts: TelescopeState) -> None:
    for value in (5, 3, 200, 1):
        ts.add("s", value, ts=7.0)
    # MessagePack fixints are one byte (ff 01 < ff 03 < ff 05); 200 is ff cc c8
    assert [v for v, _ in ts.get_range("s", st=0)] == [1, 3, 5, 200]


@pytest.mark.parametrize("bad", [-1.0, -1e-300, math.inf, -math.inf, math.nan])
def test_bad_timestamps(ts: TelescopeState, bad: float) -> None:
    with pytest.raises(InvalidTimestampError):
        ts.add("s", 1, ts=bad)
    assert "s" not in ts


def test_negative_zero_is_zero(ts: TelescopeState) -> None:
    ts.add("s", 1, ts=-0.0)
    ts.add("s", 1, ts=0.0)
    assert ts.get_range("s", st=0) == [(1, 0.0)]
    assert math.copysign(1, ts.get_range("s", st=0)[0][1]) == 1


def test_sensor_over_immutable_is_refused(ts: TelescopeState) -> None:
    ts["x"] = 1
    ts.set_indexed("i", 1, 1)
    with pytest.raises(ImmutableKeyError):
        ts.add("x", 2)
    with pytest.raises(ImmutableKeyError):
        ts.add("i", 2)


@pytest.fixture
def sensor(ts: TelescopeState) -> TelescopeState:
    for t in range(1, 11):
        ts.add("s", t, ts=float(t))
    return ts


def _values(pairs: list[tuple[Any, float]]) -> list[Any]:
    return [value for value, _ in pairs]


RANGE_CASES = pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [10]),
        ({"st": 0}, list(range(1, 11))),
        ({"st": 3, "et": 6}, [3, 4, 5]),
        ({"st": 3, "et": 6, "include_end": True}, [3, 4, 5, 6]),
        ({"st": 3.5, "et": 6}, [4, 5]),
        ({"st": 3.5, "et": 6, "include_previous": True}, [3, 4, 5]),
        ({"st": 3, "et": 6, "include_previous": True}, [2, 3, 4, 5]),
        ({"st": 1, "include_previous": True}, list(range(1, 11))),
        ({"et": 6}, [5]),
        ({"et": 6, "include_end": True}, [5, 6]),
        ({"et": 0.5}, []),
        ({"st": 4}, list(range(4, 11))),
        ({"st": -5, "et": 2}, [1]),
        ({"st": 0, "et": 0}, []),
        ({"st": 0, "et": 0, "include_end": True}, []),
        ({"st": 11}, []),
        ({"st": math.inf}, []),
        ({"st": math.inf, "include_previous": True}, [10]),
        ({"st": 0, "et": math.inf}, list(range(1, 11))),
        ({"et": -1}, []),
        ({"st": 10, "et": 10, "include_end": True}, [10]),
        ({"st": 10, "et": 10}, []),
        # st > et: the range is empty but the previous sample is still found (Redis semantics)
        ({"st": 8, "et": 3, "include_previous": True}, [7]),
        ({"st": 8, "et": 3}, []),
        # st = et: nothing in [st, et), [st, et] with include_end, the sample before st first
        ({"st": 10, "et": 10, "include_previous": True}, [9]),
        ({"st": 5, "et": 5, "include_previous": True, "include_end": True}, [4, 5]),
        ({"st": 1, "et": 1, "include_previous": True}, []),
        # et alone: st = et, and include_previous since st is None
        ({"et": 1}, []),
        ({"et": 1, "include_end": True}, [1]),
        ({"et": 6.5}, [6]),
        ({"et": 6, "include_previous": False}, []),
        # neither: st = et = +inf
        ({"include_previous": False}, []),
        ({"include_end": True}, [10]),
        # an empty range between samples
        ({"st": 2.5, "et": 2.7}, []),
        ({"st": 2.5, "et": 2.7, "include_previous": True}, [2]),
        ({"st": 2.5, "et": 3, "include_end": True}, [3]),
        ({"st": 0, "include_previous": True}, list(range(1, 11))),
        ({"st": 3, "et": math.inf, "include_end": True}, list(range(3, 11))),
    ],
)


@RANGE_CASES
def test_get_range_semantics(
    sensor: TelescopeState, kwargs: dict[str, Any], expected: list[int]
) -> None:
    result = sensor.get_range("s", **kwargs)
    assert _values(result) == expected
    assert all(value == stamp for value, stamp in result)


@RANGE_CASES
def test_get_range_arrays_same_range(
    sensor: TelescopeState, kwargs: dict[str, Any], expected: list[int]
) -> None:
    # One rule for the bounds: the arrays hold exactly get_range's samples.
    values, stamps = sensor.get_range_arrays("s", **kwargs)
    # ints; no sample at all gives empty float64 arrays
    assert values.dtype == (np.int64 if expected else np.float64) and stamps.dtype == np.float64
    assert values.tolist() == expected
    assert stamps.tolist() == [float(v) for v in expected]


def test_get_range_arrays_kinds(ts: TelescopeState) -> None:
    series: dict[str, list[Any]] = {
        "float": [0.5, -1.25, math.inf, 3.0],
        "int": [1, -300, 2**40, 7],
        "bool": [True, False, True, True],
        "str": ["slew", "track", "", "ünï"],
        "bytes": [b"a", b"\x00b", b"cde", b""],
        "mixed": [1, "two", 3.0, None],
        "tuple": [(1, 2), (3, 4), (5, 6), (7, 8)],
    }
    for key, values in series.items():
        for i, value in enumerate(values):
            ts.add(key, value, ts=100.0 + i)
    expected_kinds = {"float": "f", "int": "i", "bool": "b", "str": "U", "bytes": "S"}
    for key, values in series.items():
        got, stamps = ts.get_range_arrays(key, st=0)
        assert stamps.tolist() == [100.0, 101.0, 102.0, 103.0]
        assert got.dtype.kind == expected_kinds.get(key, "O"), key
        assert list(got) == values, key


def test_get_range_arrays_empty_and_errors(ts: TelescopeState) -> None:
    ts.add("s", 1.5, ts=10.0)
    values, stamps = ts.get_range_arrays("s", st=20)
    assert len(values) == len(stamps) == 0 and stamps.dtype == np.float64
    with pytest.raises(KeyError):
        ts.get_range_arrays("missing")
    ts["attr"] = 1
    with pytest.raises(ImmutableKeyError):
        ts.get_range_arrays("attr", st=0)
    with pytest.raises(InvalidTimestampError):
        ts.get_range_arrays("s", st=math.nan)


def test_get_range_arrays_refuses_pickles(ts: TelescopeState, restore_pickle_setting: None) -> None:
    for i in range(3):
        ts.add("legacy", {"n": i}, ts=float(i), encoding=ENCODING_PICKLE)
    with pytest.raises(DecodeError):
        ts.get_range_arrays("legacy", st=0)
    telstate.set_allow_pickle(True)
    assert list(ts.get_range_arrays("legacy", st=0).values) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_get_ranges(ts: TelescopeState) -> None:
    for i in range(5):
        ts.add("a", float(i), ts=float(i))
        ts.add("b", f"state{i}", ts=float(i) + 0.5)
    ts["attr"] = 1
    got = ts.get_ranges(["a", "b", "missing"], st=1, et=3)
    assert got == {"a": [(1.0, 1.0), (2.0, 2.0)], "b": [("state1", 1.5), ("state2", 2.5)]}
    # Defaults as get_range's: the latest sample
    assert ts.get_ranges(["a"]) == {"a": [(4.0, 4.0)]}
    arrays = ts.get_ranges(["a", "b"], st=0, arrays=True)
    assert arrays["a"].values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert arrays["b"].timestamps.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert ts.get_ranges([]) == {}
    with pytest.raises(ImmutableKeyError):
        ts.get_ranges(["a", "attr"], st=0)


def test_get_ranges_through_a_view(ts: TelescopeState) -> None:
    ts.add("cb1_s", 1.0, ts=1.0)
    ts.add("s", 9.0, ts=9.0)
    ts.add("t", 2.0, ts=2.0)
    view = ts.view("cb1")
    assert view.get_ranges(["s", "t"], st=0) == {"s": [(1.0, 1.0)], "t": [(2.0, 2.0)]}


def test_get_range_ties_at_one_timestamp(ts: TelescopeState) -> None:
    # Samples sharing a timestamp are ordered by encoded value (ff 01 < ff 02 < ff 03 < ff 05),
    # so "the last sample before st" and the latest value are the greatest of a tie
    for value, stamp in ((2, 1.0), (1, 1.0), (5, 2.0), (3, 2.0)):
        ts.add("s", value, ts=stamp)
    assert ts["s"] == 5
    assert ts.get_range("s") == [(5, 2.0)]
    assert ts.get_range("s", st=2, include_previous=True) == [(2, 1.0), (3, 2.0), (5, 2.0)]
    assert ts.get_range("s", st=1, et=1, include_end=True) == [(1, 1.0), (2, 1.0)]
    assert ts.get_range("s", st=1.5, et=2) == []


def test_get_range_return_encoded(sensor: TelescopeState) -> None:
    assert sensor.get_range("s", st=9, return_encoded=True) == [
        (b"\xff\x09", 9.0),
        (b"\xff\x0a", 10.0),
    ]


def test_get_range_nan_bounds(sensor: TelescopeState) -> None:
    with pytest.raises(InvalidTimestampError):
        sensor.get_range("s", st=math.nan)
    with pytest.raises(InvalidTimestampError):
        sensor.get_range("s", et=math.nan)


def test_get_range_errors(ts: TelescopeState) -> None:
    with pytest.raises(KeyError):
        ts.get_range("missing")
    ts["attr"] = 1
    ts.set_indexed("idx", 1, 1)
    for key in ("attr", "idx"):
        with pytest.raises(ImmutableKeyError):
            ts.get_range(key)
        with pytest.raises(ImmutableKeyError):
            ts.get_range(key, st=0)
        # No sample is read, so (as in Redis) the type is not checked
        assert ts.get_range(key, st=0, et=0) == []


def test_get_range_of_many_samples(ts: TelescopeState) -> None:
    # Enough identical-shape values for the bulk decoder, of several kinds
    kinds: dict[str, list[Any]] = {
        "float": [i * 0.5 for i in range(100)],
        "float32": [float(np.float32(i / 3)) for i in range(100)],
        "small": list(range(-32, 68)),
        "u16": [1000 + i for i in range(100)],
        "i64": [-(2**40) - i for i in range(100)],
        "u64": [2**64 - 1 - i for i in range(100)],
        "bool": [bool(i % 3) for i in range(100)],
        "none": [None] * 100,
        "mixed": [i if i % 2 else str(i) for i in range(100)],
    }
    for key, values in kinds.items():
        for i, value in enumerate(values):
            value = np.float32(value) if key == "float32" else value
            ts.add(key, value.item() if isinstance(value, np.generic) else value, ts=float(i))
    ts.add("f32", np.float32(1.5), ts=1.0)
    for key, values in kinds.items():
        got = ts.get_range(key, st=0)
        assert [t for _, t in got] == [float(i) for i in range(100)]
        assert _values(got) == values, key
        assert [type(v) for v in _values(got)] == [type(v) for v in values], key
    assert ts.get_range("f32", st=0) == [(np.float32(1.5), 1.0)]
    assert type(ts["f32"]) is np.float32


# --------------------------------------------------------------------------- indexed


def test_indexed_round_trip(ts: TelescopeState) -> None:
    ts.set_indexed("idx", "a", 1)
    ts.set_indexed("idx", (1, "b"), [2])
    ts.set_indexed("idx", 3, {"c": 3})
    assert ts.key_type("idx") == KeyType.INDEXED
    assert ts.get_indexed("idx", "a") == 1
    assert ts.get_indexed("idx", (1, "b")) == [2]
    assert ts.get_indexed("idx", 3) == {"c": 3}
    assert ts["idx"] == {"a": 1, (1, "b"): [2], 3: {"c": 3}}
    assert ts.get_indexed("idx", "missing") is None
    assert ts.get_indexed("idx", "missing", 7) == 7
    assert ts.get_indexed("nokey", "a", 7) == 7
    assert ts.get_indexed("idx", "a", return_encoded=True) == b"\xff\x01"


def test_indexed_immutability(ts: TelescopeState) -> None:
    ts.set_indexed("idx", "a", 1)
    ts.set_indexed("idx", "a", 1)
    with pytest.raises(ImmutableKeyError, match="idx"):
        ts.set_indexed("idx", "a", 2)
    assert ts.get_indexed("idx", "a") == 1


def test_indexed_type_errors(ts: TelescopeState) -> None:
    ts["attr"] = 1
    ts.add("sensor", 1)
    for key in ("attr", "sensor"):
        with pytest.raises(ImmutableKeyError):
            ts.set_indexed(key, "a", 1)
        with pytest.raises(ImmutableKeyError):
            ts.get_indexed(key, "a")
    with pytest.raises(TypeError):
        ts.set_indexed("idx", [1, 2], 1)  # unhashable
    assert "idx" not in ts


def test_indexed_sub_key_encoding_is_always_msgpack(
    ts: TelescopeState, restore_pickle_setting: None
) -> None:
    ts.set_indexed("idx", "a", 1, encoding=ENCODING_PICKLE)
    telstate.set_allow_pickle(True)
    assert ts.get_indexed("idx", "a") == 1
    assert list(ts.get("idx", return_encoded=True)) == [
        telstate.encode_value("a", ENCODING_MSGPACK)
    ]


# --------------------------------------------------------------------------- keys, delete, clear


def test_keys_and_filters(ts: TelescopeState) -> None:
    for key in ("b_1", "a_2", "a_1", "c"):
        ts[key] = 1
    assert ts.keys() == ["a_1", "a_2", "b_1", "c"]
    assert ts.keys("a_*") == ["a_1", "a_2"]
    assert ts.keys(b"?_1") == ["a_1", "b_1"]
    assert ts.keys("[ab]_[^2]") == ["a_1", "b_1"]
    assert ts.keys("nothing*") == []


def test_keys_glob_ranges_escapes_and_every_type(ts: TelescopeState) -> None:
    # Redis globs: [a-b] ranges, [^x] negation, and a backslash making * ? [ literal
    for key in ("a1", "b2", "c3", "x*y", "x?y", "x[y"):
        ts[key] = 1
    ts.add("xzy", 1.0, ts=1.0)
    ts.set_indexed("xxy", "a", 1)
    assert ts.keys() == ["a1", "b2", "c3", "x*y", "x?y", "x[y", "xxy", "xzy"]
    assert ts.keys("[a-b]?") == ["a1", "b2"]
    assert ts.keys("[^a]?") == ["b2", "c3"]
    assert ts.keys("x?y") == ["x*y", "x?y", "x[y", "xxy", "xzy"]
    assert ts.keys(r"x\*y") == ["x*y"]
    assert ts.keys(r"x\?y") == ["x?y"]
    assert ts.keys(r"x\[y") == ["x[y"]
    assert ts.keys("*y") == ["x*y", "x?y", "x[y", "xxy", "xzy"]
    assert ts.keys("*3") == ["c3"]
    assert ts.keys("?") == []
    assert ts.view("x").keys("x?y") == ["x*y", "x?y", "x[y", "xxy", "xzy"]  # full keys


def test_delete(ts: TelescopeState) -> None:
    ts["x"] = 1
    ts.add("s", 1)
    ts.delete("x")
    ts.delete("s")
    ts.delete("never_existed")
    assert ts.keys() == []
    ts["x"] = 2  # an immutable can be set anew after deletion
    assert ts["x"] == 2


def test_clear(ts: TelescopeState) -> None:
    ts["x"] = 1
    ts.view("v")["y"] = 2
    ts.view("v").clear()
    assert ts.keys() == []


def test_is_immutable_is_deprecated(sync_ts: TelescopeState) -> None:
    sync_ts["x"] = 1
    sync_ts.add("s", 1)
    with pytest.warns(FutureWarning):
        assert sync_ts.is_immutable("x")
    with pytest.warns(FutureWarning):
        assert not sync_ts.is_immutable("s")
    with pytest.warns(FutureWarning):
        assert not sync_ts.is_immutable("missing")


def test_key_type_missing(ts: TelescopeState) -> None:
    assert ts.key_type("missing") is None


# --------------------------------------------------------------------------- views


def test_views(ts: TelescopeState) -> None:
    ts["n_chans"] = 1
    view = ts.view("ns")
    assert view.prefixes == ("ns_", "")
    view["x"] = 1
    assert view["x"] == 1
    assert view["n_chans"] == 1  # falls back to the root
    assert "x" not in ts
    assert ts["ns_x"] == 1
    assert view.keys() == ["n_chans", "ns_x"]
    assert view.backend is ts.backend


def test_view_shadowing_and_priority(ts: TelescopeState) -> None:
    ts["x"] = "root"
    ts.view("a")["x"] = "a"
    both = ts.view("a").view("b")
    assert both.prefixes == ("b_", "a_", "")
    assert both["x"] == "a"
    both["x"] = "b"
    assert both["x"] == "b"
    assert both.root()["x"] == "root"
    assert both.root().prefixes == ("",)


def test_view_separator_rules(ts: TelescopeState) -> None:
    assert ts.view("a_").prefixes == ("a_", "")
    assert ts.view("a", add_separator=False).prefixes == ("a", "")
    assert ts.view("a", exclusive=True).prefixes == ("a_",)
    assert ts.view("").prefixes == ("", "")
    assert ts.view(b"x").prefixes == ("x_", "")
    assert TelescopeState.join("a", "b", "c") == "a_b_c"
    assert TelescopeState.SEPARATOR == "_"


def test_exclusive_view_does_not_fall_back(ts: TelescopeState) -> None:
    ts["x"] = 1
    assert "x" not in ts.view("v", exclusive=True)


def test_indexed_key_in_higher_prefix_shadows_lower(ts: TelescopeState) -> None:
    ts.set_indexed("idx", "a", "root")
    view = ts.view("v")
    view.set_indexed("idx", "b", "view")
    assert view.get_indexed("idx", "a") is None  # the view's key wins even without the sub-key
    assert view.get_indexed("idx", "b") == "view"
    assert view["idx"] == {"b": "view"}


def test_view_sensor_and_range_fall_back(ts: TelescopeState) -> None:
    ts.add("s", 1, ts=1.0)
    view = ts.view("v")
    assert view.get_range("s", st=0) == [(1, 1.0)]
    view.add("s", 2, ts=2.0)
    assert view.get_range("s", st=0) == [(2, 2.0)]
    assert view.key_type("s") == KeyType.MUTABLE


def test_view_reads_answer_for_the_first_candidate_that_exists(ts: TelescopeState) -> None:
    # Only in the root: every read falls back to it
    ts.set_indexed("idx", "a", "root")
    ts.add("sensor", 1, ts=1.0)
    ts["attr"] = "root"
    view = ts.view("v")
    assert view.key_type("idx") == KeyType.INDEXED
    assert view.key_type("sensor") == KeyType.MUTABLE
    assert view.key_type("attr") == KeyType.IMMUTABLE
    assert view.exists("idx") and "sensor" in view
    assert view.get_indexed("idx", "a") == "root"
    assert view["sensor"] == 1
    assert view.get_range("sensor", st=0) == [(1, 1.0)]
    assert view.key_type("missing") is None
    assert view.get("missing", "default") == "default"
    # Under the view's prefix, a key of another type shadows the root's: its type decides
    view["idx"] = "view"
    view.set_indexed("sensor", "b", 2)
    view.add("attr", 3, ts=3.0)
    assert view.key_type("idx") == KeyType.IMMUTABLE
    assert view.key_type("sensor") == KeyType.INDEXED
    assert view.key_type("attr") == KeyType.MUTABLE
    with pytest.raises(ImmutableKeyError):
        view.get_indexed("idx", "a")
    with pytest.raises(ImmutableKeyError):
        view.get_range("sensor", st=0)
    assert view.get_range("sensor", st=0, et=0) == []  # no sample read: no type check
    assert view["idx"] == "view"
    assert view["sensor"] == {"b": 2}
    assert view["attr"] == 3
    assert view.get_range("attr", st=0) == [(3, 3.0)]
    # The root is unchanged
    assert ts.get_indexed("idx", "a") == "root"
    assert ts.get_range("sensor", st=0) == [(1, 1.0)]
    assert ts["attr"] == "root"


def test_stacked_views_read_the_middle_prefix(ts: TelescopeState) -> None:
    ts.add("s", 0, ts=1.0)
    ts.view("a").add("s", 1, ts=1.0)
    ts.view("a").set_indexed("i", "k", "a")
    ts.set_indexed("i", "k", "root")
    both = ts.view("a").view("b")
    assert both.get_range("s", st=0) == [(1, 1.0)]
    assert both.get_indexed("i", "k") == "a"
    assert both.key_type("s") == KeyType.MUTABLE
    exclusive = ts.view("b", exclusive=True)
    assert exclusive.key_type("s") is None
    assert not exclusive.exists("s")
    assert exclusive.get_indexed("i", "k", "none") == "none"
    with pytest.raises(KeyError):
        exclusive.get_range("s", st=0)


def test_delete_through_view_removes_every_prefix(ts: TelescopeState) -> None:
    ts["x"] = 1
    view = ts.view("v")
    view["x"] = 2
    view.delete("x")
    assert ts.keys() == []


def test_ipython_completions(sync_ts: TelescopeState) -> None:
    sync_ts["a"] = 1
    sync_ts.view("v")["b"] = 2
    assert sorted(sync_ts.view("v")._ipython_key_completions_()) == ["a", "b", "v_b"]


def test_constructor_errors(sync_ts: TelescopeState) -> None:
    with pytest.raises(ValueError, match="base"):
        TelescopeState("localhost", base=sync_ts)
    with pytest.raises(ValueError, match="db"):
        TelescopeState(sync_ts.backend, db=1)
    with pytest.raises(ValueError, match="db"):
        TelescopeState(db=1)
    with pytest.raises(ValueError, match="prefix"):
        TelescopeState(sync_ts.backend, prefixes=())


def test_shared_backend(sync_ts: TelescopeState) -> None:
    other = TelescopeState(sync_ts.backend)
    sync_ts["x"] = 1
    assert other["x"] == 1


# --------------------------------------------------------------------------- waits


def _later(action: Any, delay: float = 0.05) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_key_already_there(ts: TelescopeState) -> None:
    ts["x"] = 1
    ts.wait_key("x", timeout=0)
    ts.wait_key("x", lambda value, stamp: value == 1 and stamp is None)


@pytest.mark.live
def test_wait_key_woken_by_write(ts: TelescopeState) -> None:
    thread = _later(lambda: ts.add("x", 5, immutable=True))
    ts.wait_key("x", timeout=10)
    thread.join()
    assert ts["x"] == 5


def _once_listening(action: Any) -> tuple[Callable[[], None], threading.Thread]:
    """A thread that runs `action` once the wait is listening, and the call that says so.

    A wait looks at the key, subscribes, then looks again: the second look at an
    existing key (the condition's second call) comes after the subscription, so a
    write made then must reach the condition.  Writing on a timer instead races with
    the subscription on a busy machine: a write before it is seen only as the latest
    value, and these tests write values that are not the latest, or several.
    """
    listening = threading.Event()

    def run() -> None:
        if listening.wait(10):
            action()

    thread = threading.Thread(target=run)
    thread.start()
    return listening.set, thread


@pytest.mark.live
def test_wait_key_condition_sees_each_sample(ts: TelescopeState) -> None:
    seen: list[tuple[Any, float | None]] = []
    ts.add("s", 0, ts=0.0)

    def writes() -> None:
        for i in range(1, 5):
            ts.add("s", i, ts=float(i))

    listening, thread = _once_listening(writes)

    def condition(value: Any, stamp: float | None) -> bool:
        seen.append((value, stamp))
        if len(seen) == 2:
            listening()
        return bool(value == 3)

    ts.wait_key("s", condition, timeout=10)
    thread.join()
    assert seen[:2] == [(0, 0.0), (0, 0.0)]
    assert (3, 3.0) in seen
    assert (4, 4.0) not in seen[:-1]


@pytest.mark.live
def test_wait_key_late_sample_satisfies_condition(ts: TelescopeState) -> None:
    ts.add("s", 10, ts=10.0)
    # An older sample arriving late is what the condition sees, not the latest
    listening, thread = _once_listening(lambda: ts.add("s", 1, ts=1.0))
    calls = 0

    def condition(value: Any, stamp: float | None) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            listening()
        return bool(value == 1 and stamp == 1.0)

    ts.wait_key("s", condition, timeout=10)
    thread.join()
    assert calls == 3


@pytest.mark.live
def test_wait_key_through_view(ts: TelescopeState) -> None:
    view = ts.view("v")
    thread = _later(lambda: ts.add("x", 1, immutable=True))
    view.wait_key("x", timeout=10)  # written under the root prefix
    thread.join()


@pytest.mark.live
def test_wait_key_indexed_condition_sees_dict(ts: TelescopeState) -> None:
    thread = _later(lambda: [ts.set_indexed("idx", i, i) for i in range(3)])
    ts.wait_key("idx", lambda value, stamp: len(value) == 3 and stamp is None, timeout=10)
    thread.join()


def test_wait_key_timeout(ts: TelescopeState) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="missing"):
        ts.wait_key("missing", timeout=0.05)
    assert time.monotonic() - start >= 0.05
    ts["x"] = 1
    with pytest.raises(TimeoutError):
        ts.wait_key("x", lambda value, stamp: value == 2, timeout=0.05)


def test_wait_key_cancelled(sync_ts: TelescopeState) -> None:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    thread = _later(lambda: future.set_result(None))
    with pytest.raises(CancelledError):
        sync_ts.wait_key("missing", cancel_future=future)
    thread.join()
    with pytest.raises(CancelledError):
        sync_ts.wait_key("missing", cancel_future=future)  # already done


def test_wait_indexed(ts: TelescopeState) -> None:
    ts.set_indexed("idx", "a", 1)
    ts.wait_indexed("idx", "a", timeout=0)
    ts.wait_indexed("idx", "a", lambda value: value == 1, timeout=0)
    with pytest.raises(TimeoutError):
        ts.wait_indexed("idx", "a", lambda value: value == 2, timeout=0.05)
    with pytest.raises(TimeoutError):
        ts.wait_indexed("idx", "zzz", timeout=0.05)


@pytest.mark.live
def test_wait_indexed_woken_by_write(ts: TelescopeState) -> None:
    ts.set_indexed("idx", "a", 1)
    thread = _later(lambda: [ts.set_indexed("idx", k, 2) for k in ("b", "c")])
    ts.wait_indexed("idx", "c", lambda value: value == 2, timeout=10)
    thread.join()
    assert ts["idx"] == {"a": 1, "b": 2, "c": 2}


def test_wait_indexed_on_wrong_type(ts: TelescopeState) -> None:
    ts["attr"] = 1
    with pytest.raises(ImmutableKeyError):
        ts.wait_indexed("attr", "a", timeout=1)


@pytest.mark.live
def test_wait_indexed_on_key_created_with_wrong_type(ts: TelescopeState) -> None:
    thread = _later(lambda: ts.add("later", 1))
    with pytest.raises(ImmutableKeyError):
        ts.wait_indexed("later", "a", timeout=10)
    thread.join()


def test_wait_indexed_cancelled(sync_ts: TelescopeState) -> None:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.cancel()
    with pytest.raises(CancelledError):
        sync_ts.wait_indexed("idx", "a", cancel_future=future)


def test_satisfied_wait_returns_even_when_already_cancelled(sync_ts: TelescopeState) -> None:
    """The condition is looked at first: a wait that need not block is not cancelled."""
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.cancel()
    sync_ts.add("sensor", 123, ts=5.0)
    sync_ts.set_indexed("idx", "a", 1)
    calls: list[Any] = []
    sync_ts.wait_key("sensor", lambda v, t: calls.append((v, t)) or v == 123, cancel_future=future)
    sync_ts.wait_key("sensor", cancel_future=future)
    sync_ts.wait_indexed("idx", "a", lambda v: calls.append(v) or v == 1, cancel_future=future)
    sync_ts.wait_indexed("idx", "a", cancel_future=future)
    assert calls == [(123, 5.0), 1]
    # ... while one that would block is cancelled at once
    with pytest.raises(CancelledError):
        sync_ts.wait_key("sensor", lambda v, t: v == 0, cancel_future=future)
    with pytest.raises(CancelledError):
        sync_ts.wait_indexed("idx", "b", cancel_future=future)


@pytest.mark.live
def test_many_waiters_each_woken(ts: TelescopeState) -> None:
    errors: list[BaseException] = []

    def wait(i: int) -> None:
        try:
            ts.wait_key(f"k{i}", timeout=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    for i in range(20):
        ts[f"k{i}"] = i
    for thread in threads:
        thread.join(10)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)


# --------------------------------------------------------------------------- pipelines


def test_pipeline_writes(ts: TelescopeState) -> None:
    with ts.pipeline() as batch:
        for i in range(100):
            batch.add("s", float(i), ts=float(i))
        batch["attr"] = "x"
        batch.set("attr2", (1, 2))
        batch.set_indexed("idx", "a", 1)
        batch.set_indexed("idx", "b", 2)
        batch.add("s2", 1)  # default timestamp
        assert len(batch) == 105
        assert "attr" not in ts  # nothing is sent before the block ends
    assert ts.get_range("s", st=0) == [(float(i), float(i)) for i in range(100)]
    assert ts["attr"] == "x"
    assert ts["attr2"] == (1, 2)
    assert ts["idx"] == {"a": 1, "b": 2}
    assert "s2" in ts


def test_pipeline_through_view(ts: TelescopeState) -> None:
    view = ts.view("v")
    with view.pipeline() as batch:
        batch["x"] = 1
    assert ts["v_x"] == 1


def test_pipeline_conflicts_raise_after_applying_the_rest(ts: TelescopeState) -> None:
    ts["x"] = 1
    ts["same"] = 5
    ts.set_indexed("idx", "a", 1)
    ts.add("sensor", 1)
    with pytest.raises(ImmutableKeyError, match="3 more"), ts.pipeline() as batch:
        batch["x"] = 2  # conflict
        batch["same"] = 5  # fine: equal
        batch.set_indexed("idx", "a", 2)  # conflict
        batch["sensor"] = 1  # wrong type
        batch.set_indexed("x", "b", 1)  # wrong type
        batch["y"] = 3
        batch.add("s", 1.0, ts=1.0)
    assert ts["x"] == 1
    assert ts.get_indexed("idx", "a") == 1
    assert ts["y"] == 3
    assert ts.get_range("s", st=0) == [(1.0, 1.0)]


def test_pipeline_bad_input_raises_before_sending(ts: TelescopeState) -> None:
    with pytest.raises(InvalidTimestampError), ts.pipeline() as batch:
        batch["x"] = 1
        batch.add("s", 1, ts=-1.0)
    with pytest.raises(EncodeError), ts.pipeline() as batch:
        batch["y"] = {1, 2}
    assert ts.keys() == []


@pytest.mark.live
def test_pipeline_wakes_waiters(ts: TelescopeState) -> None:
    def write() -> None:
        with ts.pipeline() as batch:
            batch.add("s", 1, ts=1.0)
            batch.add("s", 2, ts=2.0)

    # The writes come well after the wait has subscribed (so the pipeline's notifications
    # wake it); should the thread be late, both are stored and the condition holds anyway.
    thread = _later(write, delay=0.2)
    ts.wait_key("s", lambda value, stamp: value >= 1, timeout=10)
    thread.join()


def test_pipeline_keeps_write_order(ts: TelescopeState) -> None:
    with pytest.raises(ImmutableKeyError), ts.pipeline() as batch:
        batch.add("k", 1.0, ts=1.0)
        batch["k"] = 2  # the sample came first: k is a sensor
        batch["flag"] = 1
        batch.add("k", 2.0, ts=2.0)
    assert ts.key_type("k") == KeyType.MUTABLE
    assert ts.get_range("k", st=0) == [(1.0, 1.0), (2.0, 2.0)]


def _backend_call(ts: TelescopeState, method: str, *args: Any) -> Any:
    """Call a backend method of `ts` (awaited on the event loop for the asyncio front end)."""
    result = getattr(ts.backend, method)(*args)
    if isinstance(ts, SyncFacade):
        return ts.runner.run(result)
    return result


def test_backend_stats(ts: TelescopeState) -> None:
    ts["attr"] = "value"
    for t in (5.0, 1.0, 3.0, 3.0):  # the repeated sample is stored once
        ts.add("sensor", t, ts=t)
    ts.add("sensor", -1.0, ts=3.0)  # another value at a timestamp already used
    for i in range(4):
        ts.set_indexed("idx", i, i)
    attr, sensor, idx, missing = _backend_call(
        ts, "stats", [b"attr", b"sensor", b"idx", b"missing"]
    )
    assert missing is None
    assert attr is not None and attr.key_type is KeyType.IMMUTABLE and attr.count == 1
    assert attr.nbytes >= len(telstate.encode_value("value"))
    assert (attr.first, attr.last) == (None, None)
    assert sensor is not None and sensor.key_type is KeyType.MUTABLE
    assert (sensor.count, sensor.first, sensor.last) == (4, 1.0, 5.0)
    assert idx is not None and idx.key_type is KeyType.INDEXED and idx.count == 4
    assert (idx.first, idx.last) == (None, None)


def test_keys_either_side_of_the_compact_encoding_limits(ts: TelescopeState) -> None:
    """Redis and RDB files store small keys compactly (up to 128 sensor samples, 512
    sub-keys, 64-byte members) and bigger ones otherwise: both sizes read back alike."""
    with ts.pipeline() as batch:
        for n in (128, 129):
            for i in range(n):
                batch.add(f"s{n}", i, ts=float(i))
        for i in range(3):
            batch.add("long", "x" * 100 + str(i), ts=float(i))
        for n in (512, 513):
            for i in range(n):
                batch.set_indexed(f"i{n}", i, i)
        batch.set_indexed("ilong", "k", "y" * 100)
        batch["along"] = "z" * 100
    for n in (128, 129):
        key = f"s{n}"
        assert ts.get_range(key, st=0) == [(i, float(i)) for i in range(n)]
        assert ts[key] == n - 1
        assert ts.get_range(key, st=50.5, et=60, include_previous=True) == [
            (i, float(i)) for i in range(50, 60)
        ]
        assert ts.get_range(key, st=n - 1, et=n - 1, include_end=True) == [(n - 1, n - 1.0)]
        (stats,) = _backend_call(ts, "stats", [key.encode()])
        assert (stats.key_type, stats.count, stats.first, stats.last) == (
            KeyType.MUTABLE,
            n,
            0.0,
            n - 1.0,
        )
    assert ts.get_range("long", st=1, include_previous=True) == [
        ("x" * 100 + str(i), float(i)) for i in range(3)
    ]
    assert ts["long"] == "x" * 100 + "2"
    for n in (512, 513):
        key = f"i{n}"
        assert ts[key] == {i: i for i in range(n)}
        assert ts.get_indexed(key, n - 1) == n - 1
        assert ts.get_indexed(key, n) is None
        (stats,) = _backend_call(ts, "stats", [key.encode()])
        assert (stats.key_type, stats.count) == (KeyType.INDEXED, n)
    assert ts.get_indexed("ilong", "k") == "y" * 100
    assert ts["along"] == "z" * 100
    assert ts.keys("[is]*") == ["i512", "i513", "ilong", "s128", "s129"]


def test_backend_snapshot(ts: TelescopeState) -> None:
    ts["attr"] = "value"
    for t in (5.0, 1.0, 3.0):
        ts.add("sensor", t, ts=t)
    ts.set_indexed("idx", "a", 1)
    attr, sensor, idx, missing = _backend_call(
        ts, "snapshot", [b"attr", b"sensor", b"idx", b"missing"]
    )
    assert missing is None
    assert attr == (KeyType.IMMUTABLE, telstate.encode_value("value"))
    assert sensor[0] is KeyType.MUTABLE
    assert sensor[1].encoded() == [(telstate.encode_value(t), t) for t in (1.0, 3.0, 5.0)]
    assert idx == (KeyType.INDEXED, {telstate.encode_value("a"): telstate.encode_value(1)})
