"""Timestamps and time-range queries on sensors.

A sensor sample is stored as one *member*: the timestamp as an 8-byte
big-endian IEEE double followed by the encoded value.  For non-negative
doubles the big-endian bytes sort exactly like the numbers (sign bit clear,
exponent before mantissa), so members sort by (timestamp, value bytes).  That
is why timestamps must be finite and >= 0, and why -0.0 is stored as +0.0.

Redis answers time queries with ZRANGEBYLEX on those members; the memory
backend answers the same queries on numbers.  :func:`resolve_range` computes
both forms of the bounds in one place so the two backends cannot disagree:

=====================  ================  =========================
bound                  lexical (Redis)   numeric (memory)
=====================  ================  =========================
start t <= 0           ``-``             no lower bound
start t > 0            ``[`` + pack(t)   ts >= t
start +inf             ``+``             nothing to scan
end +inf               ``+``             no upper bound
end t < 0, or t == 0   ``-``             nothing to scan
exclusive end t        ``(`` + pack(t)   ts < t
inclusive end t        ``(`` + pack(t)+1 ts < next double after t
=====================  ================  =========================

The inclusive end adds one to the 8 bytes read as an unsigned integer: the next
representable double, so "< next" is "<= t".  The sample before the start (for
``include_previous``) is the last member below ``[`` + pack(t), i.e. ts < t; it
is looked up only when the start is not ``-``.  A key that is not a sensor is an
error only when a lookup or scan actually runs: that is what Redis does.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

from ._errors import InvalidTimestampError

__all__ = ["RangeQuery", "check_timestamp", "pack_timestamp", "resolve_range", "split_member"]

_DOUBLE = struct.Struct(">d")
_UINT64 = struct.Struct(">Q")
_INF = math.inf


def check_timestamp(ts: float) -> float:
    """A sample timestamp as a float, or InvalidTimestampError if unusable."""
    ts = float(ts)
    if not 0.0 <= ts < math.inf:  # also false for NaN
        kind = "Negative" if ts < 0 else "Non-finite"
        raise InvalidTimestampError(f"{kind} timestamps ({ts}) are not supported")
    return ts + 0.0  # turns -0.0 into +0.0


def pack_timestamp(ts: float) -> bytes:
    """The 8 bytes that start a member (`ts` must have passed :func:`check_timestamp`)."""
    return _DOUBLE.pack(ts + 0.0)


def split_member(member: bytes) -> tuple[bytes, float]:
    """Encoded value and timestamp of a sensor member."""
    return member[8:], _DOUBLE.unpack_from(member)[0]


class RangeQuery(NamedTuple):
    """A resolved ``get_range`` query.

    Attributes
    ----------
    start
        Lower bound (inclusive); None when there is none; +inf when nothing
        can be scanned.
    stop
        Upper bound (exclusive, already moved to the next double for an
        inclusive end); None when there is none.
    previous
        Whether to look up the last sample before the start.
    scan
        Whether the range itself is scanned (False when it is surely empty).
    """

    start: float | None
    stop: float | None
    previous: bool
    scan: bool

    def lex_bounds(self) -> tuple[bytes, bytes]:
        """The ZRANGEBYLEX bounds of the query for Redis (see the table above)."""
        if self.start is None:
            start = b"-"
        elif self.start == math.inf:
            start = b"+"
        else:
            start = b"[" + _DOUBLE.pack(self.start)
        if self.stop is None:
            stop = b"+"
        elif not self.scan:
            stop = b"-"
        else:
            stop = b"(" + _DOUBLE.pack(self.stop)
        return start, stop


def resolve_range(
    st: float | None, et: float | None, include_previous: bool | None, include_end: bool
) -> RangeQuery:
    """Apply ``get_range``'s defaults and compute the bounds.

    Defaults, in this order: `include_previous` None means True when `st` is
    None, else False; `et` None means +inf; `st` None means `et`.  NaN bounds
    raise InvalidTimestampError; negative and infinite bounds are allowed.
    """
    if include_previous is None:
        include_previous = st is None
    stop = _INF if et is None else float(et)
    start = stop if st is None else float(st)
    if start != start or stop != stop:
        raise InvalidTimestampError("cannot use NaN start or end time")

    lower: float | None = start if start > 0.0 else None
    upper: float | None
    if stop == _INF:
        upper, empty = None, False
    elif stop < 0.0 or (stop == 0.0 and not include_end):
        upper, empty = 0.0, True
    else:
        upper, empty = stop + 0.0, False
        if include_end:
            upper = _DOUBLE.unpack(_UINT64.pack(_UINT64.unpack(_DOUBLE.pack(upper))[0] + 1))[0]
    return RangeQuery(
        lower, upper, include_previous and lower is not None, lower != _INF and not empty
    )
