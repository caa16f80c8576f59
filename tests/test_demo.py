"""Tests for telstate._demo: the synthetic observation (its summary is the CLI's: test_cli)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from telstate import KeyType, TelescopeState
from telstate._demo import START, WIND_INTERVAL, build_demo

CBID = str(int(START))
ANTENNA_SENSORS = ("activity", "pos_actual_scan_azim", "pos_actual_scan_elev")
GLOBAL_SENSORS = {"anc_mean_wind_speed", "cbf_target", "obs_activity", f"{CBID}_obs_script_log"}
ACTIVITIES = {"slew", "track", "scan_ready", "scan", "scan_complete"}


def build(**kwargs: Any) -> TelescopeState:
    ts = TelescopeState()
    build_demo(ts, **kwargs)
    return ts


def counts_by_type(ts: TelescopeState) -> Counter[KeyType | None]:
    return Counter(ts.key_type(key) for key in ts.keys())


def utc(timestamp: float) -> str:
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def antenna_names(n: int) -> list[str]:
    return [f"m{i:03d}" for i in range(n)]


@pytest.fixture(scope="module")
def small() -> TelescopeState:
    return build(n_antennas=3, duration=300.0, rate=2.0, seed=7)


def test_key_counts_follow_antennas() -> None:
    few, more = build(n_antennas=2, duration=60.0), build(n_antennas=5, duration=60.0)
    few_counts, more_counts = counts_by_type(few), counts_by_type(more)
    extra = 5 - 2
    assert more_counts[KeyType.IMMUTABLE] - few_counts[KeyType.IMMUTABLE] == extra  # mXXX_observer
    assert more_counts[KeyType.MUTABLE] - few_counts[KeyType.MUTABLE] == extra * len(
        ANTENNA_SENSORS
    )
    assert more_counts[KeyType.INDEXED] == few_counts[KeyType.INDEXED] == 2
    assert None not in more_counts


def test_sensor_keys(small: TelescopeState) -> None:
    sensors = {key for key in small.keys() if small.key_type(key) is KeyType.MUTABLE}
    per_antenna = {f"{ant}_{name}" for ant in antenna_names(3) for name in ANTENNA_SENSORS}
    assert sensors == per_antenna | GLOBAL_SENSORS


def test_attributes(small: TelescopeState) -> None:
    antennas = antenna_names(3)
    assert small["sub_band"] == "l"
    assert small["sdp_l0_n_chans"] == 4096
    assert small["sdp_l0_bandwidth"] == 856e6
    assert small["sdp_l0_center_freq"] == 1284e6
    assert 7.9 < small["sdp_l0_int_time"] < 8.1
    bls = small["sdp_l0_bls_ordering"]
    n_bls = len(antennas) * (len(antennas) + 1) // 2 * 4
    assert isinstance(bls, np.ndarray)
    assert bls.shape == (n_bls, 2)
    assert small["sdp_l0_n_bls"] == n_bls
    assert list(bls[0]) == ["m000h", "m000h"]
    assert list(bls[-1]) == ["m002v", "m002v"]
    assert {str(inp)[:4] for inp in bls.ravel()} == set(antennas)
    config = small["sdp_config"]
    assert config["outputs"]["sdp_l0"]["type"] == "sdp.vis"
    assert config["inputs"]["i0_antenna_channelised_voltage"]["antennas"] == antennas
    assert small["sub_pool_resources"].split(",")[: len(antennas)] == antennas
    for ant in antennas:
        observer = small[f"{ant}_observer"]
        assert observer.startswith(f"{ant}, -30:42:39.8, 21:26:38.0, 1035.0, 13.5, ")
        assert len(observer.split(",")) == 8


def test_capture_block_keys(small: TelescopeState) -> None:
    cb = small.view(CBID)
    assert isinstance(cb["obs_params"], dict)
    assert cb["obs_params"]["duration"] == 300.0
    assert small[f"{CBID}_obs_params"] == cb["obs_params"]
    # As katdal reads them: the capture-stream view falls back to the stream's attributes.
    stream = small.view("sdp_l0").view(f"{CBID}_sdp_l0")
    assert stream["first_timestamp"] == START
    assert stream["n_chans"] == 4096
    assert small[f"{CBID}_sdp_l0_first_timestamp"] == START


def test_indexed_keys(small: TelescopeState) -> None:
    gains = small.get(f"{CBID}_cal_product_G")
    assert set(gains) == {(ant, pol) for ant in antenna_names(3) for pol in "hv"}
    assert all(isinstance(gain, complex) for gain in gains.values())
    assert small.get_indexed(f"{CBID}_cal_product_G", ("m001", "v")) == gains["m001", "v"]
    flags = small.get(f"{CBID}_sdp_l0_dump_flag_fraction")
    n_dumps = int(300.0 // small["sdp_l0_int_time"])
    assert sorted(flags) == list(range(n_dumps))
    for fraction in flags.values():
        assert fraction.dtype == np.float32
        assert fraction.shape == (3,)
        assert np.all((fraction >= 0) & (fraction <= 1))


@pytest.mark.parametrize(("duration", "rate"), [(600.0, 1.0), (300.0, 2.0), (100.0, 0.3)])
def test_sample_counts(duration: float, rate: float) -> None:
    ts = build(n_antennas=2, duration=duration, rate=rate)
    n_samples = round(duration * rate)
    expected_times = [START + k / rate for k in range(n_samples)]
    for ant in antenna_names(2):
        for axis in ("azim", "elev"):
            samples = ts.get_range(f"{ant}_pos_actual_scan_{axis}", st=0)
            assert [t for _, t in samples] == expected_times
            assert all(isinstance(value, float) for value, _ in samples)
    azim = np.array([value for value, _ in ts.get_range("m000_pos_actual_scan_azim", st=0)])
    elev = np.array([value for value, _ in ts.get_range("m000_pos_actual_scan_elev", st=0)])
    assert np.all((azim >= -185) & (azim <= 275))
    assert np.all((elev > 0) & (elev <= 90))
    # Smooth: no step bigger than a slew can make between samples.
    assert np.max(np.abs(np.diff(elev))) < 10.0 / rate

    wind_step = max(1, round(WIND_INTERVAL * rate))
    assert len(ts.get_range("anc_mean_wind_speed", st=0)) == len(range(0, n_samples, wind_step))

    obs_activity = ts.get_range("obs_activity", st=0)
    assert obs_activity[0] == ("slew", START)
    assert len(ts.get_range("cbf_target", st=0)) == len(
        ts.get_range(f"{CBID}_obs_script_log", st=0)
    )
    for ant in antenna_names(2):
        activity = ts.get_range(f"{ant}_activity", st=0)
        assert len(activity) == len(obs_activity)
        assert activity[0] == ("slew", START)
        assert {value for value, _ in activity} <= ACTIVITIES

    # Every sensor sample lies within the pointing span.
    for key in ts.keys():
        if ts.key_type(key) is KeyType.MUTABLE:
            times = [t for _, t in ts.get_range(key, st=0)]
            assert expected_times[0] <= min(times) and max(times) <= expected_times[-1]


def test_default_observation_has_thousands_of_samples() -> None:
    ts = build()
    total = sum(
        len(ts.get_range(key, st=0, return_encoded=True))
        for key in ts.keys()
        if ts.key_type(key) is KeyType.MUTABLE
    )
    assert total >= 16 * 2 * 600
    assert [value for value, _ in ts.get_range("m000_activity", st=0)[:2]] == ["slew", "track"]


def dump(ts: TelescopeState) -> dict[str, Any]:
    """Everything in `ts`, as stored bytes."""
    result: dict[str, Any] = {}
    for key in ts.keys():
        if ts.key_type(key) is KeyType.MUTABLE:
            result[key] = ts.get_range(key, st=0, return_encoded=True)
        else:
            result[key] = ts.get(key, return_encoded=True)
    return result


def test_deterministic() -> None:
    kwargs: dict[str, Any] = {"n_antennas": 3, "duration": 120.0, "rate": 1.0}
    first, again = build(seed=3, **kwargs), build(seed=3, **kwargs)
    assert dump(first) == dump(again)
    for key in ("m002_pos_actual_scan_azim", "m001_activity", "anc_mean_wind_speed"):
        assert first.get_range(key, st=0) == again.get_range(key, st=0)
    other = build(seed=4, **kwargs)
    assert dump(other).keys() == dump(first).keys()
    assert other.get_range("m002_pos_actual_scan_azim", st=0) != first.get_range(
        "m002_pos_actual_scan_azim", st=0
    )
    assert other["m000_observer"] != first["m000_observer"]


def test_build_through_a_view() -> None:
    ts = TelescopeState()
    build_demo(ts.view("sim"), n_antennas=1, duration=30.0)
    assert ts["sim_sdp_l0_n_chans"] == 4096
    assert ts[f"sim_{CBID}_obs_params"]["duration"] == 30.0
    assert ts.get_range("sim_m000_pos_actual_scan_azim", st=0)[0][1] == START


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_antennas": 0},
        {"duration": 0.0},
        {"duration": float("inf")},
        {"rate": -1.0},
        {"rate": float("nan")},
        {"duration": 1.0, "rate": 0.1},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_demo(TelescopeState(), **kwargs)
