"""The pure rules of ``telstate serve``: key rows and groups, value trees, parameters, plots."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from telstate._arrays import SampleArrays, values_array
from telstate._keys import KeyType
from telstate.backends.base import KeyStats
from telstate.web import _listing, _params, _render, _series

# --------------------------------------------------------------------------- listing


def test_key_ids_carry_any_bytes() -> None:
    for name in ["m000_activity", "<script>alert(1)</script>", "bad\udcffbyte", "", "é\n"]:
        ident = _listing.key_id(name)
        assert all(c in "0123456789abcdef" for c in ident)
        assert _listing.key_from_id(ident) == name
    with pytest.raises(ValueError, match="hex"):
        _listing.key_from_id("abc")
    with pytest.raises(ValueError, match="hex"):
        _listing.key_from_id("zz")


def test_filter_is_a_glob_or_a_substring() -> None:
    assert _listing.matches("", "anything")
    assert _listing.matches("ACTIV", "m000_activity")  # substring, any case
    assert not _listing.matches("m1", "m000_activity")
    assert _listing.matches("m0*_activity", "m000_activity")  # glob, byte-exact
    assert not _listing.matches("M0*", "m000_activity")
    assert _listing.matches("m00[0-1]_*", "m001_x")
    assert _listing.matches("*\udcff*", "bad\udcffbyte")


def _stats(kind: KeyType, count: int = 1, first: float | None = None) -> KeyStats:
    last = None if first is None else first + 10
    return KeyStats(kind, count, 100, first, last)


def test_rows_are_grouped_as_an_operator_thinks_of_them() -> None:
    names = {
        key: key
        for key in [
            "sdp_l0_n_chans",
            "sdp_l0_int_time",
            "sdp_l0_stream_type",
            "1556012345_sdp_l0_first_timestamp",
            "1556012345_obs_params",
            "m000_activity",
            "m001_activity",
            "obs_activity",
            "gone",
        ]
    }
    stats: list[KeyStats | None] = [_stats(KeyType.IMMUTABLE)] * 5 + [
        _stats(KeyType.MUTABLE, 10, 1e9),
        _stats(KeyType.MUTABLE, 5, 1e9),
        _stats(KeyType.INDEXED, 3),
        None,
    ]
    rows = _listing.make_rows(names, stats)
    assert "gone" not in [row.name for row in rows]
    groups = _listing.group_rows(rows)
    assert [(g["kind"], g["name"]) for g in groups] == [
        ("global", ""),
        ("stream", "sdp_l0"),
        ("capture block", "1556012345"),
        ("capture stream", "1556012345_sdp_l0"),
        ("antenna", "m000"),
        ("antenna", "m001"),
    ]
    stream = groups[1]["keys"]
    assert [row["name"] for row in stream] == sorted(row["name"] for row in stream)
    sensor = groups[4]["keys"][0]
    assert sensor["type"] == "sensor" and sensor["count"] == 10
    assert sensor["span"].startswith("2001-09-09T01:46:40.000Z")
    immutable = groups[1]["keys"][0]
    assert immutable["count"] == 0 and immutable["size_text"] == "100 B"
    filtered = _listing.make_rows(names, stats, pattern="m00?_*")
    assert [row.name for row in filtered] == ["m000_activity", "m001_activity"]


def test_row_names_escape_control_characters() -> None:
    rows = _listing.make_rows({"a\nb\udcff": "a\nb\udcff"}, [_stats(KeyType.IMMUTABLE)])
    (row,) = rows
    assert row.to_json()["name"] == "a\\x0ab\\xff"
    assert _listing.key_from_id(row.id) == "a\nb\udcff"


# --------------------------------------------------------------------------- render


def test_render_trees() -> None:
    tree = _render.render({"a": [1, "x", (2,)], 3: None, "arr": np.arange(5, dtype=np.int32)})
    assert tree["t"] == "dict"
    (k, v), (k3, v3), (ka, va) = tree["items"]
    assert ka["text"] == "'arr'"
    assert k == {"t": "scalar", "text": "'a'"}
    assert v["t"] == "list" and v["open"] == "["
    assert [item.get("text") for item in v["items"][:2]] == ["1", "'x'"]
    assert v["items"][2]["open"] == "(" and v["items"][2]["close"] == ",)"
    assert k3["text"] == "3" and v3["text"] == "None"
    assert va["t"] == "array"
    assert va["summary"].startswith("array(shape=(5,), dtype=int32")
    assert "array([0, 1, 2, 3, 4]" in va["full"]
    assert json.loads(json.dumps(tree)) == tree  # JSON as it is


def test_render_values_are_text_not_markup() -> None:
    tree = _render.render("<script>alert(1)</script>")
    assert tree == {"t": "scalar", "text": "'<script>alert(1)</script>'"}


def test_huge_values_are_cut_with_a_note() -> None:
    long = _render.render("x" * (_render.MAX_TEXT + 50))
    assert len(long["text"]) == _render.MAX_TEXT and long["more"] == 52  # the quotes count
    many = _render.render(list(range(_render.MAX_ITEMS + 7)))
    assert len(many["items"]) == _render.MAX_ITEMS and many["more"] == 7
    big = _render.render(np.zeros(10**6))
    assert len(big["full"]) <= _render.MAX_ARRAY_TEXT
    deep = _render.render([[i] * 100 for i in range(200)])
    shown = sum(len(row["items"]) for row in deep["items"])
    assert shown < 2 * _render.MAX_NODES and "more" in deep["items"][-1]
    assert len(json.dumps(_render.render([list(range(1000))] * 1000))) < 1_000_000


# --------------------------------------------------------------------------- params


def test_params() -> None:
    key = _listing.key_id("m000_activity")
    assert _params.one_key({"key": key}) == "m000_activity"
    with pytest.raises(_params.ParamError, match="missing parameter 'key'"):
        _params.one_key({})
    with pytest.raises(_params.ParamError, match="hex"):
        _params.one_key({"key": "<x>"})
    assert _params.window({}) == _params.Window(None, None)
    assert _params.window({"st": "1.5", "et": "2"}) == _params.Window(1.5, 2.0)
    for bad, message in [
        ({"st": "x"}, "not a Unix time"),
        ({"st": "nan"}, "finite"),
        ({"et": "-1"}, "not before 1970"),
        ({"st": "3", "et": "2"}, "et is before st"),
    ]:
        with pytest.raises(_params.ParamError, match=message):
            _params.window(bad)
    assert _params.positive_int({}, "buckets", 10, 100) == 10
    assert _params.positive_int({"buckets": "100"}, "buckets", 10, 100) == 100
    for raw in ["0", "101", "1.5", "x"]:
        with pytest.raises(_params.ParamError, match="buckets"):
            _params.positive_int({"buckets": raw}, "buckets", 10, 100)
    assert _params.download_format({}) == "csv"
    assert _params.download_format({"format": "json"}) == "json"
    with pytest.raises(_params.ParamError, match="format"):
        _params.download_format({"format": "xml"})
    assert _params.keys_param([key, key]) == ["m000_activity"]
    with pytest.raises(_params.ParamError, match="at most"):
        _params.keys_param([key] * (_params.MAX_WATCHED + 1))


# --------------------------------------------------------------------------- series


def test_numeric_plot_is_decimated_and_small() -> None:
    n = 1_000_000
    times = 1.5e9 + np.arange(n) * 0.01
    values = np.sin(np.arange(n) / 1000.0) * 100
    payload = _series.plot_payload(times, values, 1000)
    assert payload["kind"] == "numeric" and payload["count"] == n
    assert len(payload["t"]) <= 4000 and len(payload["t"]) == len(payload["v"])
    assert max(payload["v"]) == pytest.approx(100, rel=1e-6)
    assert min(payload["v"]) == pytest.approx(-100, rel=1e-6)
    assert len(json.dumps(payload)) < 200_000
    zoomed = _series.plot_payload(times, values, 1000, start=1.5e9 + 10, end=1.5e9 + 20)
    assert zoomed["count"] == 1001 and len(zoomed["t"]) == 1001  # raw samples
    assert zoomed["t0"] == pytest.approx(1.5e9 + 10)
    empty = _series.plot_payload(times, values, 10, start=1.0, end=2.0)
    assert empty["count"] == 0 and empty["t"] == []


def test_gaps_and_states() -> None:
    times = np.array([1.0, 2.0, 3.0])
    payload = _series.plot_payload(times, np.array([1.0, np.nan, np.inf]), 10)
    assert payload["v"] == [1.0, None, None]
    samples = [("slew", 1.0), ("slew", 2.0), ("track", 3.0), ("slew", 4.0), ("slew", 5.0)]
    t, v = _series.sensor_arrays(_arrays(samples))
    assert not _series.is_numeric(v)
    states = _series.plot_payload(t, v, 100)
    assert states["kind"] == "state" and states["v"] == ["slew", "track", "slew"]
    assert states["t"] == [0.0, 2.0, 3.0]
    window = _series.plot_payload(t, v, 100, start=3.5, end=5.0)
    assert window["v"] == ["track", "slew"]  # the state the window starts in comes first


def _arrays(samples: list[tuple[Any, float]]) -> SampleArrays:
    """What get_range_arrays gives for these samples."""
    stamps = np.array([stamp for _, stamp in samples], dtype=np.float64)
    return SampleArrays(values_array([value for value, _ in samples]), stamps)


def test_sensor_arrays_kinds() -> None:
    t, v = _series.sensor_arrays(_arrays([(1, 1.0), (2.5, 2.0)]))
    assert v.dtype == np.float64 and t.tolist() == [1.0, 2.0]
    _, v = _series.sensor_arrays(_arrays([(True, 1.0), (False, 2.0)]))
    assert v.tolist() == ["True", "False"]  # bools are states
    _, v = _series.sensor_arrays(_arrays([(np.arange(3), 1.0), ("a\nb", 2.0)]))
    assert v[0].startswith("array(") and v[1] == "a\\x0ab"
    t, v = _series.sensor_arrays(_arrays([]))
    assert len(t) == 0 and len(v) == 0
