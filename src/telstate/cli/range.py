"""``telstate range SOURCE KEY``: a sensor's samples, as a table, CSV or JSON.

Samples with ``st <= t < et`` (all of them by default); times are given as Unix
times or ISO 8601 date-times and shown in UTC.  CSV has one record a sample
(``timestamp,time,value``: the exact Unix time, its UTC date-time, the value as
text or JSON); JSON is a list of ``{"timestamp", "time", "value"}`` objects, with
anything JSON lacks given as its ``repr`` (see ``telstate._text.to_json``).
:func:`sensor_samples` is also how ``plot`` reads its sensors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import _text as text
from .._arrays import SampleArrays
from .._keys import KeyType
from .._sources import Source, not_found, opened, with_views
from .._text import CommandError
from ..client import TelescopeState

__all__ = ["run", "sensor_arrays", "sensor_samples", "time_arg"]


def time_arg(value: str | None, option: str) -> float | None:
    """The Unix time an option gives (None if not given)."""
    if value is None:
        return None
    try:
        return text.parse_time(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def sensor_samples(
    ts: TelescopeState,
    key: str,
    source: Source,
    st: float | None,
    et: float | None,
    include_previous: bool = False,
) -> list[tuple[Any, float]]:
    """The samples of sensor `key` with ``st <= t < et`` (all of them by default).

    Raises
    ------
    CommandError
        If `key` is missing or not a sensor, or `et` is before `st`.
    """
    _check_sensor(ts, key, source, st, et)
    return ts.get_range(key, **_bounds(st, et, include_previous))


def sensor_arrays(
    ts: TelescopeState,
    key: str,
    source: Source,
    st: float | None,
    et: float | None,
    include_previous: bool = False,
) -> SampleArrays:
    """:func:`sensor_samples` as numpy arrays (``get_range_arrays``)."""
    _check_sensor(ts, key, source, st, et)
    return ts.get_range_arrays(key, **_bounds(st, et, include_previous))


def _bounds(st: float | None, et: float | None, include_previous: bool) -> dict[str, Any]:
    """The command's window as get_range's arguments: every sample by default."""
    return {
        "st": 0.0 if st is None else st,
        "et": et,
        "include_previous": include_previous and st is not None,
    }


def _check_sensor(
    ts: TelescopeState, key: str, source: Source, st: float | None, et: float | None
) -> None:
    kind = ts.key_type(key)
    if kind is None:
        raise not_found(ts, key, source)
    if kind is not KeyType.MUTABLE:
        raise CommandError(
            f"{key} is {'an immutable' if kind is KeyType.IMMUTABLE else 'an indexed'} key, "
            "not a sensor: use 'telstate get'"
        )
    if st is not None and et is not None and et < st:
        raise CommandError("--et is before --st")


def run(args: argparse.Namespace) -> int:
    """``telstate range``."""
    st, et = time_arg(args.st, "--st"), time_arg(args.et, "--et")
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        samples = sensor_samples(ts, args.key, source, st, et)
    out = sys.stdout
    if args.format == "json":
        out.write("[")
        for i, (value, stamp) in enumerate(samples):
            item = {"timestamp": stamp, "time": text.utc(stamp), "value": text.to_json(value)}
            out.write(("\n" if i == 0 else ",\n") + json.dumps(item, allow_nan=False))
        out.write("\n]\n" if samples else "]\n")
    elif args.format == "csv":
        out.write(text.csv_line(["timestamp", "time", "value"]))
        for value, stamp in samples:
            out.write(text.csv_line([repr(stamp), text.utc(stamp), text.csv_value(value)]))
    else:
        if not samples:
            print("(no samples in that range)", file=sys.stderr)
            return 0
        rows = ([text.utc(stamp), text.one_line(value)] for value, stamp in samples)
        print("\n".join(text.table(rows, ["TIME (UTC)", "VALUE"], right=())))
    return 0
