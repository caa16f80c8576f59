"""Request parameters of ``telstate serve``'s endpoints, checked (pure, no I/O).

Every endpoint reads its query through these functions, which take a plain
mapping of strings and either return checked values or raise
:class:`ParamError` with a message for the page (the server answers 400).
Bounds keep a request from asking for unbounded work: a plot has at most
:data:`MAX_BUCKETS` buckets (a screen is narrower), a sample table at most
:data:`MAX_ROWS` rows, a live stream at most :data:`MAX_WATCHED` keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .._errors import TelstateError
from ._listing import key_from_id

__all__ = [
    "MAX_BUCKETS",
    "MAX_ROWS",
    "MAX_WATCHED",
    "ParamError",
    "Window",
    "download_format",
    "keys_param",
    "one_key",
    "positive_int",
    "window",
]

MAX_BUCKETS: Final = 4000
MAX_ROWS: Final = 1000
MAX_WATCHED: Final = 32
_FORMATS: Final = ("csv", "json")


class ParamError(ValueError, TelstateError):
    """A request parameter is missing or bad; the message says which and why."""


@dataclass(frozen=True)
class Window:
    """A time window ``start <= t <= end``; None is open."""

    start: float | None
    end: float | None


def one_key(query: Mapping[str, str], name: str = "key") -> str:
    """The full key named by the id in ``query[name]``."""
    ident = query.get(name)
    if not ident:
        raise ParamError(f"missing parameter {name!r}")
    try:
        return key_from_id(ident)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def keys_param(idents: Sequence[str]) -> list[str]:
    """The full keys named by repeated ``key`` parameters (at most MAX_WATCHED, no repeats)."""
    if len(idents) > MAX_WATCHED:
        raise ParamError(f"at most {MAX_WATCHED} keys at once")
    keys: list[str] = []
    for ident in idents:
        try:
            key = key_from_id(ident)
        except ValueError as exc:
            raise ParamError(str(exc)) from None
        if key not in keys:
            keys.append(key)
    return keys


def _time(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ParamError(f"{name}: {raw[:40]!r} is not a Unix time") from None
    if not math.isfinite(value) or value < 0:
        raise ParamError(f"{name}: must be a finite Unix time, not before 1970")
    return value


def window(query: Mapping[str, str]) -> Window:
    """The window of parameters ``st`` and ``et`` (Unix times, each optional)."""
    start, end = _time(query, "st"), _time(query, "et")
    if start is not None and end is not None and end < start:
        raise ParamError("et is before st")
    return Window(start, end)


def positive_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """An integer parameter from 1 to `maximum` (`default` when absent)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"{name}: {raw[:40]!r} is not an integer") from None
    if not 1 <= value <= maximum:
        raise ParamError(f"{name}: must be from 1 to {maximum}")
    return value


def download_format(query: Mapping[str, str]) -> str:
    """``csv`` (the default) or ``json``."""
    shown = query.get("format") or "csv"
    if shown not in _FORMATS:
        raise ParamError(f"format: {shown[:20]!r} is not one of csv, json")
    return shown
