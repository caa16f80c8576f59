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
from dataclasses import dataclass

from ._errors import InvalidTimestampError

__all__ = ["RangeQuery", "check_timestamp", "pack_timestamp", "resolve_range", "split_member"]

_DOUBLE = struct.Struct(">d")
_UINT64 = struct.Struct(">Q")


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


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """A resolved ``get_range`` query in both lexical and numeric form.

    Attributes
    ----------
    start_lex, stop_lex
        ZRANGEBYLEX bounds for Redis.
    start
        Numeric lower bound (inclusive); None when unbounded.
    stop
        Numeric upper bound (exclusive); None when unbounded.
    previous
        Whether to look up the last sample before the start.
    scan
        Whether the range itself is scanned (False when it is surely empty).
    """

    start_lex: bytes
    stop_lex: bytes
    start: float | None
    stop: float | None
    previous: bool
    scan: bool


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
    stop = math.inf if et is None else float(et)
    start = stop if st is None else float(st)
    if math.isnan(start) or math.isnan(stop):
        raise InvalidTimestampError("cannot use NaN start or end time")

    if start == math.inf:
        start_lex, start_num = b"+", math.inf
    elif start <= 0.0:
        start_lex, start_num = b"-", None
    else:
        start_lex, start_num = b"[" + _DOUBLE.pack(start), start

    if stop == math.inf:
        stop_lex, stop_num = b"+", None
    elif stop < 0.0 or (stop == 0.0 and not include_end):
        stop_lex, stop_num = b"-", 0.0
    else:
        packed = _DOUBLE.pack(stop + 0.0)
        if include_end:
            packed = _UINT64.pack(_UINT64.unpack(packed)[0] + 1)
        stop_lex, stop_num = b"(" + packed, _DOUBLE.unpack(packed)[0]

    return RangeQuery(
        start_lex=start_lex,
        stop_lex=stop_lex,
        start=start_num,
        stop=stop_num,
        previous=include_previous and start_lex != b"-",
        scan=start_lex != b"+" and stop_lex != b"-",
    )
