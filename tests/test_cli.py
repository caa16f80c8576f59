"""Tests for the ``telstate`` command: every subcommand on every kind of SOURCE.

The sources are the synthetic ``demo`` state (memory backend), a real RDB file
(the demo copied into a private redis-server, then saved by that server with
SAVE, so the file is in redis-server's own format) and that live private server.
All three hold the same 91 keys, so most tests run once per source and check
the same output.  Commands run in-process through ``main(argv)``, except the
``watch`` test and one ``python -m telstate`` check, which run a subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import redis

import telstate
from telstate import KeyType, TelescopeState
from telstate import _text as text
from telstate._demo import START, build_demo
from telstate._sources import classify, demo_source
from telstate._text import CommandError
from telstate.cli import main
from telstate.cli.copy import progress
from telstate.cli.info import summary
from telstate.rdb import RDBWriter

from .servers import RedisServer, server_product

CBID = str(int(START))
SRC = str(Path(__file__).resolve().parents[1] / "src")
KINDS = ("demo", "rdb", "redis")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A private server holding the demo state (the 'redis' SOURCE); read-only for tests."""
    made = RedisServer()
    try:
        assert main(["copy", "demo", made.url]) == 0
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def rdb_path(server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo state as an RDB file written by redis-server itself (SAVE)."""
    client = server.client()
    try:
        client.save()
    finally:
        client.close()
    path = tmp_path_factory.mktemp("cli") / "demo.rdb"
    shutil.copy(server.dir / "dump.rdb", path)
    return str(path)


@pytest.fixture(params=KINDS)
def source(request: pytest.FixtureRequest) -> str:
    """Each kind of SOURCE, holding the same demo state."""
    if request.param == "demo":
        return "demo"
    if request.param == "rdb":
        return str(request.getfixturevalue("rdb_path"))
    return str(request.getfixturevalue("server").url)


@pytest.fixture(scope="module")
def dest_server() -> Iterator[RedisServer]:
    made = RedisServer()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def dest(dest_server: RedisServer) -> RedisServer:
    """An empty private server, for copies and watches."""
    client = dest_server.client()
    client.flushall()
    client.close()
    return dest_server


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must succeed quietly; return its output."""
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, ""), (out, err)
    return out


def fails(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 1) -> str:
    """Run a command that must fail with one line on stderr; return that line."""
    code, out, err = run(capsys, *argv)
    assert code == status, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("telstate: error: ")
    return lines[0]


def sections(output: str) -> dict[str, list[str]]:
    """Output of ``info``: section title -> its indented lines (stripped)."""
    result: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if line.startswith("  "):
            result[current].append(" ".join(line.split()))
        else:
            current = line.split("  ")[0]
            result[current] = [" ".join(line.split())]
    return result


# --------------------------------------------------------------------------- info


def test_info(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "info", source)
    assert code == 0 and err == ""
    info = sections(out)
    assert info["Keys"] == ["Keys 91", "immutable 37", "sensor 52", "indexed 2"]
    assert info["Namespaces"][1:] == [
        f"capture block {CBID} 3 keys",
        f"capture stream {CBID}_cal 1 key",
        f"capture stream {CBID}_sdp_l0 3 keys",
        "stream cal 4 keys",
        "stream sdp_l0 9 keys",
        "antennas (16) m000..m015 64 keys",
        "global 7 keys",
    ]
    assert info["Sensors"][1:] == [
        "sensors 52",
        "samples 19438",
        "first 2019-04-23T09:39:05.000Z",
        "last 2019-04-23T09:49:04.000Z",
        "duration 9 min 59 s",
    ]
    biggest = info["Biggest keys"][1:]
    assert len(biggest) == 10
    assert all(line.split()[1] in ("sensor", "immutable", "indexed") for line in biggest)
    source_lines = info["Source"]
    if source == "demo":
        assert "synthetic" in source_lines[0]
    elif source.startswith("unix://"):
        with redis.Redis.from_url(source) as client:
            product, version = server_product(client)
        assert f"{product} server" in source_lines[0]
        assert "keys in db 0 91" in source_lines
        assert f"version {version}" in source_lines
        assert any(line.startswith("used memory ") for line in source_lines)
    else:
        assert "RDB file" in source_lines[0]
        assert any(line.startswith("format REDIS00") for line in source_lines)
        # the AUX field of the server that saved it (Valkey 8 writes valkey-ver)
        assert any(line.startswith(("redis-ver ", "valkey-ver ")) for line in source_lines)
        ctime = next(line for line in source_lines if line.startswith("ctime "))
        assert ctime.endswith("Z") and ctime[6:10] >= "2024"


def test_info_counts_skipped_keys(
    dest: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = dest.client()
    client.rpush("a_list", b"x")
    client.set("attr", telstate.encode_value(1))
    client.save()
    client.close()
    keys = sections(ok(capsys, "info", dest.url))["Keys"]
    assert keys[-1] == "skipped 1 non-telstate keys (other Redis types 1)"
    keys = sections(ok(capsys, "info", str(dest.dir / "dump.rdb")))["Keys"]
    assert keys == [
        "Keys 1",
        "immutable 1",
        "sensor 0",
        "indexed 0",
        "skipped 1 non-telstate keys (list 1)",
    ]
    out = ok(capsys, "keys", dest.url)
    assert "attr" in out and "a_list" not in out
    # Copies leave them out, and say so.
    for source in (dest.url, str(dest.dir / "dump.rdb")):
        out = ok(capsys, "copy", source, str(tmp_path / "copy.rdb"), "--force")
        assert (
            out.startswith("copied 1 key from") and "(left out 1 key of other Redis types)" in out
        )
        assert TelescopeState.open(str(tmp_path / "copy.rdb")).keys() == ["attr"]


# --------------------------------------------------------------------------- keys


def test_keys_listing(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", source, "m000_*")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "TYPE", "COUNT", "SIZE", "SENSOR", "SPAN", "(UTC)"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == [
        "m000_activity",
        "m000_observer",
        "m000_pos_actual_scan_azim",
        "m000_pos_actual_scan_elev",
    ]
    azim = rows["m000_pos_actual_scan_azim"]
    assert azim[1:3] == ["sensor", "600"]
    assert azim[5:] == ["2019-04-23T09:39:05.000Z", "..", "09:49:04.000Z", "(9", "min", "59", "s)"]
    assert rows["m000_observer"][1] == "immutable"
    assert rows["m000_observer"][2:4][1] in ("B", "KiB")  # no count, a size


def test_keys_filters(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keys", source, "--type", "indexed", "--names")
    assert code == 0
    assert out.split() == [f"{CBID}_cal_product_G", f"{CBID}_sdp_l0_dump_flag_fraction"]
    code, out, _ = run(capsys, "keys", source, "*", "--type", "sensor", "--names")
    assert len(out.split()) == 52
    code, out, err = run(capsys, "keys", source, "no_such_*")
    assert code == 0 and out == "" and "no matching keys" in err


def test_keys_view(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    # katdal's view of a capture stream: capture stream, capture block, stream, global.
    argv = ["keys", source, "--view", "sdp_l0", "--view", CBID, "--view", f"{CBID}_sdp_l0"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert rows["first_timestamp"] == [f"{CBID}_sdp_l0", "immutable"]
    assert rows["obs_params"] == [CBID, "immutable"]
    assert rows["n_chans"] == ["sdp_l0", "immutable"]
    assert rows["sub_band"] == ["(root)", "immutable"]
    # Each key once, by the name the view gives it.
    assert f"{CBID}_obs_params" not in rows and "sdp_l0_n_chans" not in rows
    assert f"sdp_l0_{CBID}" not in rows
    assert len(rows) == 91
    # PATTERN matches names relative to the view (options and positionals intermixed).
    code, out, _ = run(capsys, "keys", source, "--view", CBID, "obs_*", "--names")
    assert out.split() == ["obs_activity", "obs_label", "obs_params", "obs_script_log"]


# --------------------------------------------------------------------------- get


def test_get(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "get", source, "sdp_l0_n_chans") == (0, "4096\n", "")
    assert run(capsys, "get", source, "sub_band")[1] == "'l'\n"
    # A sensor: latest value, with its time.
    out = ok(capsys, "get", source, "m000_pos_actual_scan_azim")
    stamp, value = out.split()
    assert stamp == "2019-04-23T09:49:04.000Z" and -360 < float(value) < 360
    # Dicts pretty-printed over lines.
    out = ok(capsys, "get", source, f"{CBID}_obs_params")
    assert out.startswith("{'observer': 'Demo Observer',\n")
    # An indexed key: its dict, in sub-key order.
    out = ok(capsys, "get", source, f"{CBID}_cal_product_G")
    lines = out.splitlines()
    assert len(lines) == 32 and lines[0].startswith("{('m000', 'h'): (")
    # Through a view.
    assert run(capsys, "get", source, "obs_label", "--view", CBID)[1] == "'demo'\n"


def test_get_arrays(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "get", source, "sdp_l0_bls_ordering")
    assert out == (
        "array(shape=(544, 2), dtype=<U5, min='m000h', max='m015v', "
        "first=['m000h', 'm000h', 'm000h', 'm000v', 'm000v', 'm000h', ...])\n"
    )
    out = ok(capsys, "get", source, "sdp_l0_bls_ordering", "--full")
    assert out.startswith("array([['m000h', 'm000h'],") and out.count("\n") == 544
    assert "..." not in out
    out = ok(capsys, "get", source, f"{CBID}_sdp_l0_dump_flag_fraction")
    assert out.startswith("{0: array(shape=(16,), dtype=float32, min=")


def test_get_errors(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = fails(capsys, "get", source, "m000_activty")
    assert "key 'm000_activty' not found" in line and "did you mean m000_activity" in line
    line = fails(capsys, "get", source, "obs_label")  # only under the capture block
    assert "not found" in line


# --------------------------------------------------------------------------- range


def test_range_table(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "range", source, "m000_activity")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "VALUE"]
    assert lines[1] == "2019-04-23T09:39:05.000Z  'slew'"
    assert len(lines) == 11
    code, out, _ = run(capsys, "range", source, "m000_activity", "--st", "2019-04-23T09:44:00Z")
    assert [line.split()[1] for line in out.splitlines()[1:]] == [
        "'slew'",
        "'scan_ready'",
        "'scan'",
        "'scan_complete'",
        "'slew'",
        "'track'",
    ]
    # Unix times, and --et exclusive; an empty range says so on stderr.
    code, out, _ = run(
        capsys, "range", source, "cbf_target", "--st", str(START), "--et", str(START + 150)
    )
    assert len(out.splitlines()) == 2 and "J0408-6545" in out
    code, out, err = run(capsys, "range", source, "cbf_target", "--st", "2030-01-01")
    assert code == 0 and out == "" and "no samples" in err


def test_range_csv(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "range", source, "cbf_target", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["timestamp", "time", "value"]
    assert rows[1] == [
        str(START),
        "2019-04-23T09:39:05.000Z",
        "J0408-6545, radec bpcal fluxcal, 04:08:20.38, -65:45:09.1",
    ]
    assert len(rows) == 5


def test_range_json(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "range", source, "m000_pos_actual_scan_elev", "--format", "json")
    samples = json.loads(out)
    assert len(samples) == 600
    assert samples[0]["timestamp"] == START and samples[0]["time"] == "2019-04-23T09:39:05.000Z"
    assert all(isinstance(s["value"], float) for s in samples)
    out = ok(capsys, "range", source, "m000_activity", "--format", "json", "--st", "2030-01-01")
    assert json.loads(out) == []


def test_range_json_of_awkward_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts = TelescopeState()
    values: list[Any] = [
        math.nan,
        math.inf,
        1 + 2j,
        b"\x00bytes",
        np.float32(1.5),
        np.int16(-3),
        np.arange(3, dtype=np.uint8),
        np.array([1 + 1j]),
        (1, "two"),
        {(1, 2): "tuple key", 3: None, "s": [np.bool_(True)]},
        None,
    ]
    for i, value in enumerate(values):
        ts.add("odd", value, ts=START + i)
    path = str(tmp_path / "odd.rdb")
    with RDBWriter(path) as writer:
        writer.save(ts)
    code, out, _ = run(capsys, "range", path, "odd", "--format", "json")
    assert code == 0
    got = [item["value"] for item in json.loads(out)]  # strict JSON: NaN would fail here
    assert got == [
        "nan",
        "inf",
        "(1+2j)",
        "b'\\x00bytes'",
        1.5,
        -3,
        [0, 1, 2],
        repr(np.array([1 + 1j])),
        [1, "two"],
        {"(1, 2)": "tuple key", "3": None, "s": [True]},
        None,
    ]
    code, out, _ = run(capsys, "range", path, "odd", "--format", "csv")
    assert list(csv.reader(io.StringIO(out)))[3][2] == '"(1+2j)"'


def test_range_errors(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "bad time 'yesterday'" in fails(
        capsys, "range", source, "cbf_target", "--st", "yesterday"
    )
    assert "--et: bad time" in fails(capsys, "range", source, "cbf_target", "--et", "nan")
    assert "--et is before --st" in fails(
        capsys, "range", source, "cbf_target", "--st", "2019-04-23T10:00", "--et", "2019-04-23"
    )
    line = fails(capsys, "range", source, "sub_band")
    assert "sub_band is an immutable key, not a sensor" in line
    assert "not found" in fails(capsys, "range", source, "nothing")


# --------------------------------------------------------------------------- plot


def check_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 1000
    rgb = pixels[..., :3]
    assert float(rgb.std()) > 0.05  # not blank
    colours = np.unique((rgb.reshape(-1, 3) * 255).round().astype(np.uint8), axis=0)
    assert len(colours) > 50  # lines, bands, text, antialiasing


def test_plot(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_png = tmp_path / "plot.png"
    keys = ["m000_pos_actual_scan_azim", "m000_pos_actual_scan_elev", "m000_activity"]
    code, out, err = run(capsys, "plot", source, *keys, "-o", str(out_png))
    assert (code, err) == (0, "")
    assert out == f"wrote {out_png}\n"
    check_png(out_png)


def test_plot_window_and_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two antennas' azimuths share a subplot; several categorical sensors share the bands.
    out_svg = tmp_path / "plot.svg"
    keys = [
        "m000_pos_actual_scan_azim",
        "m001_pos_actual_scan_azim",
        "anc_mean_wind_speed",
        "m000_activity",
        "obs_activity",
        "cbf_target",
    ]
    argv = ["plot", "demo", *keys, "-o", str(out_svg), "--st", "2019-04-23T09:41Z"]
    code, _, err = run(capsys, *argv, "--et", "2019-04-23T09:45Z", "--title", "Window")
    assert (code, err) == (0, "")
    svg = out_svg.read_text()
    assert svg.count('<g id="axes_') == 3


def test_plot_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = str(tmp_path / "x.png")
    assert "not a sensor" in fails(capsys, "plot", "demo", "sub_band", "-o", png)
    assert "no samples" in fails(capsys, "plot", "demo", "cbf_target", "-o", png, "--et", "1000")
    assert "cannot write" in fails(capsys, "plot", "demo", "cbf_target", "-o", png + ".nope")
    assert "required: -o" in fails(capsys, "plot", "demo", "cbf_target", status=2)


def test_plot_unplottable_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts = TelescopeState()
    ts.add("dicts", {"a": 1}, ts=START)
    path = str(tmp_path / "dicts.rdb")
    with RDBWriter(path) as writer:
        writer.save(ts)
    line = fails(capsys, "plot", path, "dicts", "-o", str(tmp_path / "x.png"))
    assert "cannot plot dicts: its values include dicts" in line


def test_plot_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    line = fails(capsys, "plot", "demo", "cbf_target", "-o", str(tmp_path / "x.png"))
    assert "pip install 'telstate[plot]'" in line
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- copy


def same_state(a: TelescopeState, b: TelescopeState) -> None:
    keys = a.keys()
    assert b.keys() == keys
    for key in keys:
        kind = a.key_type(key)
        assert b.key_type(key) is kind
        if kind is KeyType.MUTABLE:
            assert b.get_range(key, st=0, return_encoded=True) == a.get_range(
                key, st=0, return_encoded=True
            )
        else:
            assert b.get(key, return_encoded=True) == a.get(key, return_encoded=True)


@pytest.fixture(scope="module")
def demo_state() -> TelescopeState:
    ts = TelescopeState()
    build_demo(ts)
    return ts


@pytest.mark.parametrize("kind", KINDS)
def test_copy_to_rdb(
    kind: str,
    request: pytest.FixtureRequest,
    demo_state: TelescopeState,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = "demo"
    if kind == "rdb":
        source = str(request.getfixturevalue("rdb_path"))
    elif kind == "redis":
        source = request.getfixturevalue("server").url
    target = tmp_path / "copy.rdb"
    code, out, err = run(capsys, "copy", source, str(target))
    assert (code, err) == (0, "")  # no progress bar: stderr is not a terminal
    assert out.startswith("copied 91 keys from ") and out.rstrip().endswith(" s")
    assert target.read_bytes()[:9] == b"REDIS0009"  # re-encoded for old readers
    same_state(demo_state, TelescopeState.open(str(target)))
    assert sorted(os.listdir(tmp_path)) == ["copy.rdb"]  # no partial file left
    # An existing file is replaced only with --force.
    assert "exists: use --force" in fails(capsys, "copy", source, str(target))
    assert run(capsys, "copy", source, str(target), "--force")[0] == 0


@pytest.mark.parametrize("kind", ["demo", "rdb"])
def test_copy_to_redis(
    kind: str,
    rdb_path: str,
    dest: RedisServer,
    demo_state: TelescopeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = "demo" if kind == "demo" else rdb_path
    code, out, err = run(capsys, "copy", source, dest.url)
    assert (code, err) == (0, "")
    assert out.startswith(
        f"copied 91 keys from {'demo' if kind == 'demo' else rdb_path} to unix://"
    )
    copied = TelescopeState(dest.url)
    try:
        same_state(demo_state, copied)
        # Copying again merges: nothing changes, nothing conflicts.
        assert run(capsys, "copy", source, dest.url)[0] == 0
        same_state(demo_state, copied)
    finally:
        copied.backend.close()


def test_copy_redis_to_redis_conflicts(
    server: RedisServer, dest: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    other = TelescopeState(dest.url)
    other["sub_band"] = "s"
    other.backend.close()
    code, out, err = run(capsys, "copy", server.url, dest.url)
    assert code == 1
    assert out.startswith("copied 90 keys")
    assert err.startswith("telstate: error: 1 key already in") and "sub_band" in err


def test_copy_errors(
    server: RedisServer, dest: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "DEST cannot be 'demo'" in fails(capsys, "copy", str(tmp_path), "demo")
    assert "same server" in fails(capsys, "copy", server.url, server.url)
    assert "is a directory" in fails(capsys, "copy", "demo", str(tmp_path))
    assert "no such file" in fails(
        capsys, "copy", str(tmp_path / "none.rdb"), str(tmp_path / "x.rdb")
    )
    assert "has no telstate keys" in fails(capsys, "copy", dest.url, str(tmp_path / "x.rdb"))
    assert not (tmp_path / "x.rdb").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress(10, "copy") as bar:
        assert isinstance(bar, tqdm)
        bar.update(10)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed: no bar, no error
    with progress(10, "copy") as bar:
        assert not isinstance(bar, tqdm)
        bar.update(10)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "tqdm")
    with progress(10, "copy") as bar:
        assert not isinstance(bar, tqdm)


def test_progress_bar_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress(4, "copy") as bar:
        time.sleep(0.6)  # a long copy: past the bar's delay
        bar.update(4)
    assert "copy" in terminal.getvalue() and "4/4" in terminal.getvalue()


# --------------------------------------------------------------------------- watch


class Lines:
    """The lines a subprocess prints, read by a thread (so a test can wait with a timeout)."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def next(self, timeout: float = 10.0) -> str:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"watch printed nothing within {timeout} s")


@contextlib.contextmanager
def watching(*argv: str) -> Iterator[tuple[Lines, list[Any]]]:
    """``telstate watch`` in a subprocess: its lines as they come; at the end it is sent
    Ctrl-C, and the list gets its exit status and what it wrote on stderr."""
    ended: list[Any] = []
    with subprocess.Popen(
        [sys.executable, "-m", "telstate", "watch", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield Lines(proc.stdout), ended
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                ended.append(proc.wait(timeout=10))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        ended.append(proc.stderr.read())


def test_watch(dest: RedisServer) -> None:
    ts = TelescopeState(dest.url)
    ts.add("m000_activity", "slew", ts=START)
    ts.set_indexed(f"{CBID}_gains", "m000", 1.0)
    argv = (dest.url, "wind", "m000_activity", "gains", "--view", CBID)
    try:
        with watching(*argv) as (lines, ended):
            # Current values first: once they are printed, every key is being watched.
            first = {lines.next(), lines.next()}
            stamp = text.utc(START)
            assert f"{stamp}  m000_activity  'slew'" in first
            assert any(line.endswith(f"  {CBID}_gains  {{'m000': 1.0}}") for line in first)
            ts.add("m000_activity", "track", ts=START + 30)
            assert lines.next() == f"{text.utc(START + 30)}  m000_activity  'track'"
            # A key that did not exist: watched under the view's first prefix.
            ts.view(CBID).add("wind", 4.5, ts=START + 31)
            assert lines.next() == f"{text.utc(START + 31)}  {CBID}_wind  4.5"
            ts.set_indexed(f"{CBID}_gains", "m001", np.array([1, 2]))
            line = lines.next()
            assert line.endswith(
                f"  {CBID}_gains  {{'m001': array(shape=(2,), dtype=int64, "
                "min=1, max=2, first=[1, 2])}"
            )
            assert line[:4] >= "2024"  # arrival time: indexed updates carry no timestamp
            ts.add("m000_activity", "scan", ts=START + 40)
            assert lines.next().endswith("m000_activity  'scan'")

    finally:
        ts.backend.close()
    status, errors = ended
    assert status == 0, errors  # Ctrl-C is how watch ends: a clean exit
    assert errors == ""


def test_watch_needs_redis(rdb_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "watch needs a Redis server" in fails(capsys, "watch", "demo", "x")
    assert "an RDB file, which never changes" in fails(capsys, "watch", rdb_path, "x")
    missing = f"unix://{rdb_path}.sock"
    assert "cannot reach redis server" in fails(capsys, "watch", missing, "x")


# --------------------------------------------------------------------------- demo


def test_demo_prints_the_summary_of_info_demo(capsys: pytest.CaptureFixture[str]) -> None:
    demo_out = ok(capsys, "demo")
    info_out = ok(capsys, "info", "demo")
    assert info_out.startswith(
        "Source  demo (a synthetic MeerKAT-like state in memory)\nKeys  91\n"
    )
    summary_part, built = demo_out.rsplit("\n\n", 1)
    assert summary_part + "\n" == info_out
    assert built.startswith("(built in memory in ") and built.endswith(" s)\n")


def test_demo_options(capsys: pytest.CaptureFixture[str]) -> None:
    info = sections(ok(capsys, "demo", "--antennas", "2", "--duration", "60"))
    assert info["Keys"][0] == "Keys 35"
    assert "antennas (2) m000..m001 8 keys" in info["Namespaces"]
    assert info["Sensors"][-1] == "duration 59.000 s"


def field(summary: str, label: str) -> str:
    """The rest of the summary line starting with `label`."""
    match = re.search(rf"^\s*{re.escape(label)}\s+(.*)$", summary, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{summary}"
    return match.group(1)


@pytest.fixture(scope="module")
def small() -> TelescopeState:
    ts = TelescopeState()
    build_demo(ts, n_antennas=3, duration=300.0, rate=2.0, seed=7)
    return ts


def test_summary_of_a_small_demo(small: TelescopeState) -> None:
    shown = summary(demo_source(small))
    counts = Counter(small.key_type(key) for key in small.keys())
    assert field(shown, "Keys") == str(len(small.keys()))
    for kind in KeyType:
        assert field(shown, text.TYPE_NAMES[kind]) == str(counts[kind])
    assert re.search(rf"^\s*capture block\s+{CBID}\s", shown, re.MULTILINE)
    assert re.search(rf"^\s*capture stream\s+{CBID}_sdp_l0\s", shown, re.MULTILINE)
    assert re.search(r"^\s*stream\s+sdp_l0\s", shown, re.MULTILINE)
    assert "antennas (3)" in shown
    sensors = [key for key in small.keys() if small.key_type(key) is KeyType.MUTABLE]
    n_samples = sum(len(small.get_range(key, st=0)) for key in sensors)
    assert field(shown, "sensors") == str(len(sensors))
    assert field(shown, "samples") == str(n_samples)
    last = START + (round(300.0 * 2.0) - 1) / 2.0
    assert field(shown, "first") == "2019-04-23T09:39:05.000Z"
    assert field(shown, "last") == text.utc(last)
    assert "\x1b" not in shown


def test_summary_is_aligned(small: TelescopeState) -> None:
    lines = summary(demo_source(small)).splitlines()
    headings = [i for i, line in enumerate(lines) if not line.startswith(" ")]
    for start, end in zip(headings, [*headings[1:], len(lines)], strict=True):
        # Cells are separated by two or more spaces; in each column of a section
        # every cell starts (text) or ends (numbers) at the same place.
        rows = [
            [(m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", line)]
            for line in lines[start + 1 : end]
        ]
        if not rows:
            continue  # the demo's Source line has no rows
        width = max(len(row) for row in rows)
        full = [row for row in rows if len(row) == width]
        edges = set()
        for column in zip(*full, strict=True):
            starts, ends = {s for s, _ in column}, {e for _, e in column}
            assert len(starts) == 1 or len(ends) == 1, lines[start:end]
            edges |= starts if len(starts) == 1 else ends
        for row in rows:  # a row with an empty cell (the global namespace's name) too
            assert all(s in edges or e in edges for s, e in row), lines[start:end]


def test_summary_of_other_states() -> None:
    ts = TelescopeState()
    shown = summary(demo_source(ts))
    assert field(shown, "Keys") == field(shown, "sensors") == "0"
    assert "first" not in shown and "Biggest keys" not in shown
    ts["x"] = 1
    ts.add("s", 2.5, ts=10.0)
    shown = summary(demo_source(ts.view("nothing")))  # the whole state, whatever the view
    assert field(shown, "first") == text.utc(10.0)
    assert re.search(r"^\s*global\s+2\s+keys$", shown, re.MULTILINE)


def test_demo_save(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo.rdb"
    code, out, err = run(capsys, "demo", "--save", str(path))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith(f"saved 91 keys to {path} in ")
    code, out, _ = run(capsys, "info", str(path))
    assert "Keys  91" in out and "RDB version 9" in out
    assert "exists: use --force" in fails(capsys, "demo", "--save", str(path))
    assert run(capsys, "demo", "--save", str(path), "--force", "--antennas", "1")[0] == 0
    assert "Keys  31" in run(capsys, "info", str(path))[1]


# --------------------------------------------------------------------------- user errors


def test_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.rdb")
    assert f"{missing}: no such file" in fails(capsys, "info", missing)
    not_rdb = tmp_path / "notes.txt"
    not_rdb.write_text("hello\n")
    assert "not an RDB file" in fails(capsys, "info", str(not_rdb))
    assert "is a directory" in fails(capsys, "keys", str(tmp_path))
    assert "unsupported URL 'http://host'" in fails(capsys, "info", "http://user:pw@host")
    line = fails(capsys, "get", f"unix://{tmp_path}/no.sock", "x")
    assert "cannot reach redis server" in line
    assert "invalid choice" in fails(capsys, "keys", "demo", "--type", "bogus", status=2)
    assert "required: COMMAND" in fails(capsys, status=2)
    assert "required: SOURCE" in fails(capsys, "info", status=2)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("info", "keys", "get", "range", "plot", "copy", "watch", "demo"):
        assert command in out
    assert run(capsys, "range", "--help")[0] == 0


def test_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "telstate", "get", "demo", "sub_band"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "'l'\n", "")


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1556012345", START),
        ("1556012345.25", START + 0.25),
        ("2019-04-23T09:39:05Z", START),
        ("2019-04-23T09:39:05", START),  # UTC unless zoned
        ("2019-04-23 11:39:05+02:00", START),
        ("2019-04-23T09:39:05.5+00:00", START + 0.5),
        ("2019-04-23", START - (9 * 3600 + 39 * 60 + 5)),
    ],
)
def test_parse_time(given: str, expected: float) -> None:
    assert text.parse_time(given) == expected


@pytest.mark.parametrize("bad", ["", "soon", "2019-13-01", "nan", "inf", "-1"])
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="bad time"):
        text.parse_time(bad)


def test_durations_and_sizes() -> None:
    assert text.duration(1.5) == "1.500 s"
    assert text.duration(599) == "9 min 59 s"
    assert text.duration(14 * 3600 + 125) == "14 h 02 min 05 s"
    assert [text.size(n) for n in (0, 1023, 1024, 5 * 2**20, 3 * 2**40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3072.0 GiB",
    ]
    assert text.span(START, START + 3600 * 25) == (
        "2019-04-23T09:39:05.000Z .. 2019-04-24T10:39:05.000Z (25 h 00 min 00 s)"
    )


def test_view_listing() -> None:
    keys = ["a_x", "a_b_x", "b_x", "x", "b_y", "a_"]
    assert text.view_listing(keys, ["a_b_", "a_", ""]) == {
        "x": "a_b_x",  # the highest prefix wins
        "b_x": "b_x",  # a_b_x is shown once, as x
        "b_y": "b_y",
    }


def test_table_alignment() -> None:
    assert text.table([["a", "1", "2 KiB"], ["bbb", "22", "10 B"]], ["K", "N", "SIZE"]) == [
        "K     N   SIZE",
        "a     1  2 KiB",
        "bbb  22   10 B",
    ]


def test_host_port_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tcp = RedisServer(tcp=True)
    try:
        where = f"127.0.0.1:{tcp.port}"
        assert ok(capsys, "copy", "demo", where).startswith(
            f"copied 91 keys from demo to redis://{where}"
        )
        assert sections(ok(capsys, "info", where))["Keys"][0] == "Keys 91"
        assert ok(capsys, "get", where, "sub_band") == "'l'\n"
    finally:
        tcp.close()


def test_classify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert classify("demo") == ("demo", "demo")
    assert classify("redis://h:1/2") == ("redis", "redis://h:1/2")
    assert classify("unix:///tmp/r.sock") == ("redis", "unix:///tmp/r.sock")
    assert classify("host.example:6380") == ("redis", "redis://host.example:6380")
    assert classify("[::1]:6380") == ("redis", "redis://[::1]:6380")
    assert classify("obs.rdb") == ("rdb", "obs.rdb")
    assert classify("dir/obs") == ("rdb", "dir/obs")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd:1").write_bytes(b"")  # an existing file is a file, whatever its name
    assert classify("odd:1") == ("rdb", "odd:1")
    with pytest.raises(CommandError, match="unsupported URL 'http://host/x'"):
        classify("http://user:secret@host/x?password=secret")


def test_credentials_without_a_scheme_are_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "alice:s3cret-pw@localhost:1"]) == 1
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "redis://USER:PASSWORD@HOST:PORT" in err


def test_plot_decimates_big_sensors() -> None:
    from telstate import SampleArrays
    from telstate.cli.plot import PLOT_BUCKETS, decimated

    n = 100_000
    times = np.arange(n, dtype=np.float64)
    values = np.sin(times / 500.0) * 10.0
    values[12_345] = 99.0  # a spike: decimation must keep it
    drawn = decimated(SampleArrays(values, times))
    assert len(drawn) <= 4 * PLOT_BUCKETS
    assert (99.0, 12_345.0) in drawn
    assert min(value for value, _ in drawn) == values.min()
    assert drawn[0] == (values[0], 0.0) and drawn[-1] == (values[-1], n - 1.0)
    # States: each change is all a band needs
    states = np.array(["slew"] * 30_000 + ["track"] * 50_000 + ["slew"] * 20_000)
    assert decimated(SampleArrays(states, times)) == [
        ("slew", 0.0),
        ("track", 30_000.0),
        ("slew", 80_000.0),
    ]
    # Few samples are drawn as they are
    few = SampleArrays(np.array([1, 5, 2]), np.array([1.0, 2.0, 3.0]))
    assert decimated(few) == [(1, 1.0), (5, 2.0), (2, 3.0)]
