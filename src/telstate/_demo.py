"""A synthetic MeerKAT-like observation, for demos, docs, tests and benchmarks.

:func:`build_demo` fills a telescope state with keys shaped like those of a real
SDP subarray: global attributes (``sub_band``, ``sdp_config``, ``m000_observer``),
stream attributes (``sdp_l0_n_chans``, ``sdp_l0_bls_ordering``), capture-block and
capture-stream keys (``1556012345_obs_params``, ``1556012345_sdp_l0_first_timestamp``),
sensors (antenna pointing and activity, weather, target, observation activity) and
indexed keys (calibration gains keyed by ``(antenna, pol)``, per-dump flag fractions
keyed by dump index).  It is the library's own fixture, not part of the command
line: ``telstate demo`` (:mod:`telstate.cli.demo`) builds it and summarises it.

Invariants the tests rely on:

* The output depends only on the arguments: every random number comes from one
  ``numpy.random.Generator`` seeded with `seed`, and time starts at the fixed
  epoch :data:`START` (2019-04-23T09:39:05Z), whose integer part names the
  capture block.
* Pointing sensors have ``round(duration * rate)`` samples at exactly
  ``START + k / rate``; every other sensor sample lies between the first and the
  last pointing sample, so those two bound the sensors' time span.
* The observation is a sequence of segments (slew, then track or raster scan),
  with pointing computed from real source coordinates and sidereal time at the
  MeerKAT site, plus small per-antenna pointing noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .client import TelescopeState

__all__ = ["START", "WIND_INTERVAL", "build_demo"]

#: Time of the first sample (seconds since the Unix epoch): 2019-04-23T09:39:05Z
START: Final = 1556012345.0
#: Interval between wind speed samples, in seconds (or every pointing sample if slower)
WIND_INTERVAL: Final = 10.0

# The MeerKAT array reference position; katpoint antenna descriptions give every
# antenna this position and put its own offset (metres east, north, up) in the
# delay model that follows the dish diameter.
_REF_LAT = "-30:42:39.8"
_REF_LON = "21:26:38.0"
_REF_ALT = 1035.0
_LAT_DEG = -(30 + 42 / 60 + 39.8 / 3600)
_LON_DEG = 21 + 26 / 60 + 38.0 / 3600
_DISH_DIAMETER = 13.5

# L-band correlator output, as the real sdp_l0 stream has it.
_N_CHANS = 4096
_BANDWIDTH = 856e6
_CENTER_FREQ = 1284e6
_INT_TIME = 7.996956928
_POLS = ("h", "v")

_SEGMENT_LENGTH = 150.0  # nominal seconds per slew + track/scan segment
_POINTING_NOISE = 0.001  # degrees (about 4 arcsec) of servo jitter
_SCAN_AMPLITUDE = 1.0  # degrees of azimuth either side of the target
_SCAN_PERIOD = 60.0  # seconds per back-and-forth raster leg pair


@dataclass(frozen=True)
class _Source:
    """A celestial source: katpoint description and J2000 position in degrees."""

    description: str
    ra: float
    dec: float


def _hms(text: str) -> float:
    h, m, s = (float(part) for part in text.split(":"))
    return 15.0 * (h + m / 60 + s / 3600)


def _dms(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    d, m, s = (abs(float(part)) for part in text.split(":"))
    return sign * (d + m / 60 + s / 3600)


def _source(name: str, tags: str, ra: str, dec: str) -> _Source:
    return _Source(f"{name}, radec {tags}, {ra}, {dec}", _hms(ra), _dms(dec))


# Real sources that a MeerKAT L-band observation might visit.
_CATALOGUE: Final = (
    _source("PKS 1934-63 | J1939-6342", "bpcal fluxcal", "19:39:25.03", "-63:42:45.6"),
    _source("J0408-6545", "bpcal fluxcal", "04:08:20.38", "-65:45:09.1"),
    _source("J1331+3030 | 3C 286", "fluxcal polcal", "13:31:08.29", "30:30:33.0"),
    _source("J0025-2602", "gaincal", "00:25:49.16", "-26:02:12.6"),
    _source("J0240-2309", "gaincal", "02:40:08.17", "-23:09:15.7"),
    _source("J0825-5010", "gaincal", "08:25:26.87", "-50:10:38.5"),
    _source("J1424-4913", "gaincal", "14:24:32.24", "-49:13:49.7"),
    _source("J1733-1304 | PKS 1730-130", "gaincal", "17:33:02.71", "-13:04:49.5"),
    _source("J1830-3602", "gaincal", "18:30:58.89", "-36:02:30.2"),
    _source("J2329-4730", "gaincal", "23:29:17.70", "-47:30:19.1"),
    _source("NGC 253", "target", "00:47:33.10", "-25:17:18.0"),
    _source("Fornax A | NGC 1316", "target", "03:22:41.70", "-37:12:30.0"),
    _source("Cen A | NGC 5128", "target", "13:25:27.62", "-43:01:08.8"),
    _source("NGC 6744", "target", "19:09:46.10", "-63:51:27.1"),
)


def _az_el(source: _Source, times: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], ...]:
    """Azimuth and elevation (degrees) of `source` from MeerKAT at unix `times`.

    Uses the IAU 1982 sidereal time and ignores precession, nutation and
    refraction: off by a fraction of a degree, which is plenty for a demo.
    """
    julian_days = times / 86400.0 + 2440587.5
    gmst = 280.46061837 + 360.98564736629 * (julian_days - 2451545.0)
    hour_angle = np.radians(gmst + _LON_DEG - source.ra)
    lat, dec = math.radians(_LAT_DEG), math.radians(source.dec)
    sin_el = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * np.cos(hour_angle)
    el = np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
    az = np.degrees(
        np.arctan2(
            -np.sin(hour_angle) * math.cos(dec),
            math.cos(lat) * math.sin(dec) - math.sin(lat) * math.cos(dec) * np.cos(hour_angle),
        )
    )
    # MeerKAT azimuth runs from -185 to 275 degrees, with north at 0.
    az = np.mod(az, 360.0)
    az = np.where(az >= 275.0, az - 360.0, az)
    return az, el


def _dms_text(degrees: float) -> str:
    """Angle as katpoint writes it: ``-0:04:04.4``."""
    sign = "-" if degrees < 0 else ""
    tenths = round(abs(degrees) * 36000)
    d, rest = divmod(tenths, 36000)
    m, s10 = divmod(rest, 600)
    return f"{sign}{d}:{m:02d}:{s10 // 10:02d}.{s10 % 10}"


def _observer(name: str, rng: np.random.Generator) -> str:
    """A katpoint antenna description with a plausible position and pointing model."""
    radius = min(40.0 + rng.exponential(700.0), 8000.0)
    angle = rng.uniform(0.0, 2 * math.pi)
    east, north, up = radius * math.sin(angle), radius * math.cos(angle), rng.normal(0.0, 3.0)
    fixed_h = 5800.0 + 0.02 * radius + rng.uniform(0.0, 100.0)
    fixed_v = fixed_h + rng.uniform(-2.0, 2.0)
    delay_model = f"{east:.3f} {north:.3f} {up:.4f} {fixed_h:.3f} {fixed_v:.3f}"
    pointing_model = " ".join(_dms_text(x) for x in rng.normal(0.0, 0.05, 8))
    return (
        f"{name}, {_REF_LAT}, {_REF_LON}, {_REF_ALT}, {_DISH_DIAMETER}, "
        f"{delay_model}, {pointing_model}, 1.22"
    )


@dataclass(frozen=True)
class _Segment:
    """One step of the observation plan: slew to `source`, then track or scan it."""

    start: float
    end: float
    source: _Source
    scan: bool


def _plan(duration: float) -> list[_Segment]:
    """Cut the observation into segments, in the order of a typical imaging run.

    A bandpass calibrator first, then gain calibrators alternating with the
    target (raster-scanned on every other visit); each time the source of the
    wanted kind that is highest in the middle of the segment.
    """
    n_segments = max(1, round(duration / _SEGMENT_LENGTH))
    edges = START + np.arange(n_segments + 1) * (duration / n_segments)
    segments = []
    for i in range(n_segments):
        role = "bpcal" if i == 0 else "gaincal" if i % 2 else "target"
        middle = np.array([(edges[i] + edges[i + 1]) / 2])
        candidates = [s for s in _CATALOGUE if role in s.description.split(",")[1].split()]
        source = max(candidates, key=lambda s: float(_az_el(s, middle)[1][0]))
        segments.append(_Segment(float(edges[i]), float(edges[i + 1]), source, i % 4 == 2))
    return segments


def _phases(segment: _Segment, arrival: float) -> list[tuple[float, str]]:
    """The activity changes of one segment, given when the antenna gets on source."""
    length = segment.end - segment.start
    if not segment.scan:
        return [(segment.start, "slew"), (arrival, "track")]
    return [
        (segment.start, "slew"),
        (arrival, "scan_ready"),
        (arrival + 0.05 * length, "scan"),
        (segment.end - 0.1 * length, "scan_complete"),
    ]


def _pointing(
    times: np.ndarray[Any, Any],
    segments: Sequence[_Segment],
    arrivals: Sequence[float],
    initial: tuple[float, float],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Azimuth and elevation of one antenna: eased slews between tracks and scans."""
    az = np.empty_like(times)
    el = np.empty_like(times)
    here = initial
    for segment, arrival in zip(segments, arrivals, strict=True):
        mask = (times >= segment.start) & (times < segment.end)
        t = times[mask]
        target_az, target_el = _az_el(segment.source, t)
        if segment.scan:
            scan_start = arrival + 0.05 * (segment.end - segment.start)
            sweeping = np.clip(t - scan_start, 0.0, None)
            target_az = target_az + _SCAN_AMPLITUDE * np.sin(2 * math.pi * sweeping / _SCAN_PERIOD)
        # A raised-cosine ease from where the antenna was to where the source is.
        progress = np.clip((t - segment.start) / max(arrival - segment.start, 1e-9), 0.0, 1.0)
        ease = 0.5 - 0.5 * np.cos(math.pi * progress)
        az[mask] = here[0] + (target_az - here[0]) * ease
        el[mask] = here[1] + (target_el - here[1]) * ease
        if t.size:
            here = (float(az[mask][-1]), float(el[mask][-1]))
    return az, el


def _sample_count(duration: float, rate: float) -> int:
    return round(duration * rate)


def build_demo(
    ts: TelescopeState,
    *,
    n_antennas: int = 16,
    duration: float = 600.0,
    rate: float = 1.0,
    seed: int = 1,
) -> None:
    """Fill `ts` with a synthetic MeerKAT-like observation.

    The data is a deterministic function of the arguments.  Keys are written
    through `ts`, so a view puts all of them (capture-block keys included)
    under its first prefix.

    Parameters
    ----------
    ts
        Telescope state to write to (normally empty: attributes already set to
        other values raise :exc:`~telstate.ImmutableKeyError`).
    n_antennas
        Number of antennas, named ``m000``, ``m001``, ... (1 to 1000).
    duration
        Length of the observation in seconds.
    rate
        Pointing sensor sample rate in Hz: each antenna's azimuth and elevation
        get ``round(duration * rate)`` samples, at ``START + k / rate``.
    seed
        Seed of the random generator behind positions, noise and gains.

    Raises
    ------
    ValueError
        If an argument is out of range, or there would be no pointing sample.

    Notes
    -----
    Keys written, with ``XXX`` for each antenna and ``CB`` the capture block
    ID ``'1556012345'``:

    - attributes: ``sub_band``, ``sub_pool_resources``, ``sdp_config``,
      ``mXXX_observer``, ``sdp_l0_*`` and ``cal_*`` stream attributes,
      ``CB_obs_params``, ``CB_sdp_l0_first_timestamp``, ...
    - sensors: ``mXXX_pos_actual_scan_azim``, ``mXXX_pos_actual_scan_elev``,
      ``mXXX_activity``, ``anc_mean_wind_speed``, ``cbf_target``,
      ``obs_activity``, ``CB_obs_script_log``
    - indexed: ``CB_cal_product_G`` (``(antenna, pol)`` → complex gain) and
      ``CB_sdp_l0_dump_flag_fraction`` (dump index → float32 array per antenna)
    """
    if not 1 <= n_antennas <= 1000:
        raise ValueError(f"n_antennas must be between 1 and 1000, not {n_antennas}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be positive and finite, not {duration}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be positive and finite, not {rate}")
    n_samples = _sample_count(duration, rate)
    if n_samples < 1:
        raise ValueError(f"duration * rate = {duration * rate} gives no pointing samples")

    rng = np.random.default_rng(seed)
    times = START + np.arange(n_samples) / rate
    last = float(times[-1])
    antennas = [f"m{i:03d}" for i in range(n_antennas)]
    cbid = str(int(START))
    segments = _plan(duration)

    # -- global and stream attributes
    ts["sub_band"] = "l"
    ts["sub_product"] = "c856M4k"
    ts["sub_pool_resources"] = ",".join([*antennas, "cbf_1", "sdp_1", "anc", "tfr"])
    ts["sdp_config"] = {
        "version": "3.1",
        "inputs": {
            "camdata": {"type": "cam.http", "url": "http://cam.example.org/api/client/1"},
            "i0_antenna_channelised_voltage": {
                "type": "cbf.antenna_channelised_voltage",
                "antennas": antennas,
                "n_chans": _N_CHANS,
                "n_pols": len(_POLS),
                "adc_sample_rate": 2 * _BANDWIDTH,
                "bandwidth": _BANDWIDTH,
                "centre_frequency": _CENTER_FREQ,
            },
        },
        "outputs": {
            "sdp_l0": {
                "type": "sdp.vis",
                "src_streams": ["i0_baseline_correlation_products"],
                "output_int_time": _INT_TIME,
                "output_channels": [0, _N_CHANS],
                "continuum_factor": 1,
                "archive": True,
            },
            "cal": {
                "type": "sdp.cal",
                "src_streams": ["sdp_l0"],
                "parameters": {"k_solint": 10.0, "g_solint": 10.0, "refant": antennas[0]},
            },
        },
        "config": {"develop": False},
    }
    for name in antennas:
        ts[f"{name}_observer"] = _observer(name, rng)
    bls = [
        (f"{a}{pa}", f"{b}{pb}")
        for i, a in enumerate(antennas)
        for b in antennas[i:]
        for pa in _POLS
        for pb in _POLS
    ]
    ts["sdp_l0_stream_type"] = "sdp.vis"
    ts["sdp_l0_n_chans"] = _N_CHANS
    ts["sdp_l0_n_chans_per_substream"] = _N_CHANS // 16
    ts["sdp_l0_int_time"] = _INT_TIME
    ts["sdp_l0_bandwidth"] = _BANDWIDTH
    ts["sdp_l0_center_freq"] = _CENTER_FREQ
    ts["sdp_l0_sync_time"] = START - 3600.0
    ts["sdp_l0_n_bls"] = len(bls)
    ts["sdp_l0_bls_ordering"] = np.array(bls)
    ts["cal_stream_type"] = "sdp.cal"
    ts["cal_antlist"] = antennas
    ts["cal_pol_ordering"] = list(_POLS)
    ts["cal_refant"] = antennas[0]

    # -- the capture block and its capture streams
    # Capture-block views are made from the name with the first prefix in front,
    # so that building through a view puts *every* key under that prefix.
    base = ts.prefixes[0]
    cb = ts.view(base + cbid)
    cb["obs_params"] = {
        "observer": "Demo Observer",
        "description": "Synthetic imaging run",
        "proposal_id": "DEMO-20190423-01",
        "sb_id_code": "20190423-0001",
        "script_name": "image.py",
        "experiment_id": "20190423-0001",
        "targets": sorted({segment.source.description for segment in segments}),
        "duration": duration,
        "dump_rate": 1.0 / _INT_TIME,
    }
    cb["obs_label"] = "demo"
    sdp_l0 = ts.view(f"{base}{cbid}_sdp_l0")
    sdp_l0["first_timestamp"] = START
    sdp_l0["s3_endpoint_url"] = "http://archive.example.org:7480/"
    cal = ts.view(f"{base}{cbid}_cal")

    # -- sensors: observation-wide
    for segment in segments:
        cb.add("obs_script_log", f"Slewing to {segment.source.description}", segment.start)
        ts.add("cbf_target", segment.source.description, segment.start)
        arrival = segment.start + _slew_time(segment)
        for when, activity in _phases(segment, arrival):
            ts.add("obs_activity", activity, min(when, last))
    wind_step = max(1, round(WIND_INTERVAL * rate))
    wind = 4.0
    for t in times[::wind_step]:
        wind = max(0.0, wind + 0.1 * (6.0 - wind) + rng.normal(0.0, 0.5))
        ts.add("anc_mean_wind_speed", round(wind, 2), float(t))

    # -- sensors: per antenna
    for name in antennas:
        # Antennas reach the source at slightly different times.
        arrivals = [
            segment.start + _slew_time(segment) + rng.uniform(0.0, 0.05 * _length(segment))
            for segment in segments
        ]
        first_az, _ = _az_el(segments[0].source, times[:1])
        initial = (float(first_az[0]) + rng.uniform(-30.0, 30.0), 60.0 + rng.uniform(0.0, 20.0))
        az, el = _pointing(times, segments, arrivals, initial)
        az += rng.normal(0.0, _POINTING_NOISE, az.shape)
        el += rng.normal(0.0, _POINTING_NOISE, el.shape)
        for t, a, e in zip(times.tolist(), az.tolist(), el.tolist(), strict=True):
            ts.add(f"{name}_pos_actual_scan_azim", a, t)
            ts.add(f"{name}_pos_actual_scan_elev", e, t)
        for segment, arrival in zip(segments, arrivals, strict=True):
            for when, activity in _phases(segment, arrival):
                ts.add(f"{name}_activity", activity, min(when, last))

    # -- indexed keys
    for name in antennas:
        for pol in _POLS:
            amplitude = rng.normal(1.0, 0.05)
            phase = rng.uniform(-math.pi, math.pi)
            gain = complex(amplitude * math.cos(phase), amplitude * math.sin(phase))
            cal.set_indexed("product_G", (name, pol), gain)
    n_dumps = max(1, math.floor(duration / _INT_TIME))
    for dump in range(n_dumps):
        fraction = rng.beta(1.0, 20.0, n_antennas).astype(np.float32)
        sdp_l0.set_indexed("dump_flag_fraction", dump, fraction)


def _length(segment: _Segment) -> float:
    return segment.end - segment.start


def _slew_time(segment: _Segment) -> float:
    """Time to get on source: 30 s of slewing at most, and never most of the segment."""
    return min(30.0, 0.3 * _length(segment))
