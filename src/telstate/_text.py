"""Text for the ``telstate`` command: times, sizes, values, tables, views.

Pure functions only (no I/O), so that every rendering rule is tested directly.
Times are always shown in UTC as ISO 8601 with a ``Z`` (a time past the year
9999, which no date holds, as its Unix time: ``@1e+300``); a time given by the
user is a Unix time or an ISO 8601 date-time (UTC unless it names a zone).
Values are shown with ``repr`` (so ``'4096'`` and ``4096`` differ), numpy
arrays as a one-line summary unless asked in full, and converted for JSON with
anything JSON cannot hold (complex, bytes, NaN, tuples as dict keys) given as
its ``repr`` string.
"""

from __future__ import annotations

import json
import math
import pprint
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from ._keys import KeyType


class CommandError(Exception):
    """A user error: the command prints ``telstate: error: <message>`` and fails."""


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(char: re.Match[str]) -> str:
    code = ord(char.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(shown: str) -> str:
    """`shown` with control characters, newlines included, and lone surrogates (the
    non-UTF-8 bytes of a key name) written as ``\\x..`` escapes: for one-line
    messages and for text drawn in plots."""
    return _CONTROL.sub(_escape, shown)


def first_line(message: object) -> str:
    """The first non-blank line of `message` (an exception: its text, else its type)."""
    shown = str(message).strip()
    if not shown and isinstance(message, BaseException):
        return type(message).__name__
    return shown.splitlines()[0].strip() if shown else ""


# --------------------------------------------------------------------------- names

#: Names of key types on the command line and in listings.
TYPE_NAMES: Final = {
    KeyType.IMMUTABLE: "immutable",
    KeyType.MUTABLE: "sensor",
    KeyType.INDEXED: "indexed",
}
#: Accepted spellings of ``--type`` (``mutable`` and ``attribute`` as synonyms).
TYPE_CHOICES: Final = {
    "immutable": KeyType.IMMUTABLE,
    "attribute": KeyType.IMMUTABLE,
    "sensor": KeyType.MUTABLE,
    "mutable": KeyType.MUTABLE,
    "indexed": KeyType.INDEXED,
}

# --------------------------------------------------------------------------- times


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Marks a Unix time shown as a number, as GNU date's ``@1556012345`` does.
UNIX_MARK: Final = "@"
#: Durations from this many seconds up are shown as a number of seconds.
LONG_DURATION: Final = 1e9


def utc_datetime(timestamp: float) -> datetime | None:
    """The UTC date-time of a Unix time, or None if no `datetime` holds it.

    `datetime` reaches from the year 1 to 9999: a sensor timestamp may be any
    finite double from 0 up (1e300 or 1.8e308 among them), and 9999-12-31 is
    only 2.5e11 s after the epoch.  Computed from the epoch rather than with
    ``datetime.fromtimestamp``, so that the range does not depend on the
    platform's ``time_t``.
    """
    try:
        return _EPOCH + timedelta(seconds=timestamp)
    except (OverflowError, ValueError):  # beyond the years 1..9999, inf, nan
        return None


def utc(timestamp: float) -> str:
    """``2019-04-23T09:39:05.000Z``: a Unix time in UTC, to the millisecond.

    A time that no date can show (beyond the year 9999) is its Unix time as
    ``repr`` writes a float, after an ``@``: ``@1e+300``,
    ``@1.7976931348623157e+308``; :func:`parse_time` reads it back.
    """
    when = utc_datetime(timestamp)
    if when is None:
        return f"{UNIX_MARK}{float(timestamp)!r}"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """A Unix time from ``1556012345.5``, ``@1e+300`` or an ISO 8601 date-time.

    An ISO 8601 date-time without a zone is in UTC.

    Raises
    ------
    ValueError
        With a message saying what is accepted.
    """
    stripped = text.strip()
    number = stripped[len(UNIX_MARK) :] if stripped.startswith(UNIX_MARK) else stripped
    try:
        value = float(number)
    except ValueError:
        try:
            when = datetime.fromisoformat(stripped)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            value = when.timestamp()
        except (ValueError, OverflowError):
            raise ValueError(
                f"bad time {text!r}: give a Unix time (1556012345.5) "
                "or an ISO 8601 date-time (2019-04-23T09:40:00Z)"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"bad time {text!r}: must be finite (at most 1.7976931348623157e308) "
            "and not before 1970"
        )
    return value


def duration(seconds: float) -> str:
    """``1.500 s``, ``9 min 59 s``, ``14 h 02 min 05 s``; ``3.156e+10 s`` from 1e9 s up."""
    if not math.isfinite(seconds) or abs(seconds) >= LONG_DURATION:
        return f"{seconds:.4g} s"
    if abs(seconds) < 60:
        return f"{seconds:.3f} s"
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes:02d} min {secs:02d} s"
    return f"{sign}{minutes} min {secs:02d} s"


def span(first: float | None, last: float | None) -> str:
    """A sensor's time span: ``2019-04-23T09:39:05.000Z .. 09:49:04.000Z (9 min 59 s)``."""
    if first is None or last is None:
        return ""
    start, end = utc(first), utc(last)
    if start[:11] == end[:11] and not start.startswith(UNIX_MARK):
        end = end[11:]  # same day: the end needs only its time
    return f"{start} .. {end} ({duration(last - first)})"


# --------------------------------------------------------------------------- sizes


def size(nbytes: int) -> str:
    """``960 B``, ``1.2 KiB``, ``3.4 MiB``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{nbytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def plural(n: int, noun: str) -> str:
    """``1 key``, ``2 keys``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --------------------------------------------------------------------------- values

_FIRST_ITEMS = 6


class _Shown:
    """Stands in for a value inside pprint output: its repr is the given text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _element(array: np.ndarray[Any, Any], item: Any) -> str:
    """An element as numpy shows it for its dtype (``0.00494005`` for a float32)."""
    if array.dtype.kind in "fc":
        return str(array.dtype.type(item))
    return repr(_item(item))


def array_summary(array: np.ndarray[Any, Any]) -> str:
    """``array(shape=(16,), dtype=float32, min=0.001, max=0.2, first=[...])`` on one line."""
    parts = [f"shape={array.shape}", f"dtype={array.dtype}"]
    flat = array.ravel()
    if flat.size and array.dtype.kind in "biufUSMm":
        try:
            if array.dtype.kind in "US":
                ordered = np.sort(flat)
                low, high = ordered[0], ordered[-1]
            elif array.dtype.kind == "f" and not np.isnan(flat).all():
                low, high = np.nanmin(flat), np.nanmax(flat)
            else:
                low, high = flat.min(), flat.max()
            parts += [f"min={_element(array, low)}", f"max={_element(array, high)}"]
        except (TypeError, ValueError):  # pragma: no cover - exotic dtypes
            pass
    if flat.size:
        first = ", ".join(_element(array, x) for x in flat[:_FIRST_ITEMS])
        more = ", ..." if flat.size > _FIRST_ITEMS else ""
        parts.append(f"first=[{first}{more}]")
    return f"array({', '.join(parts)})"


def _summarised(value: Any) -> Any:
    """`value` with every numpy array replaced by its one-line summary."""
    if isinstance(value, np.ndarray):
        return _Shown(array_summary(value))
    if isinstance(value, dict):
        return {_summarised(k): _summarised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_summarised(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_summarised(v) for v in value)
    return value


def _safe_sort_key(item: tuple[Any, Any]) -> tuple[str, str]:
    return (type(item[0]).__name__, repr(item[0]))


def sorted_dict(value: Mapping[Any, Any]) -> dict[Any, Any]:
    """`value` in key order (keys of mixed types grouped by type): for indexed keys."""
    try:
        return dict(sorted(value.items()))
    except TypeError:
        return dict(sorted(value.items(), key=_safe_sort_key))


def pretty(value: Any, full: bool = False, width: int = 100) -> str:
    """A readable, possibly multi-line rendering (arrays summarised unless `full`)."""
    if full:
        with np.printoptions(threshold=sys.maxsize, linewidth=width):
            return pprint.pformat(value, width=width, sort_dicts=False)
    return pprint.pformat(_summarised(value), width=width, sort_dicts=False)


def one_line(value: Any) -> str:
    """A one-line rendering (arrays summarised): for tables and watch lines."""
    return repr(_summarised(value))


def to_json(value: Any) -> Any:
    """`value` as something :func:`json.dumps` turns into valid JSON.

    numpy scalars and arrays become numbers and lists; tuples lists; dicts keep
    str, int, float, bool and None keys (JSON makes them strings) and other
    keys become their repr; NaN, infinities, complex numbers, bytes and
    anything else JSON lacks become their repr string.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufU":
            return to_json(value.tolist())
        return repr(value)
    if isinstance(value, np.generic):
        return to_json(value.item()) if value.dtype.kind in "biufU" else repr(value)
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {_json_key(key): to_json(item) for key, item in value.items()}
    return repr(value)


def _json_key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, str | bool | int):
        return key
    if isinstance(key, float) and math.isfinite(key):
        return key
    return repr(_item(key))


def csv_value(value: Any) -> str:
    """A CSV cell: strings as they are, anything else as JSON text."""
    if isinstance(value, str):
        return value
    return json.dumps(to_json(value), allow_nan=False)


def csv_line(cells: Iterable[str]) -> str:
    """One CSV record and its ``\\n``, cells quoted as RFC 4180 has it when needed.

    Not :mod:`csv`'s writer: with ``\\n`` ending its lines it leaves a lone
    ``\\r`` unquoted, which readers then take for the end of the line.
    """
    return ",".join(_csv_cell(cell) for cell in cells) + "\n"


def _csv_cell(cell: str) -> str:
    if any(char in cell for char in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


# --------------------------------------------------------------------------- tables


def table(
    rows: Iterable[Sequence[str]],
    header: Sequence[str] | None = None,
    right: Iterable[int] | None = None,
) -> list[str]:
    """Rows as aligned columns, separated by two spaces.

    Columns in `right` are right-aligned; by default, those whose every
    non-empty cell is a number or a size (``12``, ``1.5 KiB``).
    """
    body = [list(row) for row in rows]
    every = ([list(header)] if header else []) + body
    if not every:
        return []
    n_columns = max(len(row) for row in every)
    widths = [
        max((len(row[i]) for row in every if i < len(row)), default=0) for i in range(n_columns)
    ]
    if right is None:
        aligned = {
            i
            for i in range(n_columns)
            if body and all(_NUMERIC.match(row[i]) for row in body if i < len(row) and row[i])
        }
    else:
        aligned = set(right)
    lines = []
    for row in every:
        cells = [
            cell.rjust(widths[i]) if i in aligned else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


_NUMERIC = re.compile(r"^-?\d[\d.]*( (B|KiB|MiB|GiB))?$")


# --------------------------------------------------------------------------- views


def view_listing(keys: Iterable[str], prefixes: Sequence[str]) -> dict[str, str]:
    """The names seen through a view with `prefixes`: ``{relative name: full key}``.

    Like ``_ipython_key_completions_`` each key is shown without its prefix, but
    as a user of the view sees it: each name once, resolved as a read resolves
    it (the highest prefix that has it wins, so shadowed keys are hidden), and
    keys of a higher prefix not repeated under a lower one with their prefix
    still on (``1556012345_obs_params`` is ``obs_params`` in the capture block's
    view, not both).
    """
    ordered = sorted(keys)
    result: dict[str, str] = {}
    for i, prefix in enumerate(prefixes):
        higher = prefixes[:i]
        for key in ordered:
            if not key.startswith(prefix) or len(key) == len(prefix):
                continue
            if any(h and key.startswith(h) for h in higher):
                continue
            result.setdefault(key[len(prefix) :], key)
    return dict(sorted(result.items()))
