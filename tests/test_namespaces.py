"""Tests for telstate._namespaces: the one rule that sorts keys into namespaces."""

from __future__ import annotations

from collections import Counter

from telstate._namespaces import count_namespaces, find_streams, namespace


def test_find_streams() -> None:
    keys = [
        "sdp_l0_n_chans",
        "sdp_l0_int_time",
        "sdp_l0_continuum_n_chans",
        "sdp_l0_continuum_int_time",
        "cal_refant",
        "1_sdp_l0_continuum_first_timestamp",
        "1_sdp_l0_first_timestamp",
        "1_obs_params",
        "obs_activity",
        "2_flags_stream_type",
        "m000_observer",
    ]
    streams = find_streams(keys, {"outputs": {"cal": {}}})
    assert streams == ["sdp_l0_continuum", "sdp_l0", "flags", "cal"]
    assert namespace("1_sdp_l0_continuum_first_timestamp", streams) == (
        "capture stream",
        "1_sdp_l0_continuum",
    )
    assert namespace("1_obs_params", streams) == ("capture block", "1")
    assert namespace("cal_refant", streams) == ("stream", "cal")
    assert namespace("m000_observer", streams) == ("antenna", "m000")
    assert namespace("obs_activity", streams) == ("global", "")


def test_antennas_of_meerkat_and_ska() -> None:
    assert namespace("m063_pos_actual_scan_azim", []) == ("antenna", "m063")
    assert namespace("s0121_observer", []) == ("antenna", "s0121")
    assert namespace("m00_observer", []) == ("global", "")  # too few digits
    assert namespace("x000_observer", []) == ("global", "")


def test_longest_stream_wins() -> None:
    streams = ["sdp_l0_continuum", "sdp_l0"]
    assert namespace("sdp_l0_continuum_n_chans", streams) == ("stream", "sdp_l0_continuum")
    assert namespace("sdp_l0_n_chans", streams) == ("stream", "sdp_l0")
    assert namespace("7_sdp_l0_continuum_x", streams) == ("capture stream", "7_sdp_l0_continuum")


def test_config_outputs_name_streams() -> None:
    assert find_streams([], {"outputs": {"cal": {}, "": {}, 3: {}}}) == ["cal"]
    assert find_streams([], {"outputs": ["cal"]}) == []
    assert find_streams([], "not a config") == []


def test_count_namespaces() -> None:
    keys = ["sdp_l0_stream_type", "sdp_l0_n_chans", "9_sdp_l0_first", "9_obs", "m001_a", "x"]
    assert count_namespaces(iter(keys)) == Counter(
        {
            ("stream", "sdp_l0"): 2,
            ("capture stream", "9_sdp_l0"): 1,
            ("capture block", "9"): 1,
            ("antenna", "m001"): 1,
            ("global", ""): 1,
        }
    )
    assert count_namespaces(["cal_refant"], {"outputs": {"cal": {}}}) == {("stream", "cal"): 1}
