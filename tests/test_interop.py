"""Interoperability with katsdptelstate 1.0.0: both libraries on one live Redis server.

telstate promises wire compatibility, so a service written with one library must
see exactly what a service written with the other stored, wake on its writes and
lose or win immutable races against it fairly.  Every test here connects both
libraries to the same private redis-server (``redis_server``) and checks, in both
directions:

- values of every kind round-trip through attributes, sensors and indexed keys,
  through views, ``keys()``, ``in`` and ``key_type``;
- the raw Redis content (TYPE, GET / ZRANGE WITHSCORES / HGETALL, DUMP) and the
  ``update/<key>`` notifications are byte-for-byte identical when each library
  writes the same data;
- waits in one library wake on writes by the other;
- immutable and indexed sub-key races have exactly one winner;
- pickles written by katsdptelstate are gated by ``set_allow_pickle``;
- telstate's pipelines write what katsdptelstate reads and notify its waiters.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import katsdptelstate
import katsdptelstate.redis
import numpy as np
import pytest
import redis

import telstate
from telstate.backends.redis import RedisBackend

from .servers import RedisServer

LIBS = ("telstate", "katsdptelstate")
# Seconds a waiter may take before the test gives up (far above any real wake-up).
WAIT_TIMEOUT = 5.0

# -- values --------------------------------------------------------------------------------


def _structured() -> np.ndarray:
    dtype = np.dtype([("a", "<i4"), ("b", ">f8", (2,)), ("c", "S3")])
    return np.array([(1, (1.5, -2.5), b"xyz"), (-7, (np.nan, np.inf), b"")], dtype=dtype)


# (id, value) pairs: every kind of value both libraries must encode and decode alike.
VALUES: list[tuple[str, Any]] = [
    ("none", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("int", -12345),
    ("int64_max", 2**63 - 1),
    ("int64_min", -(2**63)),
    ("uint64_max", 2**64 - 1),
    ("float", 1.25),
    ("neg_zero", -0.0),
    ("tiny", 5e-324),
    ("huge", 1.7976931348623157e308),
    ("nan", math.nan),
    ("inf", math.inf),
    ("neg_inf", -math.inf),
    ("empty_str", ""),
    ("str", "abc"),
    ("unicode", "ünïcödé ✓ \U0001f52d"),
    ("empty_bytes", b""),
    ("bytes", b"\x00\x01\xff\xfe"),
    ("utf8_bytes", b"abc"),
    ("empty_list", []),
    ("list", [1, "a", b"b", 2.5, None, True]),
    ("empty_tuple", ()),
    ("tuple", (1, 2)),
    ("nested_seq", ((1,), [2, (3, [4, ()])], ("x", b"y"))),
    ("empty_dict", {}),
    ("dict", {"a": 1, "b": [1, 2], "c": (3, 4), "d": {"e": {"f": (b"g", 1.5j)}}}),
    ("complex", 1.5 - 2.25j),
    ("complex_nan", complex(math.nan, -math.inf)),
    ("arr_int8", np.arange(-5, 5, dtype=np.int8)),
    ("arr_uint16", np.arange(10, dtype=np.uint16)),
    ("arr_int32_be", np.arange(6, dtype=">i4").reshape(2, 3)),
    ("arr_int64", np.array([2**63 - 1, -(2**63)], dtype=np.int64)),
    ("arr_float32", np.linspace(0, 1, 7, dtype=np.float32)),
    ("arr_float64_nan", np.array([np.nan, np.inf, -np.inf, -0.0, 1e-300])),
    ("arr_complex64", np.array([1 + 2j, -3j], dtype=np.complex64)),
    ("arr_bool", np.array([[True, False], [False, True]])),
    ("arr_bytes", np.array([b"ab", b"cde"])),
    ("arr_unicode", np.array(["ü", "xyz"])),
    ("arr_0d", np.array(42.5)),
    ("arr_empty", np.zeros((0, 3), dtype=np.float32)),
    ("arr_3d", np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
    ("arr_fortran", np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))),
    ("arr_structured", _structured()),
    ("arr_datetime", np.array(["2019-03-01", "NaT"], dtype="datetime64[D]")),
    ("arr_timedelta_be", np.arange(3).astype(">m8[us]")),
    ("np_float32", np.float32(1.5)),
    ("np_float64", np.float64(-2.75)),
    ("np_int8", np.int8(-128)),
    ("np_uint64", np.uint64(2**64 - 1)),
    ("np_int64", np.int64(-3)),
    ("np_bool", np.bool_(True)),
    ("np_complex128", np.complex128(1 - 1j)),
    ("np_str", np.str_("abc")),
    ("np_bytes", np.bytes_(b"ab\x00c")),
    ("np_void", _structured()[0]),
    ("np_datetime", np.datetime64("2019-03-01T12:00:00", "s")),
    ("np_timedelta", np.timedelta64(-5, "ps")),
    ("list_of_arrays", [np.arange(3), (np.float32(1), np.array([[1j]]))]),
]
VALUE_IDS = [name for name, _ in VALUES]

# Sub-keys of an indexed key (must stay distinct after decoding: no True next to 1).
SUB_KEYS: list[Any] = ["a", "ünï", "", 1, -5, 2**40, 2**64 - 1, (1, "x"), (2, (3, 4)), 1.5, None]


def same(a: Any, b: Any) -> bool:
    """Deep equality that also demands equal types, dtypes, layouts and NaN positions."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.f_contiguous == b.flags.f_contiguous
            and a.flags.c_contiguous == b.flags.c_contiguous
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, np.generic):
        return bool(a.dtype == b.dtype) and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        # Match keys by equality (keys may be tuples, floats or None), then compare values.
        for key, value in a.items():
            if key not in b:
                return False
            other_key = next(k for k in b if k == key)
            if not same(key, other_key) or not same(value, b[key]):
                return False
        return True
    return bool(a == b)


def assert_same(actual: Any, expected: Any) -> None:
    assert same(actual, expected), f"{actual!r} != {expected!r}"


def test_same_helper_is_strict() -> None:
    # The comparisons below are only as good as this helper.
    assert not same(1, True)
    assert not same(1, 1.0)
    assert not same((1,), [1])
    assert not same("a", b"a")
    assert not same(0.0, -0.0)
    assert same(math.nan, math.nan)
    assert not same(np.float32(1), np.float64(1))
    assert not same(np.arange(3), np.arange(3, dtype=np.int32))
    assert not same(np.zeros((2, 2)), np.asfortranarray(np.zeros((2, 2))))
    assert not same({"a": 1}, {"a": 2})
    assert same({(1, 2): [np.nan]}, {(1, 2): [np.nan]})


# -- connections ---------------------------------------------------------------------------


class Connector:
    """Makes TelescopeStates of either library on the test's server and closes them."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self._closers: list[Callable[[], None]] = []

    def __call__(self, lib: str, url: bool = False) -> Any:
        """A TelescopeState of `lib` (telstate from ``redis_server.url`` if `url`)."""
        if lib == "telstate" and url:
            ts = telstate.TelescopeState(self.server.url)
            self._closers.append(ts.backend.close)
            return ts
        client = self.server.client()
        self._closers.append(client.close)
        if lib == "telstate":
            return telstate.TelescopeState(RedisBackend(client))
        return katsdptelstate.TelescopeState(katsdptelstate.redis.RedisBackend(client))

    def close(self) -> None:
        for close in self._closers:
            close()


@pytest.fixture
def connect(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[Connector]:
    """``connect(lib)`` → a TelescopeState of `lib` on a freshly flushed server."""
    connector = Connector(redis_server)
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture(
    params=[("telstate", "katsdptelstate"), ("katsdptelstate", "telstate")],
    ids=["telstate_writes", "katsdptelstate_writes"],
)
def pair(request: pytest.FixtureRequest, connect: Connector) -> tuple[Any, Any]:
    """(writer, reader): one TelescopeState of each library."""
    writer_lib, reader_lib = request.param
    return connect(writer_lib), connect(reader_lib)


def immutable_error(ts: Any) -> type[Exception]:
    if isinstance(ts, telstate.TelescopeState):
        return telstate.ImmutableKeyError
    return katsdptelstate.ImmutableKeyError


def lib_of(ts: Any) -> str:
    return "telstate" if isinstance(ts, telstate.TelescopeState) else "katsdptelstate"


def kind(ts: Any, key: str) -> str | None:
    """Name of the key's type as `ts` reports it (each library has its own KeyType enum)."""
    key_type = ts.key_type(key)
    return None if key_type is None else str(key_type.name)


# -- 1. values, keys and layouts -----------------------------------------------------------


@pytest.mark.parametrize("value", [v for _, v in VALUES], ids=VALUE_IDS)
def test_encodings_identical(value: Any) -> None:
    encoded = telstate.encode_value(value)
    assert encoded == katsdptelstate.encode_value(value)
    assert_same(telstate.decode_value(encoded), katsdptelstate.decode_value(encoded))
    assert_same(telstate.decode_value(encoded), value)  # and both round-trip exactly


def test_attributes_every_value_kind(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    for name, value in VALUES:
        writer[f"attr_{name}"] = value
    for name, value in VALUES:
        key = f"attr_{name}"
        expected = writer.get(key)
        got = reader.get(key)
        assert_same(got, expected)
        assert_same(reader[key], expected)
        assert_same(getattr(reader, key), expected)
        assert reader.get(key, return_encoded=True) == writer.get(key, return_encoded=True)
        assert reader.get(key, return_encoded=True) == katsdptelstate.encode_value(value)
        assert kind(reader, key) == "IMMUTABLE"
        if isinstance(got, np.ndarray):
            assert got.flags.writeable  # katsdptelstate hands out writeable arrays
        assert key in reader
        # Re-setting the same value through the other library is accepted.
        reader[key] = value
    assert sorted(reader.keys()) == sorted(f"attr_{name}" for name in VALUE_IDS)
    assert reader.keys() == writer.keys()
    assert reader.keys("attr_np_*") == writer.keys("attr_np_*")
    assert "missing" not in reader
    assert reader.get("missing", "dflt") == "dflt"
    assert reader.key_type("missing") is None


def test_key_type_values_agree() -> None:
    for name in ("IMMUTABLE", "MUTABLE", "INDEXED"):
        assert telstate.KeyType[name].value == katsdptelstate.KeyType[name].value


# Sensor samples in insertion order: out-of-order adds, duplicate (ts, value) pairs (which
# collapse), several values at one timestamp (ordered by encoded value), a sample at t=0,
# and values of several kinds.
SENSOR_SAMPLES: list[tuple[Any, float]] = [
    (5.0, 105.0),
    (1.0, 101.0),
    ("late", 110.0),
    (3, 103.0),
    (3, 103.0),  # duplicate
    (2, 103.0),  # same timestamp, smaller encoding
    ("x", 103.0),  # same timestamp, str
    (b"x", 103.0),  # same timestamp, bytes
    ((1, 2), 104.0),
    (np.arange(4, dtype=np.float32), 104.0),
    ({"a": [1, None]}, 102.5),
    (0.5, 0.0),
    (math.nan, 106.0),
    (1.0, 101.0),  # duplicate, added out of order
    (-1.0, 1e9),
    (True, 107.25),
    (np.int16(7), 107.25),
]
T_LAST = 1e9


def _expected_samples() -> list[tuple[Any, float]]:
    unique = {(struct.pack(">d", t), telstate.encode_value(v)): (v, t) for v, t in SENSOR_SAMPLES}
    return [unique[k] for k in sorted(unique)]


# (st, et, include_previous, include_end) windows for get_range.
WINDOWS: list[tuple[float | None, float | None, bool | None, bool]] = [
    (None, None, None, False),  # latest sample
    (0, None, None, False),  # everything
    (0, math.inf, None, True),
    (-1, None, None, False),
    (None, 103.0, None, False),  # latest before 103
    (None, 103.0, None, True),  # latest at or before 103
    (103.0, 104.0, None, False),
    (103.0, 104.0, None, True),
    (103.0, 104.0, True, False),
    (103.0, 104.0, True, True),
    (103.0, 103.0, None, True),  # exactly one timestamp
    (103.0, 103.0, None, False),  # empty
    (103.0, 103.0, True, False),
    (101.5, 106.5, True, False),
    (104.0, 101.0, True, True),  # inverted window
    (0, 0, None, True),  # samples at t=0 only
    (0, 0, True, False),
    (None, 0, None, True),
    (None, 0, None, False),
    (2e9, None, None, False),
    (2e9, None, True, False),
    (math.inf, None, True, False),
    (math.inf, None, None, False),
    (-math.inf, math.inf, None, True),
    (T_LAST, T_LAST, None, True),
    (None, -5.0, None, False),
]


def test_sensors(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    for value, ts in SENSOR_SAMPLES:
        writer.add("sensor", value, ts=ts)
    writer.add("single", 42, ts=1234.5)
    expected = _expected_samples()
    assert_same(reader.get_range("sensor", st=0), expected)
    assert_same(writer.get_range("sensor", st=0), expected)
    assert kind(reader, "sensor") == "MUTABLE"
    assert_same(reader.get("sensor"), -1.0)
    assert_same(reader["single"], 42)
    for st, et, include_previous, include_end in WINDOWS:
        kwargs = dict(st=st, et=et, include_previous=include_previous, include_end=include_end)
        got = reader.get_range("sensor", **kwargs)
        assert_same(got, writer.get_range("sensor", **kwargs))
        raw = reader.get_range("sensor", return_encoded=True, **kwargs)
        assert raw == writer.get_range("sensor", return_encoded=True, **kwargs), kwargs
        assert [t for _, t in got] == [t for _, t in raw]
    assert_same(reader.get_range("single"), [(42, 1234.5)])
    assert reader.get_range("single", st=1234.5, et=1234.5) == []
    assert_same(reader.get_range("single", st=1234.5, et=1234.5, include_end=True), [(42, 1234.5)])
    # Adding the same samples again through the reader changes nothing.
    for value, ts in SENSOR_SAMPLES:
        reader.add("sensor", value, ts=ts)
    assert_same(writer.get_range("sensor", st=0), expected)


def _bulk_sensors() -> dict[str, list[Any]]:
    """Sensors of > 64 samples whose values all encode to the same length.

    telstate decodes such batches in bulk with numpy; these check that the fast path
    gives exactly what katsdptelstate's one-by-one decoding gives.
    """
    n = 150
    floats = [float(i) / 7 for i in range(n)]
    floats[3:8] = [math.nan, math.inf, -math.inf, -0.0, 5e-324]
    return {
        "floats": floats,
        "small": [[None, True, False, 0, 127, -1, -32][i % 7] for i in range(n)],
        "int64": [-(2**40) - i for i in range(n)],
        "uint64": [2**64 - 1 - i for i in range(n)],
        # Ten bytes each: a float, an 8-char str, 7 bytes, a uint64, an int64, a uint32...
        "same_size": [
            [1.5, "abcdefgh", b"abcdefg", 2**63, -(2**63), [1, 2, 3, 4, 5, 6, 7, 8]][i % 6]
            for i in range(n)
        ],
        "mostly_floats": [float(i) for i in range(n - 1)] + ["odd one"],
    }


def test_bulk_sensors(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    sensors = _bulk_sensors()
    for name, values in sensors.items():
        for i, value in enumerate(values):
            writer.add(name, value, ts=1000.0 + i // 2)  # pairs of samples share a time
    for name in sensors:
        for kwargs in [
            {"st": 0},
            {"st": 1010.0, "et": 1060.0, "include_previous": True, "include_end": True},
            {"st": 1000.5, "et": 1070.0},
        ]:
            expected = writer.get_range(name, **kwargs)
            assert len(expected) > 64, (name, kwargs)
            assert_same(reader.get_range(name, **kwargs), expected)


def test_sensor_timestamp_edges(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    writer.add("s", "negzero", ts=-0.0)
    writer.add("s", "min", ts=5e-324)
    writer.add("s", "max", ts=1.7976931348623157e308)
    expected = [("negzero", 0.0), ("min", 5e-324), ("max", 1.7976931348623157e308)]
    assert_same(reader.get_range("s", st=0), expected)
    assert_same(reader.get_range("s", st=0, et=0, include_end=True), expected[:1])
    assert_same(reader.get_range("s", st=5e-324, et=5e-324, include_end=True), expected[1:2])
    reader.add("s", "negzero", ts=0.0)  # duplicate of the -0.0 sample
    assert_same(writer.get_range("s", st=0), expected)


def test_indexed(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    values = [v for _, v in VALUES]
    for i, sub_key in enumerate(SUB_KEYS):
        writer.set_indexed("idx", sub_key, values[i * 5 % len(values)])
    writer.set_indexed("idx", b"raw", np.arange(3))
    assert kind(reader, "idx") == "INDEXED"
    for sub_key in [*SUB_KEYS, b"raw"]:
        assert_same(reader.get_indexed("idx", sub_key), writer.get_indexed("idx", sub_key))
        assert reader.get_indexed("idx", sub_key, return_encoded=True) == writer.get_indexed(
            "idx", sub_key, return_encoded=True
        )
    assert_same(reader.get("idx"), writer.get("idx"))
    assert_same(reader["idx"], writer["idx"])
    assert len(reader.get("idx")) == len(SUB_KEYS) + 1
    assert reader.get("idx", return_encoded=True) == writer.get("idx", return_encoded=True)
    assert reader.get_indexed("idx", "missing", "dflt") == "dflt"
    assert reader.get_indexed("missing", "a", "dflt") == "dflt"
    # Setting an existing sub-key to its value through the other library is fine.
    reader.set_indexed("idx", "a", writer.get_indexed("idx", "a"))
    with pytest.raises(immutable_error(reader)):
        reader.set_indexed("idx", "a", "something else")
    # str and bytes equal as UTF-8 count as the same value, both ways.
    writer.set_indexed("idx", "text", "abc")
    reader.set_indexed("idx", "text", b"abc")
    writer["attr_text"] = b"abc"
    reader["attr_text"] = "abc"
    with pytest.raises(immutable_error(reader)):
        reader["attr_text"] = "abd"


def test_type_conflicts(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    writer["imm"] = 1
    writer.add("sens", 1, ts=1.0)
    writer.set_indexed("idx", "a", 1)
    error = immutable_error(reader)
    with pytest.raises(error):
        reader.add("imm", 2, ts=2.0)
    with pytest.raises(error):
        reader.set_indexed("imm", "a", 2)
    with pytest.raises(error):
        reader["sens"] = 1
    with pytest.raises(error):
        reader.set_indexed("sens", "a", 1)
    with pytest.raises(error):
        reader["idx"] = 1
    with pytest.raises(error):
        reader.add("idx", 1, ts=2.0)
    with pytest.raises(error):
        reader.get_range("imm")
    with pytest.raises(error):
        reader.get_range("idx")
    with pytest.raises(error):
        reader.get_indexed("imm", "a")
    with pytest.raises(KeyError):
        reader.get_range("missing")


def test_views_and_prefixes(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    writer["x"] = "root"
    writer.view("cb")["x"] = "cb"
    writer.view("cb").view("cb_s")["y"] = "stream"
    writer.view("cb").add("s", 1.0, ts=1.0)
    writer.view("cb").add("s", 2.0, ts=2.0)
    writer.add("s", 0.0, ts=3.0)
    writer.set_indexed("idx", "root_only", 1)
    writer.view("cb").set_indexed("idx", "cb_only", 2)
    writer.view("other_", exclusive=True)["z"] = 3

    # view("cb").view("cb_s") has prefixes ("cb_s_", "cb_").
    assert reader.keys() == ["cb_idx", "cb_s", "cb_s_y", "cb_x", "idx", "other_z", "s", "x"]
    assert reader.keys("cb_*") == ["cb_idx", "cb_s", "cb_s_y", "cb_x"]
    assert reader.keys("?") == ["s", "x"]
    assert reader.view("cb").keys() == reader.keys()
    view = reader.view("cb")
    assert view["x"] == "cb"
    assert reader["x"] == "root"
    assert reader["cb_x"] == "cb"
    assert view.view("cb_s")["y"] == "stream"
    assert view.view("cb_s")["x"] == "cb"  # falls through to the cb prefix
    assert_same(view.get_range("s", st=0), [(1.0, 1.0), (2.0, 2.0)])
    assert_same(reader.get_range("s", st=0), [(0.0, 3.0)])
    assert view.get("s") == 2.0
    # The cb prefix shadows the root indexed key, even for a sub-key it lacks.
    assert view.get_indexed("idx", "cb_only") == 2
    assert view.get_indexed("idx", "root_only") is None
    assert view["idx"] == {"cb_only": 2}
    assert reader.get_indexed("idx", "root_only") == 1
    assert "z" not in reader
    assert "z" in reader.view("other", exclusive=True)
    assert "x" not in reader.view("other", exclusive=True)
    assert reader.view("other", exclusive=True).key_type("x") is None
    assert "y" in view.view("cb_s")
    assert kind(view, "s") == "MUTABLE"
    assert kind(view, "idx") == "INDEXED"
    assert kind(view, "x") == "IMMUTABLE"
    # A delete through a view removes the key under every prefix of the view.
    view.delete("x")
    assert "x" not in writer and "x" not in writer.view("cb")
    assert writer.keys("x") == writer.keys("cb_x") == []


def test_binary_key_names(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    writer[b"bin\xff\x00key"] = 1
    writer.add("ünï_sensor", 2.0, ts=3.0)
    assert reader.keys() == writer.keys()
    assert reader[b"bin\xff\x00key"] == 1
    assert b"bin\xff\x00key" in reader
    assert reader.get_range("ünï_sensor") == [(2.0, 3.0)]
    assert reader.get_range("ünï_sensor".encode()) == [(2.0, 3.0)]


def test_non_str_dict_keys_known_difference(connect: Connector) -> None:
    """Documented difference: katsdptelstate cannot decode dicts with non-str keys."""
    ours, ref = connect("telstate"), connect("katsdptelstate")
    ours["d"] = {1: 2, (3, 4): "x"}
    assert ours.get("d", return_encoded=True) == katsdptelstate.encode_value({1: 2, (3, 4): "x"})
    assert ours["d"] == {1: 2, (3, 4): "x"}
    with pytest.raises(katsdptelstate.DecodeError):
        ref["d"]


# -- 1b. raw Redis content and notifications -----------------------------------------------


def write_everything(ts: Any) -> None:
    """The same writes, in the same order, whichever library `ts` belongs to."""
    for name, value in VALUES:
        ts[f"attr_{name}"] = value
    for value, t in SENSOR_SAMPLES:
        ts.add("sensor", value, ts=t)
    ts.add("sensor", "negzero", ts=-0.0)
    for i, sub_key in enumerate(SUB_KEYS):
        ts.set_indexed("idx", sub_key, VALUES[i][1])
    ts.set_indexed("idx", "a", VALUES[0][1])  # repeat: no change, no notification
    ts.view("cb")["attr"] = "in a view"
    ts.view("cb").add("sensor", 1, ts=1.0)
    ts.view("cb").set_indexed("idx", (1, 2), [3])
    # Many samples, so the zset leaves its compact encoding.
    for i in range(300):
        ts.add("big_sensor", float(i % 7), ts=1000.0 + i // 2)
    ts["big_attr"] = np.arange(100_000, dtype=np.float64)


def snapshot(client: redis.Redis) -> dict[bytes, tuple[bytes, Any, bytes | None]]:
    """Every key's TYPE, content (GET / ZRANGE WITHSCORES / HGETALL) and DUMP payload."""
    out: dict[bytes, tuple[bytes, Any, bytes | None]] = {}
    for key in client.keys(b"*"):
        kind = client.type(key)
        if kind == b"string":
            content: Any = client.get(key)
        elif kind == b"zset":
            content = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            content = sorted(client.hgetall(key).items())
        else:
            raise AssertionError(f"unexpected type {kind!r} for {key!r}")
        out[key] = (kind, content, client.dump(key))
    return out


@contextlib.contextmanager
def notifications(server: RedisServer) -> Iterator[list[tuple[bytes, bytes]]]:
    """Collect every (channel, data) published on update/* inside the block."""
    client = server.client()
    pubsub = client.pubsub()
    messages: list[tuple[bytes, bytes]] = []
    try:
        pubsub.psubscribe(b"update/*")
        assert pubsub.get_message(timeout=WAIT_TIMEOUT)["type"] == "psubscribe"
        yield messages
        client.publish(b"update/\x00end", b"")
        while True:
            message = pubsub.get_message(timeout=WAIT_TIMEOUT)
            assert message is not None, "notification sentinel lost"
            if message["channel"] == b"update/\x00end":
                break
            messages.append((message["channel"], message["data"]))
    finally:
        pubsub.close()
        client.close()


def test_raw_layout_and_notifications_identical(
    connect: Connector, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    snapshots = {}
    published = {}
    for lib in LIBS:
        redis_client.flushall()
        ts = connect(lib)
        with notifications(redis_server) as messages:
            write_everything(ts)
        snapshots[lib] = snapshot(redis_client)
        published[lib] = messages
    ours, ref = snapshots["telstate"], snapshots["katsdptelstate"]
    assert sorted(ours) == sorted(ref)
    for key in ref:
        assert ours[key][0] == ref[key][0], key
        assert ours[key][1] == ref[key][1], key
        assert ours[key][2] == ref[key][2], key
    # Spot-check the documented layout.
    kind, content, _ = ref[b"attr_tuple"]
    assert (kind, content) == (b"string", bytes.fromhex("ffc70301920102"))
    kind, members, _ = ref[b"sensor"]
    assert kind == b"zset"
    assert all(score == 0 for _, score in members)
    assert members[0][0] == struct.pack(">d", 0.0) + telstate.encode_value("negzero")
    kind, fields, _ = ref[b"idx"]
    assert kind == b"hash"
    assert (telstate.encode_value("a"), telstate.encode_value(None)) in fields
    # Notifications: same channels, same bytes, same order; none for repeats.
    assert published["telstate"] == published["katsdptelstate"]
    channels = [channel for channel, _ in published["katsdptelstate"]]
    assert channels.count(b"update/idx") == len(SUB_KEYS)
    n_sensor = len(_expected_samples())  # duplicates publish nothing
    assert channels.count(b"update/sensor") == n_sensor + 1  # + the -0.0 sample


def test_pickle_encoding_bytes_identical(connect: Connector, redis_client: redis.Redis) -> None:
    ours, ref = connect("telstate"), connect("katsdptelstate")
    for ts in (ours, ref):
        prefix = lib_of(ts)
        ts.add(
            f"{prefix}_imm",
            {"a": (1, 2.5)},
            immutable=True,
            encoding=katsdptelstate.ENCODING_PICKLE,
        )
        ts.add(f"{prefix}_sens", [1, "x"], ts=5.0, encoding=katsdptelstate.ENCODING_PICKLE)
        ts.set_indexed(f"{prefix}_idx", "k", b"v", encoding=katsdptelstate.ENCODING_PICKLE)
    assert redis_client.get("telstate_imm") == redis_client.get("katsdptelstate_imm")
    assert redis_client.zrange("telstate_sens", 0, -1) == redis_client.zrange(
        "katsdptelstate_sens", 0, -1
    )
    assert redis_client.hgetall("telstate_idx") == redis_client.hgetall("katsdptelstate_idx")


# -- 2. waits across libraries -------------------------------------------------------------


def wait_until_subscribed(client: redis.Redis, channel: str, count: int = 1) -> None:
    """Block until `count` clients subscribe to `channel` (the waiter is ready to wake)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while client.pubsub_numsub(channel)[0][1] < count:
        assert time.monotonic() < deadline, f"no waiter subscribed to {channel}"
        time.sleep(0.002)


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def check_wake(
    pool: concurrent.futures.ThreadPoolExecutor,
    redis_client: redis.Redis,
    *,
    waiter: Any,
    wait: Callable[[], Any],
    channel: str,
    before: Callable[[], Any],
    trigger: Callable[[], Any],
) -> None:
    """Run `wait` in a thread; `before` must not wake it, `trigger` must, promptly.

    The writes start only once the waiter has subscribed to `channel`, so the waiter
    is really woken by a notification rather than finding the key on its first look.
    A katsdptelstate waiter only has to return before its own timeout (it also polls
    once a second); a telstate waiter must wake well within that second.
    """
    future = pool.submit(wait)
    wait_until_subscribed(redis_client, channel)
    before()
    time.sleep(0.05)  # give a wrongly woken waiter time to finish
    assert not future.done(), "waiter woke before its condition held"
    start = time.monotonic()
    trigger()
    future.result(timeout=WAIT_TIMEOUT)  # the waiter's own TimeoutError is raised here
    latency = time.monotonic() - start
    if isinstance(waiter, telstate.TelescopeState):
        assert latency < 0.5, f"telstate waiter took {latency:.3f} s"


def test_wait_immutable(pair: tuple[Any, Any], pool: Any, redis_client: redis.Redis) -> None:
    writer, waiter = pair
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_key("imm", timeout=WAIT_TIMEOUT),
        channel="update/imm",
        before=lambda: writer.add("other", 1, immutable=True),
        trigger=lambda: writer.add("imm", np.arange(3), immutable=True),
    )
    # With a condition on the value, through a view.
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.view("cb").wait_key(
            "imm2", lambda v, t: t is None and v == "yes", timeout=WAIT_TIMEOUT
        ),
        channel="update/cb_imm2",
        # The root key also counts for the view, but fails the condition.
        before=lambda: writer.add("imm2", "no", immutable=True),
        trigger=lambda: writer.view("cb").add("imm2", "yes", immutable=True),
    )


def test_wait_sensor_condition(pair: tuple[Any, Any], pool: Any, redis_client: redis.Redis) -> None:
    writer, waiter = pair
    seen: list[tuple[Any, float | None]] = []

    def condition(value: Any, ts: float | None) -> bool:
        seen.append((value, ts))
        return isinstance(value, float) and value > 10.0

    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_key("sensor", condition, timeout=WAIT_TIMEOUT),
        channel="update/sensor",
        before=lambda: (
            writer.add("sensor", 5.0, ts=100.0),
            writer.add("sensor", "text", ts=101.0),
        ),
        trigger=lambda: writer.add("sensor", 20.0, ts=102.0),
    )
    assert seen[-1] == (20.0, 102.0)
    assert (5.0, 100.0) in seen and ("text", 101.0) in seen
    # Both libraries test the condition on the sample just added, even an out-of-order one
    # that is not the sensor's latest value.
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_key("sensor", lambda v, t: v == "old", timeout=WAIT_TIMEOUT),
        channel="update/sensor",
        before=lambda: writer.add("sensor", "newer", ts=300.0),
        trigger=lambda: writer.add("sensor", "old", ts=50.0),
    )
    assert writer.get("sensor") == "newer"


def test_wait_key_on_indexed(pair: tuple[Any, Any], pool: Any, redis_client: redis.Redis) -> None:
    writer, waiter = pair
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_key("idx", lambda d, t: (1, "x") in d, timeout=WAIT_TIMEOUT),
        channel="update/idx",
        before=lambda: writer.set_indexed("idx", "a", 1),
        trigger=lambda: writer.set_indexed("idx", (1, "x"), 2),
    )


@pytest.mark.parametrize("sub_key", ["s", 7, (1, ("x", 2.5))], ids=["str", "int", "tuple"])
def test_wait_indexed(
    pair: tuple[Any, Any], pool: Any, redis_client: redis.Redis, sub_key: Any
) -> None:
    writer, waiter = pair
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_indexed("idx", sub_key, timeout=WAIT_TIMEOUT),
        channel="update/idx",
        before=lambda: (writer.set_indexed("idx", "other", 1), writer.set_indexed("idx", 8, 1)),
        trigger=lambda: writer.set_indexed("idx", sub_key, {"v": [1]}),
    )
    # With a condition: other sub-keys and a failing value do not wake it.
    check_wake(
        pool,
        redis_client,
        waiter=waiter,
        wait=lambda: waiter.wait_indexed(
            "idx2", sub_key, lambda v: v == ("ok", 1), timeout=WAIT_TIMEOUT
        ),
        channel="update/idx2",
        before=lambda: writer.set_indexed("idx2", "other", ("ok", 1)),
        trigger=lambda: writer.set_indexed("idx2", sub_key, ("ok", 1)),
    )


def test_wait_indexed_condition_false_times_out(pair: tuple[Any, Any]) -> None:
    writer, waiter = pair
    writer.set_indexed("idx", "a", 1)
    error = telstate.TimeoutError if lib_of(waiter) == "telstate" else katsdptelstate.TimeoutError
    with pytest.raises(error):
        waiter.wait_indexed("idx", "a", lambda v: v == 2, timeout=0.1)
    with pytest.raises(error):
        waiter.wait_key("idx", lambda d, t: "b" in d, timeout=0.1)


def test_wait_indexed_on_wrong_type(
    pair: tuple[Any, Any], pool: Any, redis_client: redis.Redis
) -> None:
    writer, waiter = pair
    future = pool.submit(waiter.wait_indexed, "k", "a", timeout=WAIT_TIMEOUT)
    wait_until_subscribed(redis_client, "update/k")
    writer["k"] = 1
    with pytest.raises(immutable_error(waiter)):
        future.result(timeout=WAIT_TIMEOUT)


# -- 3. immutable races ----------------------------------------------------------------------

N_RACERS = 8


def _race(
    connect: Connector, pool: Any, write: Callable[[Any, int], None], read: Callable[[Any], Any]
) -> None:
    """N_RACERS clients (alternating libraries) write at once: exactly one value must win."""
    racers = [connect(LIBS[i % 2], url=i % 4 == 0) for i in range(N_RACERS)]
    barrier = threading.Barrier(N_RACERS)

    def attempt(i: int) -> Exception | None:
        barrier.wait(timeout=WAIT_TIMEOUT)
        try:
            write(racers[i], i)
        except Exception as exc:
            return exc
        return None

    outcomes = list(pool.map(attempt, range(N_RACERS)))
    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1, outcomes
    for i, outcome in enumerate(outcomes):
        if outcome is not None:
            assert type(outcome) is immutable_error(racers[i]), repr(outcome)
    expected = f"value-{winners[0]}"
    for racer in racers:
        assert read(racer) == expected


def test_immutable_race(connect: Connector, pool: Any) -> None:
    for round_ in range(6):
        key = f"race{round_}"
        _race(
            connect,
            pool,
            lambda ts, i, key=key: ts.add(key, f"value-{i}", immutable=True),
            lambda ts, key=key: ts[key],
        )


def test_indexed_race(connect: Connector, pool: Any) -> None:
    for round_ in range(6):
        key = f"race_idx{round_}"
        sub_key = ("beam", round_)
        connect("katsdptelstate").set_indexed(key, "existing", 0)
        _race(
            connect,
            pool,
            lambda ts, i, key=key, sub_key=sub_key: ts.set_indexed(key, sub_key, f"value-{i}"),
            lambda ts, key=key, sub_key=sub_key: ts.get_indexed(key, sub_key),
        )


@pytest.mark.parametrize("indexed", [False, True], ids=["immutable", "indexed"])
@pytest.mark.parametrize(
    "values",
    [
        [{"same": (1, np.arange(3)), "text": "ü"}],
        ["ünï", "ünï".encode()],  # str and its UTF-8 bytes count as equal
    ],
    ids=["identical", "str_and_bytes"],
)
def test_same_value_race(connect: Connector, pool: Any, indexed: bool, values: list[Any]) -> None:
    """Racers writing equal values (alternating libraries and values) all succeed."""
    racers = [connect(LIBS[i % 2]) for i in range(N_RACERS)]
    barrier = threading.Barrier(N_RACERS)

    def attempt(i: int) -> None:
        value = values[i // 2 % len(values)]
        barrier.wait(timeout=WAIT_TIMEOUT)
        if indexed:
            racers[i].set_indexed("k", 1, value)
        else:
            racers[i]["k"] = value

    for future in [pool.submit(attempt, i) for i in range(N_RACERS)]:
        future.result(timeout=WAIT_TIMEOUT)
    stored = racers[0].get_indexed("k", 1) if indexed else racers[0]["k"]
    assert any(same(stored, value) for value in values)
    for racer in racers:
        assert_same(racer.get_indexed("k", 1) if indexed else racer["k"], stored)


# -- 4. pickles written by katsdptelstate ----------------------------------------------------


def test_pickles_from_katsdptelstate(connect: Connector, restore_pickle_setting: None) -> None:
    ref, ours = connect("katsdptelstate"), connect("telstate")
    pickled = katsdptelstate.ENCODING_PICKLE
    value = {"a": (1, 2.5), "b": np.arange(3)}
    ref.add("imm", value, immutable=True, encoding=pickled)
    ref.add("sens", value, ts=10.0, encoding=pickled)
    ref.add("sens", "msgpack", ts=11.0)
    ref.set_indexed("idx", "k", value, encoding=pickled)
    ref.set_indexed("idx", "m", "msgpack")
    assert ours.get("imm", return_encoded=True)[:1] == b"\x80"

    telstate.set_allow_pickle(False)
    with pytest.raises(telstate.DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
        ours["imm"]
    with pytest.raises(telstate.DecodeError):
        ours.get_range("sens", st=0)
    with pytest.raises(telstate.DecodeError):
        ours.get_indexed("idx", "k")
    with pytest.raises(telstate.DecodeError):
        ours["idx"]
    assert ours.get_indexed("idx", "m") == "msgpack"
    assert ours.get_range("sens") == [("msgpack", 11.0)]
    assert ours.get_range("sens", st=0, return_encoded=True)[0][0] == pickle.dumps(value, 2)

    telstate.set_allow_pickle(True)
    try:
        assert_same(ours["imm"], value)
        assert_same(ours.get_range("sens", st=0), [(value, 10.0), ("msgpack", 11.0)])
        assert_same(ours.get_indexed("idx", "k"), value)
        assert_same(ours["idx"], {"k": value, "m": "msgpack"})
        # Re-setting the same (pickled) value through telstate is accepted.
        ours.set("imm", value, encoding=telstate.ENCODING_PICKLE)
    finally:
        telstate.set_allow_pickle(False)
    with pytest.raises(telstate.DecodeError):
        ours["imm"]


# -- 5. telstate pipelines -------------------------------------------------------------------


def _pipelined_writes(ts: Any, pipelined: bool) -> None:
    """The same writes, through a telstate pipeline or one by one."""
    with ts.pipeline() if pipelined else contextlib.nullcontext(ts) as p:
        for value, t in SENSOR_SAMPLES:
            p.add("sensor", value, ts=t)
        p["attr"] = {"x": (1, 2)}
        p.add("arr", np.asfortranarray(np.ones((2, 3))), immutable=True)
        p.set_indexed("idx", ("a", 1), [1.5])
        p.set_indexed("idx", 2, "two")
        p.set_indexed("idx", 2, "two")  # repeat within the batch
        p.add("sensor", 1.0, ts=101.0)  # duplicate within the batch


def test_pipeline_read_by_katsdptelstate(
    connect: Connector, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    results = {}
    for writer_lib, pipelined in [("telstate", True), ("katsdptelstate", False)]:
        redis_client.flushall()
        writer = connect(writer_lib)
        with notifications(redis_server) as messages:
            _pipelined_writes(writer, pipelined)
        results[writer_lib] = snapshot(redis_client), messages
        ref = connect("katsdptelstate")
        assert_same(ref.get_range("sensor", st=0), _expected_samples())
        assert_same(ref["attr"], {"x": (1, 2)})
        assert_same(ref["arr"], np.asfortranarray(np.ones((2, 3))))
        assert_same(ref["idx"], {("a", 1): [1.5], 2: "two"})
    (ours, ours_messages), (ref_layout, ref_messages) = results.values()
    assert ours == ref_layout
    # The same notifications, in the same order for each key (the order across keys is
    # checked by test_pipeline_keeps_write_order).
    for channel in {channel for channel, _ in ref_messages}:
        assert [m for m in ours_messages if m[0] == channel] == [
            m for m in ref_messages if m[0] == channel
        ], channel
    assert len(ours_messages) == len(ref_messages)


def test_pipeline_keeps_write_order(connect: Connector, redis_server: RedisServer) -> None:
    """A pipeline must apply (and announce) its writes in the order they were made.

    The usual pattern "write the data, then set a flag" relies on it: a katsdptelstate
    waiter woken by the flag reads the data.  The pipeline is not a transaction, so with
    reordering the waiter can see the flag while samples queued before it are still
    missing (20 000 samples then a flag: the waiter saw 0-12 000 of them).
    """
    ours = connect("telstate")
    with notifications(redis_server) as messages, ours.pipeline() as p:
        p.add("sensor", 1.0, ts=1.0)
        p.set_indexed("idx", "a", 1)
        p.add("other_sensor", 2.0, ts=1.0)
        p.add("sensor", 3.0, ts=2.0)
        p["done"] = True
    channels = [channel.decode() for channel, _ in messages]
    assert channels == [
        "update/sensor",
        "update/idx",
        "update/other_sensor",
        "update/sensor",
        "update/done",
    ]


def test_pipeline_first_write_decides_key_type(connect: Connector) -> None:
    ours, ref = connect("telstate"), connect("katsdptelstate")
    ref.add("k_ref", 1.0, ts=1.0)
    with pytest.raises(katsdptelstate.ImmutableKeyError):
        ref["k_ref"] = 2
    with pytest.raises(telstate.ImmutableKeyError), ours.pipeline() as p:
        p.add("k", 1.0, ts=1.0)
        p["k"] = 2
    assert kind(ref, "k") == kind(ref, "k_ref") == "MUTABLE"


def test_pipeline_wakes_katsdptelstate_waiters(
    connect: Connector, pool: Any, redis_client: redis.Redis
) -> None:
    ours, ref = connect("telstate"), connect("katsdptelstate")
    ref2, ref3 = connect("katsdptelstate"), connect("katsdptelstate")
    futures = [
        pool.submit(ref.wait_key, "sensor", lambda v, t: v == 3.0 and t == 2.0, WAIT_TIMEOUT),
        pool.submit(ref2.wait_indexed, "idx", (1, "a"), lambda v: v == [1], WAIT_TIMEOUT),
        pool.submit(ref3.wait_key, "attr", None, WAIT_TIMEOUT),
    ]
    for channel in ("update/sensor", "update/idx", "update/attr"):
        wait_until_subscribed(redis_client, channel)
    with ours.pipeline() as p:
        p.add("sensor", 1.0, ts=1.0)
        p.set_indexed("idx", "other", 0)
    time.sleep(0.05)
    assert not any(future.done() for future in futures)
    with ours.pipeline() as p:
        p.add("sensor", 3.0, ts=2.0)
        p.set_indexed("idx", (1, "a"), [1])
        p["attr"] = "set"
    for future in futures:
        future.result(timeout=WAIT_TIMEOUT)


def test_pipeline_immutable_conflict_with_katsdptelstate(connect: Connector) -> None:
    ours, ref = connect("telstate"), connect("katsdptelstate")
    ref["attr"] = 1
    ref.set_indexed("idx", "a", 1)
    with pytest.raises(telstate.ImmutableKeyError), ours.pipeline() as p:
        p["attr"] = 2
        p.add("sensor", 1.0, ts=1.0)
    with pytest.raises(telstate.ImmutableKeyError), ours.pipeline() as p:
        p.set_indexed("idx", "a", 2)
        p.set_indexed("idx", "b", 2)
    # The other writes were applied; the immutables kept katsdptelstate's values.
    assert ref["attr"] == 1
    assert ref.get_range("sensor") == [(1.0, 1.0)]
    assert ref["idx"] == {"a": 1, "b": 2}
