"""rows_match and column: strided reads of fixed-size records, against plain slicing."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate._strided import column, rows_match


@st.composite
def tables(draw: st.DrawFn) -> tuple[bytes, int, int, int, bytes]:
    """A buffer holding `pattern` at start + k * stride for k < count, and those four."""
    pattern = draw(st.binary(max_size=20))
    stride = draw(st.integers(max(1, len(pattern)), 40))
    count = draw(st.one_of(st.integers(0, 30), st.sampled_from([4095, 4096, 4097, 9000])))
    start = draw(st.integers(0, 9))
    fill = draw(st.binary(min_size=1, max_size=1))
    buf = bytearray(fill * (start + count * stride + draw(st.integers(0, 9))))
    for k in range(count):
        at = start + k * stride
        buf[at : at + len(pattern)] = pattern
    return bytes(buf), start, stride, count, pattern


def _slow(buf: bytes, start: int, stride: int, count: int, pattern: bytes) -> bool:
    return all(
        buf[start + k * stride : start + k * stride + len(pattern)] == pattern for k in range(count)
    )


@settings(max_examples=300, deadline=None)
@given(table=tables(), data=st.data())
def test_rows_match_as_slicing_says(
    table: tuple[bytes, int, int, int, bytes], data: st.DataObject
) -> None:
    buf, start, stride, count, pattern = table
    octets = np.frombuffer(buf, np.uint8)
    assert rows_match(octets, start, stride, count, pattern)
    if count and pattern:
        # one byte changed anywhere: noticed exactly when it falls inside a pattern
        damaged = bytearray(buf)
        where = data.draw(st.integers(0, len(buf) - 1))
        damaged[where] ^= data.draw(st.integers(1, 255))
        expected = _slow(bytes(damaged), start, stride, count, pattern)
        assert (
            rows_match(np.frombuffer(bytes(damaged), np.uint8), start, stride, count, pattern)
            is expected
        )


@pytest.mark.parametrize("count", [3, 5000])
def test_rows_match_every_row_and_byte(count: int) -> None:
    pattern = b"\r\n$18\r\n"
    stride = 25
    buf = bytearray(b"x" * (count * stride + 7))
    for k in range(count):
        buf[k * stride : k * stride + 7] = pattern
    for row in (0, count // 2, count - 1):
        for byte in range(len(pattern)):
            damaged = bytearray(buf)
            damaged[row * stride + byte] ^= 0x40
            assert not rows_match(
                np.frombuffer(bytes(damaged), np.uint8), 0, stride, count, pattern
            )
    assert rows_match(np.frombuffer(bytes(buf), np.uint8), 0, stride, count, pattern)


def test_column_reads_big_endian_fields_in_place() -> None:
    rows = b"".join(b"h" + struct.pack(">d", k) + b"\r\n" for k in range(5))
    times = column(np.frombuffer(rows, np.uint8), 1, 11, 5, ">f8")
    assert times.astype(np.float64).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        column(np.frombuffer(rows, np.uint8), 1, 11, 6, ">f8")  # beyond the buffer
