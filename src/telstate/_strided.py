"""Records of a fixed size in a byte buffer, read with numpy without copying them first.

A RESP array of bulk strings of one length, or the values of a sensor that all have
the same encoding, is a table: row ``k`` starts at ``start + k * stride``.  Numpy
reads such a table through a strided view (``np.ndarray`` over the buffer with
``strides=(stride,)``), whatever the stride and however unaligned the rows are:

* a field (a big-endian timestamp, a value's payload) is one view, converted by one
  ``astype`` or copied out by one ``tobytes``;
* bytes that every row must hold (a header, a ``\\r\\n``) are compared as unsigned
  integers of up to 8 bytes read from each row: a pattern of up to 16 bytes costs two
  comparisons, the second overlapping the first.  Comparing a (rows, width) byte
  matrix instead costs several times more: numpy then loops over the short rows.

Records of one size in several buffers (the members arrays of many sensors, as they
arrived) are read as :class:`Rows` each: a field of all of them is gathered into one
new array by one ``np.concatenate`` of their strided views (converting on the way),
without joining the records themselves first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Rows", "column", "gather", "rows_match", "tables_match"]


def column(buf: Any, start: int, stride: int, count: int, dtype: Any) -> NDArray[Any]:
    """A view of `count` items of `dtype`, `stride` bytes apart from `start` in `buf`.

    `buf` (a 1-d uint8 array, or any buffer) must hold every item: numpy raises
    ValueError otherwise.
    """
    # (shape, dtype, buffer, offset, strides) given by position: numpy parses keywords
    # several times slower, and a get_ranges makes thousands of these views
    return np.ndarray((count,), dtype, buf, start, (stride,))


def rows_match(buf: Any, start: int, stride: int, count: int, pattern: bytes) -> bool:
    """Whether `pattern` is at ``start + k * stride`` in `buf` for every k < `count`.

    The pattern is compared a few bytes at a time, as little-endian unsigned integers
    read from each row, the last read overlapping the one before it if needed (for
    a few rows, the bytes of the pattern in every row are copied out and compared).
    """
    if not count:
        return True
    if count <= _SMALL:  # one copy of the bytes, one memcmp: less numpy overhead
        rows = column(buf, start, stride, count, f"V{len(pattern)}")
        return rows.tobytes() == pattern * count
    for at, dtype, expected in _pieces(pattern):
        if not (column(buf, start + at, stride, count, dtype) == expected).all():
            return False
    return True


# Up to this many rows, the pattern's bytes of every row are copied out and compared
# in one go; beyond, integer comparisons copy nothing.
_SMALL = 4096


@functools.lru_cache(maxsize=64)
def _pieces(pattern: bytes) -> tuple[tuple[int, np.dtype[Any], int], ...]:
    """How :func:`rows_match` reads `pattern`: (offset, unsigned dtype, value) of each read."""
    size = len(pattern)
    width = 8 if size >= 8 else 4 if size >= 4 else 2 if size >= 2 else 1
    dtype = np.dtype(f"<u{width}")
    return tuple(
        (at, dtype, int.from_bytes(pattern[at : at + width], "little"))
        for at in ([*range(0, size - width, width), size - width] if size else [])
    )


class Rows(NamedTuple):
    """`records` records, `stride` bytes apart from offset `start` in `buf` (a uint8 array)."""

    buf: NDArray[Any]
    start: int
    stride: int
    records: int


def gather(tables: Sequence[Rows], offset: int, dtype: Any, into: Any) -> NDArray[Any]:
    """The field of `dtype` at `offset` in every record of `tables`, in order, converted to
    `into`: one pass over each table's strided view, all written into one new array."""
    views = [column(t.buf, t.start + offset, t.stride, t.records, dtype) for t in tables]
    if len(views) == 1:
        return views[0].astype(into)
    return np.concatenate(views, dtype=into)


def tables_match(tables: Sequence[Rows], offset: int, pattern: bytes) -> bool:
    """:func:`rows_match` of `pattern` at `offset` in every record of `tables`."""
    if len(tables) == 1:
        table = tables[0]
        return rows_match(table.buf, table.start + offset, table.stride, table.records, pattern)
    for at, dtype, expected in _pieces(pattern):
        if not (gather(tables, offset + at, dtype, dtype) == expected).all():
            return False
    return True
