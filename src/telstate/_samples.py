"""Compact storage and bulk decoding of sensor samples.

A sensor is a sorted set of members ``pack(ts) + value`` (see :mod:`._ranges`).
Held as a Python list of bytes objects, a million float samples cost about
70 MiB: every 18-byte member pays ~50 bytes of object overhead.  Here a sensor
is three flat buffers instead, ~26 bytes a sample::

    _times   array('d')   timestamps, ascending         [t0, t1, t2, ...]
    _data    bytearray    encoded values, back to back  [v0 | v1 | v2 ...]
    _ends    array('q')   end offset of each value      [e0, e1, e2, ...]

Order is (timestamp, value bytes), exactly the order of the members in Redis,
and a (timestamp, value) pair is stored once (set semantics).  Samples almost
always arrive in time order, so adding is an append; an out-of-order sample is
inserted with memmoves.

Reading a range returns a :class:`SampleBatch`: copies of the three buffers'
slices (never views: a view would stop the live buffers from growing).  Most
sensors hold values of one fixed shape (a float is always ``ff cb`` + 8
bytes), so :func:`decode_batch` checks the header bytes of the whole batch with
numpy and converts every value in one call, falling back to one
:func:`~._codec.decode_value` per sample otherwise.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._codec import decode_value
from ._ranges import RangeQuery, pack_timestamp

__all__ = ["SampleBatch", "SampleStore", "decode_batch"]

_Array = np.ndarray[Any, Any]


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples in time order: value ``i`` is ``data[ends[i-1]:ends[i]]`` (from 0)."""

    times: _Array  # float64
    data: bytes
    ends: _Array  # int64

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_members(cls, members: list[bytes]) -> SampleBatch:
        """Batch from sensor members (8-byte timestamp + value each)."""
        if not members:
            return EMPTY_BATCH
        times = np.frombuffer(b"".join(m[:8] for m in members), ">f8").astype(np.float64)
        values = [m[8:] for m in members]
        ends = np.cumsum(np.fromiter(map(len, values), np.int64, len(values)))
        return cls(times, b"".join(values), ends)

    def with_previous(self, previous: SampleBatch) -> SampleBatch:
        """This batch with the samples of `previous` in front."""
        if not len(previous):
            return self
        if not len(self):
            return previous
        return SampleBatch(
            np.concatenate([previous.times, self.times]),
            previous.data + self.data,
            np.concatenate([previous.ends, self.ends + len(previous.data)]),
        )

    def encoded(self) -> list[tuple[bytes, float]]:
        """The samples as (encoded value, timestamp) pairs."""
        if not len(self):
            return []
        data = self.data
        starts = [0, *self.ends[:-1].tolist()]
        return [
            (data[s:e], t)
            for s, e, t in zip(starts, self.ends.tolist(), self.times.tolist(), strict=True)
        ]


EMPTY_BATCH = SampleBatch(np.empty(0, np.float64), b"", np.empty(0, np.int64))


class SampleStore:
    """The samples of one sensor, sorted by (timestamp, value), without duplicates."""

    __slots__ = ("_data", "_ends", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._data = bytearray()
        self._ends = array("q")

    def __len__(self) -> int:
        return len(self._times)

    def _value(self, i: int) -> bytes:
        start = self._ends[i - 1] if i else 0
        return bytes(self._data[start : self._ends[i]])

    def add(self, ts: float, value: bytes) -> bool:
        """Add a sample; False if exactly this (ts, value) is already there."""
        times = self._times
        if not times or ts > times[-1]:
            times.append(ts)
            self._data += value
            self._ends.append(len(self._data))
            return True
        # Out of order or same time: find the place among samples with this timestamp.
        pos = bisect.bisect_left(times, ts)
        end = bisect.bisect_right(times, ts, pos)
        while pos < end:
            existing = self._value(pos)
            if existing == value:
                return False
            if existing > value:
                break
            pos += 1
        start = self._ends[pos - 1] if pos else 0
        times.insert(pos, ts)
        self._data[start:start] = value
        self._ends.insert(pos, start)
        ends = np.frombuffer(self._ends, np.int64)
        ends[pos:] += len(value)
        del ends  # release the buffer so the array can grow again
        return True

    def latest(self) -> tuple[bytes, float]:
        """Encoded value and timestamp of the last sample (the store is not empty)."""
        return self._value(len(self._times) - 1), self._times[-1]

    def members(self) -> Iterator[bytes]:
        """Every sample as a Redis sorted-set member, in order."""
        for i, ts in enumerate(self._times):
            yield pack_timestamp(ts) + self._value(i)

    def _slice(self, lo: int, hi: int) -> SampleBatch:
        if hi <= lo:
            return EMPTY_BATCH
        base = self._ends[lo - 1] if lo else 0
        times = np.array(self._times[lo:hi], np.float64)
        ends = np.array(self._ends[lo:hi], np.int64)
        data = bytes(self._data[base : self._ends[hi - 1]])
        if base:
            ends -= base
        return SampleBatch(times, data, ends)

    def query(self, query: RangeQuery) -> SampleBatch:
        """The samples a :class:`RangeQuery` asks for."""
        times = self._times
        lo = 0 if query.start is None else bisect.bisect_left(times, query.start)
        batch = EMPTY_BATCH
        if query.scan:
            hi = len(times) if query.stop is None else bisect.bisect_left(times, query.stop)
            batch = self._slice(lo, hi)
        if query.previous and lo > 0:
            batch = batch.with_previous(self._slice(lo - 1, lo))
        return batch


# --------------------------------------------------------------------------- bulk decoding

# Values that are one MessagePack byte (after the 0xff header): fixints, nil, booleans.
_ONE_BYTE: dict[int, object] = {b: b for b in range(0x80)}
_ONE_BYTE.update({b: b - 256 for b in range(0xE0, 0x100)})
_ONE_BYTE.update({0xC0: None, 0xC2: False, 0xC3: True})

# MessagePack type byte -> numpy dtype of the fixed-size payload that follows it.
_FIXED: dict[int, str] = {
    0xCA: ">f4", 0xCB: ">f8",
    0xCC: ">u1", 0xCD: ">u2", 0xCE: ">u4", 0xCF: ">u8",
    0xD0: ">i1", 0xD1: ">i2", 0xD2: ">i4", 0xD3: ">i8",
}  # fmt: skip


def _bulk_values(data: bytes, n: int, size: int) -> list[Any] | None:
    """Decode `n` values of `size` bytes each in one go, or None if not possible."""
    rows = np.frombuffer(data, np.uint8).reshape(n, size)
    if not (rows[:, 0] == 0xFF).all():
        return None
    kind = int(rows[0, 1])
    if size == 2:
        table = _ONE_BYTE
        codes = rows[:, 1].tolist()
        if all(code in table for code in set(codes)):
            return [table[code] for code in codes]
        return None
    dtype = _FIXED.get(kind)
    if dtype is None or np.dtype(dtype).itemsize != size - 2 or not (rows[:, 1] == kind).all():
        return None
    fields = np.frombuffer(data, np.dtype([("h", "u1", 2), ("v", dtype)]))["v"]
    if kind in (0xCA, 0xCB):
        return fields.astype(np.float64).tolist()  # type: ignore[no-any-return]
    return fields.astype(np.uint64 if kind == 0xCF else np.int64).tolist()  # type: ignore[no-any-return]


def decode_batch(
    batch: SampleBatch, decode: Callable[[bytes], Any] = decode_value
) -> list[tuple[Any, float]]:
    """Decode a batch into (value, timestamp) pairs, in bulk where the values allow."""
    n = len(batch)
    if not n:
        return []
    times = batch.times.tolist()
    data = batch.data
    size = len(data) // n
    # Equal total and first length is not proof of equal lengths: check all.
    if n >= 8 and size * n == len(data) and (np.diff(batch.ends, prepend=0) == size).all():
        values = _bulk_values(data, n, size)
        if values is not None:
            return list(zip(values, times, strict=True))
    starts = [0, *batch.ends[:-1].tolist()]
    return [
        (decode(data[s:e]), t) for s, e, t in zip(starts, batch.ends.tolist(), times, strict=True)
    ]
