"""The ``telstate`` command on states holding every kind of edge value.

A sensor timestamp may be any finite double from 0 up, and the years that
``datetime`` and matplotlib can show end at 9999 (2.5e11 s): such times print
as ``@1e+300``, durations as ``1.798e+308 s``, and plots count seconds.  The
edge state also holds NaN and infinities, empty, huge (10 million elements)
and structured arrays, names that are not UTF-8 or hold a newline or a
``$`` (matplotlib's math mode), integer-like names and a 100 000-sample
sensor.  It is written to an RDB file with RDBWriter, and every command runs on
it in-process through ``main(argv)``: each must succeed, or fail with one line
``telstate: error: ...`` and status 1, never a traceback.  A hypothesis test
does the same on random states; it runs TELSTATE_FUZZ_EXAMPLES examples (30 by
default).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from telstate import KeyType, TelescopeState, encode_value
from telstate import _text as text
from telstate._demo import START
from telstate._sources import demo_source
from telstate.cli import main
from telstate.cli.info import summary
from telstate.rdb import RDBWriter

from .test_codec import floats as codec_floats
from .test_codec import ints as codec_ints
from .test_codec import values as encodable_values

MAX = sys.float_info.max  # 1.7976931348623157e308
EDGE_TIMES = (0.0, 5e-324, 1e300, MAX)
LAST_DATE = 253402300799.0  # 9999-12-31T23:59:59Z
BAD = "bad\udcff\udcfe"  # b"bad\xff\xfe", as telstate names it (surrogateescape)
BAD_SENSOR = "sensor\udcff"
BAD_INDEXED = "indexed\udcc3"
HUGE_SIZE = 10_000_000
N_MANY = 100_000
STRUCT = np.dtype([("name", "S4"), ("gain", "<c8"), ("flags", "u1", (2,))])
AWKWARD_TEXTS = ["car\rriage", "new\nline", 'quote"', "comma,", "", "\x00nul", "$x$", "é€😀"]
EXAMPLES = int(os.environ.get("TELSTATE_FUZZ_EXAMPLES", "30"))


# --------------------------------------------------------------------------- running


@dataclass
class Result:
    code: int
    out: bytes  # stdout's bytes: key names that are not UTF-8 go out as they are
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")


def call(*argv: str) -> Result:
    """Run ``telstate ARGV`` in-process, with a strict UTF-8 stdout as a terminal has."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    out.flush()
    assert isinstance(out.buffer, io.BytesIO)
    return Result(code, out.buffer.getvalue(), err.getvalue())


def ok(*argv: str) -> str:
    """Run a command that must succeed quietly; return its output."""
    result = call(*argv)
    assert (result.code, result.err) == (0, ""), (argv, result)
    return result.text


def one_line_error(result: Result) -> str:
    """The error line of a failed command, checked to be one line with status 1."""
    assert result.code == 1, result
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("telstate: error: ")
    return lines[0]


def fails(*argv: str) -> str:
    return one_line_error(call(*argv))


def strict_json(data: str) -> Any:
    """`data` parsed as strict JSON (no NaN or Infinity)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(data, parse_constant=refuse)


# --------------------------------------------------------------------------- the edge state


def huge_array() -> np.ndarray[Any, Any]:
    array = np.linspace(0.0, 1.0, HUGE_SIZE)
    array[5] = math.nan
    return array


def structured() -> np.ndarray[Any, Any]:
    array = np.zeros(3, STRUCT)
    array["name"] = [b"m000", b"\xff\xfe", b""]
    array["gain"] = [1 + 2j, complex(math.nan, math.inf), 0]
    array["flags"] = [[1, 2], [3, 4], [255, 0]]
    return array


def build_edge_state() -> TelescopeState:
    ts = TelescopeState()
    for i, stamp in enumerate(EDGE_TIMES):
        ts.add("edge_times", float(i), ts=stamp)
        ts.add("edge_states", f"state{i}", ts=stamp)
    ts.add("at_zero", 1.5, ts=0.0)
    ts.add("at_tiny", 2.5, ts=5e-324)
    ts.add("at_1e300", 3.5, ts=1e300)
    ts.add("at_max", 4.5, ts=MAX)
    ts.add("last_dates", 1, ts=LAST_DATE)  # 9999-12-31T23:59:59Z, then a second later
    ts.add("last_dates", 2, ts=LAST_DATE + 1.0)
    odd_numbers: list[Any] = [math.nan, math.inf, -math.inf, MAX, -MAX, 5e-324, -0.0]
    odd_numbers += [np.float32("nan"), np.float16(65504), np.uint64(2**64 - 1)]
    for i, number in enumerate(odd_numbers):
        ts.add("odd_numbers", number, ts=START + i)
    ts.add("nan_only", math.nan, ts=START)
    ts.add("huge_values", -MAX, ts=START)
    ts.add("huge_values", MAX, ts=START + 1)
    ts["nan_inf"] = {"nan": math.nan, "inf": -math.inf, "array": np.array([math.nan, math.inf])}
    ts["empty_array"] = np.zeros(0)
    ts["empty_2d"] = np.zeros((0, 3), np.int8)
    ts["empty_str_array"] = np.array([], dtype="U3")
    ts["huge_array"] = huge_array()
    ts["structured"] = structured()
    ts["structured_scalar"] = structured()[1]
    ts.add("structured_sensor", structured(), ts=START)
    ts.add("structured_sensor", structured()[::-1], ts=START + 1)
    ts[BAD] = b"\xff\xfe\x00 bytes"
    ts.add(BAD_SENSOR, b"\x80", ts=START)
    ts.add(BAD_SENSOR, b"ok", ts=START + 1)
    ts.set_indexed(BAD_INDEXED, b"\xff", 1.0)
    ts.set_indexed(BAD_INDEXED, ("m000", "h"), math.nan)
    ts["bytes_value"] = b"\x00\xff"
    for i, value in enumerate([1.5, "error", None, np.int8(3), True, math.nan]):
        ts.add("mixed", value, ts=START + i)
    for i, value in enumerate(AWKWARD_TEXTS):
        ts.add("texts", value, ts=START + i)
    ts["1234"] = "an integer-like name"
    ts["1234_gain"] = 5
    ts["-1"] = "a negative one"
    ts.add("42", 42, ts=START)
    ts["a\nb"] = "a newline in the name"
    ts.add("$\\frac$", 1.0, ts=START)  # a broken matplotlib formula, if drawn as one
    ts.add("$\\frac$", 2.0, ts=START + 1)
    with ts.pipeline() as batch:
        for i in range(N_MANY):
            batch.add("many", math.sin(i / 1000), ts=START + i * 0.1)
    return ts


@pytest.fixture(scope="module")
def edge_state() -> TelescopeState:
    return build_edge_state()


@pytest.fixture(scope="module")
def edge_rdb(edge_state: TelescopeState, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("edges") / "edges.rdb"
    with RDBWriter(path) as writer:
        writer.save(edge_state)
    assert writer.keys_failed == 0
    return str(path)


def sensors(ts: TelescopeState) -> list[str]:
    return [key for key in ts.keys() if ts.key_type(key) is KeyType.MUTABLE]


# --------------------------------------------------------------------------- rendering rules


def test_times_beyond_dates_print_as_unix_times() -> None:
    assert text.utc(0.0) == text.utc(5e-324) == "1970-01-01T00:00:00.000Z"
    assert text.utc(LAST_DATE + 0.9994) == "9999-12-31T23:59:59.999Z"
    assert text.utc(LAST_DATE + 1.0) == "@253402300800.0"
    assert text.utc(1e300) == "@1e+300"
    assert text.utc(MAX) == "@1.7976931348623157e+308"
    assert text.utc(math.inf) == "@inf"  # never a sensor's, but never a crash either
    for stamp in (LAST_DATE + 1.0, 1e300, MAX, 5e-324):
        assert text.parse_time(text.utc(stamp)) in (stamp, 0.0)  # read back (to the ms)
    assert text.parse_time("@1e+300") == 1e300
    assert text.parse_time("1.7976931348623157e308") == MAX
    with pytest.raises(ValueError, match="must be finite"):
        text.parse_time("1.8e308")
    with pytest.raises(ValueError, match="bad time"):
        text.parse_time("@")


def test_durations_and_spans_of_any_timestamps() -> None:
    assert text.duration(5e-324) == "0.000 s"
    assert text.duration(MAX) == "1.798e+308 s"
    assert text.duration(1e9) == "1e+09 s"
    assert text.duration(1e9 - 1) == "277777 h 46 min 39 s"
    assert text.duration(-90.0) == "-1 min 30 s"
    assert (
        text.span(0.0, MAX) == "1970-01-01T00:00:00.000Z .. @1.7976931348623157e+308 (1.798e+308 s)"
    )
    assert text.span(1e300, 1e300) == "@1e+300 .. @1e+300 (0.000 s)"
    # Two numbers alike in their first characters are both shown whole.
    below = math.nextafter(MAX, 0.0)
    assert text.span(below, MAX) == f"@{below!r} .. @{MAX!r} (1.996e+292 s)"


def test_csv_lines_quote_what_readers_split_on() -> None:
    cells = ["plain", "car\rriage", "new\nline", 'quote"', "a,b", "", "\x00"]
    line = text.csv_line(cells)
    assert line == 'plain,"car\rriage","new\nline","quote""","a,b",,\x00\n'
    assert list(csv.reader(io.StringIO(line))) == [cells]


def test_errors_are_one_line_whatever_the_names() -> None:
    assert text.printable("a\nb\udcff\x1b[0m\t") == "a\\x0ab\\xff\\x1b[0m\\x09"
    assert text.first_line(ValueError("one\ntwo")) == "one"
    assert text.first_line(ValueError()) == "ValueError"


def test_summary_in_memory_uses_the_same_rule(edge_state: TelescopeState) -> None:
    shown = summary(demo_source(edge_state))  # the memory backend's stats, as demo shows them
    assert re.search(r"^\s*first\s+1970-01-01T00:00:00.000Z$", shown, re.MULTILINE)
    assert re.search(r"^\s*last\s+@1.7976931348623157e\+308$", shown, re.MULTILINE)
    assert re.search(r"^\s*duration\s+1.798e\+308 s$", shown, re.MULTILINE)


# --------------------------------------------------------------------------- info, keys


def test_info(edge_rdb: str, edge_state: TelescopeState) -> None:
    out = ok("info", edge_rdb)
    assert "  first     1970-01-01T00:00:00.000Z\n" in out
    assert "  last      @1.7976931348623157e+308\n" in out
    assert "  duration  1.798e+308 s\n" in out
    n_samples = sum(len(edge_state.get_range(key, st=0)) for key in sensors(edge_state))
    assert f"  samples   {n_samples}\n" in out
    assert "  huge_array " in out  # the biggest key
    assert "\n" not in "".join(text.printable(key) for key in edge_state.keys())


def test_keys(edge_rdb: str, edge_state: TelescopeState) -> None:
    lines = ok("keys", edge_rdb).splitlines()
    assert len(lines) == 1 + len(edge_state.keys())  # names with a newline stay on their line
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["edge_times"].endswith(
        "1970-01-01T00:00:00.000Z .. @1.7976931348623157e+308 (1.798e+308 s)"
    )
    assert rows["at_1e300"].endswith("@1e+300 .. @1e+300 (0.000 s)")
    assert rows["at_zero"].endswith("1970-01-01T00:00:00.000Z .. 00:00:00.000Z (0.000 s)")
    assert rows["last_dates"].endswith("9999-12-31T23:59:59.000Z .. @253402300800.0 (1.000 s)")
    assert rows["many"].split()[1:3] == ["sensor", str(N_MANY)]
    assert "bad\\xff\\xfe" in rows and "a\\x0ab" in rows  # escaped in tables
    assert ok("keys", edge_rdb, "--type", "indexed").splitlines()[1].startswith("indexed\\xc3 ")


def test_keys_names_are_the_names_bytes(edge_rdb: str, edge_state: TelescopeState) -> None:
    # For scripts: each name as it is, so that it can be given back as an argument.
    result = call("keys", edge_rdb, "--names")
    assert (result.code, result.err) == (0, "")
    names = [key.encode("utf-8", "surrogateescape") + b"\n" for key in edge_state.keys()]
    assert result.out == b"".join(names)
    assert b"bad\xff\xfe\n" in result.out
    assert ok("get", edge_rdb, BAD) == "b'\\xff\\xfe\\x00 bytes'\n"


def test_keys_view(edge_rdb: str) -> None:
    lines = ok("keys", edge_rdb, "--view", "1234").splitlines()
    assert lines[0].split() == ["KEY", "VIEW", "TYPE", "COUNT", "SIZE", "SENSOR", "SPAN", "(UTC)"]
    assert [line.split()[:2] for line in lines[1:] if line.startswith("gain")] == [["gain", "1234"]]
    lines = ok("keys", edge_rdb, "--view", BAD_SENSOR, "*").splitlines()
    assert len(lines) > 10
    assert ok("keys", edge_rdb, "--view", "1234", "--names", "g*") == "gain\n"


# --------------------------------------------------------------------------- get


def test_get_every_key(edge_rdb: str, edge_state: TelescopeState) -> None:
    for key in edge_state.keys():
        assert ok("get", edge_rdb, "--", key)
        if key != "huge_array":  # printing 10 million numbers whole is what --full asks
            assert ok("get", edge_rdb, "--full", "--", key)


def test_get_values(edge_rdb: str) -> None:
    out = ok("get", edge_rdb, "huge_array")
    assert len(out) < 300 and out.count("\n") == 1
    assert out.startswith("array(shape=(10000000,), dtype=float64, min=0.0, max=1.0, first=[0.0,")
    assert ok("get", edge_rdb, "at_max") == "@1.7976931348623157e+308  4.5\n"
    assert ok("get", edge_rdb, "at_1e300") == "@1e+300  3.5\n"
    assert ok("get", edge_rdb, "edge_states") == "@1.7976931348623157e+308  'state3'\n"
    assert ok("get", edge_rdb, "empty_array") == "array(shape=(0,), dtype=float64)\n"
    assert ok("get", edge_rdb, "empty_2d", "--full") == "array([], shape=(0, 3), dtype=int8)\n"
    assert "nan" in ok("get", edge_rdb, "nan_inf") and "-inf" in ok("get", edge_rdb, "nan_inf")
    assert ok("get", edge_rdb, "structured").startswith("array(shape=(3,), dtype=[('name', 'S4')")
    assert ok("get", edge_rdb, "1234") == "'an integer-like name'\n"
    assert ok("get", edge_rdb, "-1") == "'a negative one'\n"
    assert ok("get", edge_rdb, "--view", "1234", "gain") == "5\n"
    assert ok("get", edge_rdb, "a\nb") == "'a newline in the name'\n"
    assert ok("get", edge_rdb, BAD_INDEXED) == "{b'\\xff': 1.0, ('m000', 'h'): nan}\n"


# --------------------------------------------------------------------------- range


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_range_every_sensor(edge_rdb: str, edge_state: TelescopeState, fmt: str) -> None:
    for key in sensors(edge_state):
        stamps = [stamp for _, stamp in edge_state.get_range(key, st=0)]
        out = ok("range", edge_rdb, "--format", fmt, "--", key)
        if fmt == "table":
            lines = out.splitlines()
            assert lines[0].split() == ["TIME", "(UTC)", "VALUE"]
            assert [line.split()[0] for line in lines[1:]] == [text.utc(t) for t in stamps]
        elif fmt == "csv":
            rows = list(csv.reader(io.StringIO(out)))
            assert rows[0] == ["timestamp", "time", "value"]
            assert [float(row[0]) for row in rows[1:]] == stamps  # exact, 5e-324 too
            assert [row[1] for row in rows[1:]] == [text.utc(t) for t in stamps]
            assert all(len(row) == 3 for row in rows)
        else:
            items = strict_json(out)
            assert [item["timestamp"] for item in items] == stamps
            assert [item["time"] for item in items] == [text.utc(t) for t in stamps]


def test_range_content(edge_rdb: str) -> None:
    assert ok("range", edge_rdb, "edge_times", "--format", "csv") == (
        "timestamp,time,value\n"
        "0.0,1970-01-01T00:00:00.000Z,0.0\n"
        "5e-324,1970-01-01T00:00:00.000Z,1.0\n"
        "1e+300,@1e+300,2.0\n"
        "1.7976931348623157e+308,@1.7976931348623157e+308,3.0\n"
    )
    items = strict_json(ok("range", edge_rdb, "odd_numbers", "--format", "json"))
    assert [item["value"] for item in items] == [
        "nan",
        "inf",
        "-inf",
        MAX,
        -MAX,
        5e-324,
        -0.0,
        "nan",
        65504.0,
        2**64 - 1,
    ]
    rows = list(csv.reader(io.StringIO(ok("range", edge_rdb, "texts", "--format", "csv"))))
    assert [row[2] for row in rows[1:]] == AWKWARD_TEXTS
    items = strict_json(ok("range", edge_rdb, "texts", "--format", "json"))
    assert [item["value"] for item in items] == AWKWARD_TEXTS
    items = strict_json(ok("range", edge_rdb, BAD_SENSOR, "--format", "json"))
    assert [item["value"] for item in items] == ["b'\\x80'", "b'ok'"]
    items = strict_json(ok("range", edge_rdb, "structured_sensor", "--format", "json"))
    assert all(isinstance(item["value"], str) for item in items)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (["--st", "@1e+300"], [1e300, MAX]),
        (["--st", "1e300", "--et", "1.7976931348623157e308"], [1e300]),
        (["--et", "5e-324"], [0.0]),
        (["--st", "5e-324", "--et", "1e300"], [5e-324]),
        (["--st", "9999-12-31T23:59:59Z"], [1e300, MAX]),
        (["--st", "@1.7976931348623157e+308"], [MAX]),
    ],
)
def test_range_windows_at_the_edges(
    edge_rdb: str, window: list[str], expected: list[float]
) -> None:
    out = ok("range", edge_rdb, "edge_times", "--format", "json", *window)
    assert [item["timestamp"] for item in strict_json(out)] == expected


def test_range_errors_at_the_edges(edge_rdb: str) -> None:
    assert "must be finite" in fails("range", edge_rdb, "edge_times", "--st", "1.8e308")
    assert "--et is before --st" in fails(
        "range", edge_rdb, "edge_times", "--st", "@1e+300", "--et", "9999-12-31"
    )
    line = fails("range", edge_rdb, "a\nb")
    assert line == "telstate: error: a\\x0ab is an immutable key, not a sensor: use 'telstate get'"
    assert "bad\\xff\\xfe is an immutable key" in fails("range", edge_rdb, BAD)


# --------------------------------------------------------------------------- plot


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PLOTTABLE = [
    "edge_times",
    "edge_states",
    "at_zero",
    "at_tiny",
    "at_1e300",
    "at_max",
    "last_dates",
    "odd_numbers",
    "nan_only",
    "huge_values",
    BAD_SENSOR,
    "$\\frac$",
    "42",
    "many",
    "texts",
    "mixed",
]


@pytest.mark.parametrize("key", PLOTTABLE)
def test_plot_each_sensor(edge_rdb: str, tmp_path: Path, key: str) -> None:
    png = tmp_path / "plot.png"
    assert ok("plot", edge_rdb, "-o", str(png), "--", key) == f"wrote {png}\n"
    assert is_png(png)


@pytest.mark.parametrize(
    "window",
    [["--st", "0", "--et", "5e-324"], ["--et", "1e-300"], ["--st", "5e-324", "--et", "1e-320"]],
)
def test_plot_tiny_windows(edge_rdb: str, tmp_path: Path, window: list[str]) -> None:
    png = tmp_path / "plot.png"
    assert ok("plot", edge_rdb, "edge_times", "at_zero", "edge_states", "-o", str(png), *window)
    assert is_png(png)


@pytest.mark.parametrize(
    "window",
    [
        [],
        ["--st", "@1e+300"],
        ["--st", "1e300", "--et", "1.7976931348623157e308"],
        ["--st", "9999-12-31T23:59:59Z"],
        ["--st", "2019-04-23T09:40Z", "--et", "2019-04-23T09:40:00.000001Z"],
        ["--st", "@1.7976931348623157e+308"],  # only the samples held from before
    ],
)
def test_plot_together(edge_rdb: str, tmp_path: Path, window: list[str]) -> None:
    png = tmp_path / "plot.png"
    keys = ["edge_times", "at_zero", "many", "edge_states", BAD_SENSOR, "$\\frac$"]
    assert ok("plot", edge_rdb, *keys, "-o", str(png), "--title", "$x$ \udcff", *window)
    assert is_png(png)


def test_plot_time_axis() -> None:
    from telstate.cli.figure import TimeAxis

    assert TimeAxis.fitting(START, START + 600) == TimeAxis(dates=True)
    assert TimeAxis.fitting(-30.0, 30.0) == TimeAxis(dates=True)
    assert TimeAxis.fitting(0.0, LAST_DATE + 1) == TimeAxis(dates=False, origin=0.0)
    assert TimeAxis.fitting(0.0, MAX) == TimeAxis(dates=False, origin=0.0, unit=1e308)
    assert TimeAxis.fitting(START, START + 1e-4) == TimeAxis(dates=False, origin=START)
    axis = TimeAxis.fitting(1e300, MAX)
    assert axis.label() == "units of 1e+308 s after @1e+300"
    assert list(axis([1e300, MAX])) == [0.0, (MAX - 1e300) / 1e308]


def test_plot_refuses_in_one_line(edge_rdb: str, tmp_path: Path) -> None:
    png = str(tmp_path / "plot.png")
    line = fails("plot", edge_rdb, "structured_sensor", "-o", png)
    assert "cannot plot structured_sensor: its values include ndarrays" in line
    assert "no samples" in fails("plot", edge_rdb, "at_max", "-o", png, "--et", "1e300")
    assert "a\\x0ab is an immutable key" in fails("plot", edge_rdb, "a\nb", "-o", png)


# --------------------------------------------------------------------------- copy


def same_stored(a: TelescopeState, b: TelescopeState) -> None:
    assert b.keys() == a.keys()
    for key in a.keys():
        kind = a.key_type(key)
        assert b.key_type(key) is kind
        if kind is KeyType.MUTABLE:
            assert b.get_range(key, st=0, return_encoded=True) == a.get_range(
                key, st=0, return_encoded=True
            )
        else:
            assert b.get(key, return_encoded=True) == a.get(key, return_encoded=True)


def test_copy_rdb_to_rdb(edge_rdb: str, edge_state: TelescopeState, tmp_path: Path) -> None:
    dest = tmp_path / "copy.rdb"
    out = ok("copy", edge_rdb, str(dest))
    assert out.startswith(f"copied {len(edge_state.keys())} keys from {edge_rdb} to {dest} in ")
    with contextlib.closing(TelescopeState.open(dest).backend) as backend:
        same_stored(edge_state, TelescopeState(backend))
    assert ok("info", str(dest))


# --------------------------------------------------------------------------- random states

_ODD_NAMES = [b"0", b"1234", b"-1", b"1e300", b"$\\frac$", b"a\nb", b"m000_x", b"bad\xff", b"*"]
key_names = st.one_of(
    st.binary(min_size=1, max_size=6),
    st.text(min_size=1, max_size=6).map(lambda name: name.encode()),
    st.sampled_from(_ODD_NAMES),
)
timestamps = st.one_of(
    st.floats(min_value=0.0, max_value=MAX, allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_TIMES),
    st.floats(min_value=START, max_value=START + 600.0),
)
sub_keys = st.one_of(
    st.text(max_size=4), st.binary(max_size=3), st.integers(-5, 5), st.tuples(st.text(max_size=2))
)


def _encodable(value: Any) -> bool:
    try:
        encode_value(value)
    except Exception:  # what the codec refuses (see test_codec) cannot be in a state
        return False
    return True


values_ok = encodable_values.filter(_encodable)
_NUMERIC_CODES = ["i1", "u2", ">i4", "i8", "u8", "f2", "<f4", ">f4", "f8", ">f8"]
# A sensor's values are mostly all numbers or all strings and bools, which plot draws.
_numbers = st.one_of(
    codec_floats,
    codec_ints,
    hnp.arrays(st.sampled_from([np.dtype(code) for code in _NUMERIC_CODES]), ()).map(
        lambda array: array[()]
    ),
    st.sampled_from([math.nan, math.inf, MAX, -MAX, 5e-324, np.float32(math.nan)]),
)
_categories = st.one_of(st.text(max_size=30), st.binary(max_size=8), st.booleans())
sensor_values = st.sampled_from([_numbers, _categories, values_ok])


@st.composite
def states(draw: st.DrawFn) -> TelescopeState:
    """A state of 1-5 keys of random kinds, names and values."""
    ts = TelescopeState()
    for name in draw(st.lists(key_names, min_size=1, max_size=5, unique=True)):
        kind = draw(st.sampled_from(KeyType))
        if kind is KeyType.IMMUTABLE:
            ts[name] = draw(values_ok)
        elif kind is KeyType.MUTABLE:
            family = draw(sensor_values)
            for _ in range(draw(st.integers(1, 6))):
                ts.add(name, draw(family.filter(_encodable)), ts=draw(timestamps))
        else:
            for sub_key in draw(st.lists(sub_keys, min_size=1, max_size=3, unique_by=repr)):
                with contextlib.suppress(Exception):  # sub-keys equal as encoded (1 and True)
                    ts.set_indexed(name, sub_key, draw(values_ok))
    return ts


def _plot_ok_or_refused(result: Result) -> None:
    if result.code == 0:
        assert result.err == ""
        event("plot drawn")
    else:
        line = one_line_error(result)
        assert "cannot plot" in line or "no samples in that time range" in line, line
        event("plot refused: " + ("cannot plot" if "cannot plot" in line else "no samples"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ts=states(), window=st.tuples(timestamps, timestamps), data=st.data())
def test_every_command_on_random_states(
    ts: TelescopeState, window: tuple[float, float], data: st.DataObject
) -> None:
    keys = ts.keys()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "random.rdb")
        with RDBWriter(path) as writer:
            writer.save(ts)
        assert writer.keys_written == len(keys)

        assert ok("info", path).startswith(f"Source  {path} (RDB file, ")
        assert len(ok("keys", path).splitlines()) == 1 + len(keys)
        names = call("keys", path, "--names")
        assert (names.code, names.err) == (0, "")
        assert names.out == b"".join(k.encode("utf-8", "surrogateescape") + b"\n" for k in keys)
        prefix = data.draw(st.sampled_from(keys)).split("_")[0]
        viewed = call("keys", path, f"--view={prefix}")  # a key 'x_' is no name in view x
        assert (viewed.code, viewed.err) in ((0, ""), (0, "(no matching keys)\n")), viewed
        for key in keys:
            assert ok("get", path, "--", key)
            assert ok("get", path, "--full", "--", key)

        start, end = sorted(window)
        st_arg, et_arg = f"@{start!r}", f"@{end!r}"
        plotted = []
        for key in keys:
            if ts.key_type(key) is not KeyType.MUTABLE:
                continue
            plotted.append(key)
            stamps = [stamp for _, stamp in ts.get_range(key, st=0)]
            assert ok("range", path, "--", key)
            rows = list(csv.reader(io.StringIO(ok("range", path, "--format", "csv", "--", key))))
            assert [float(row[0]) for row in rows[1:]] == stamps
            items = strict_json(ok("range", path, "--format", "json", "--", key))
            assert [item["timestamp"] for item in items] == stamps
            in_window = strict_json(
                ok("range", path, "--format", "json", "--st", st_arg, "--et", et_arg, "--", key)
            )
            assert [item["timestamp"] for item in in_window] == [
                stamp for stamp in stamps if start <= stamp < end
            ]
        if plotted:
            png = os.path.join(tmp, "plot.png")
            _plot_ok_or_refused(call("plot", path, "-o", png, "--", *plotted))
            _plot_ok_or_refused(
                call("plot", path, "-o", png, "--st", st_arg, "--et", et_arg, "--", plotted[0])
            )

        dest = os.path.join(tmp, "copy.rdb")
        assert ok("copy", path, dest).startswith(f"copied {len(keys)} key")
        with contextlib.closing(TelescopeState.open(dest).backend) as backend:
            same_stored(ts, TelescopeState(backend))
