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
slices (not views: a live view would stop the buffers from growing).  A reader
that converts the samples at once, holding the lock that guards the writers,
may :meth:`~SampleStore.borrow` views instead (no copy), as
``get_range_arrays`` does in the process's backends.  Most
sensors hold values of one fixed shape (a float is always ``ff cb`` + 8
bytes), so :func:`decode_batch` checks the header bytes of the whole batch with
numpy and converts every value in one call, falling back to one
:func:`~._codec.decode_value` per sample otherwise.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import threading
import traceback
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ._codec import decode_value
from ._ranges import RangeQuery, pack_timestamp

__all__ = ["SampleBatch", "SampleStore", "decode_batch"]

_Array = np.ndarray[Any, Any]
T = TypeVar("T")


# Below this many samples, plain lists beat numpy's per-call overhead.
_SMALL = 64


def _as_list(values: _Array | list[Any]) -> list[Any]:
    return values if isinstance(values, list) else values.tolist()


def _as_bytes(data: bytes | _Array) -> bytes:
    return data if isinstance(data, bytes) else data.tobytes()


@dataclass(slots=True)  # not frozen: that makes creation twice as slow on a hot path
class SampleBatch:
    """Samples in time order: value ``i`` is ``data[ends[i-1]:ends[i]]`` (from 0).

    `times` and `ends` are numpy arrays (float64, int64) for big batches and
    plain lists for small ones; `data` is bytes, or a uint8 array for big
    batches (on Linux numpy asks for huge pages for big arrays, so copying a big
    batch out of a store costs little more than a memcpy, not a page fault every
    4 KiB as a new bytes object does).
    """

    times: _Array | list[float]
    data: bytes | _Array
    ends: _Array | list[int]

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_members(cls, members: list[bytes]) -> SampleBatch:
        """Batch from sensor members (8-byte timestamp + value each)."""
        n = len(members)
        if not n:
            return EMPTY_BATCH
        if n <= _SMALL:
            values = [m[8:] for m in members]
            times = np.frombuffer(b"".join(m[:8] for m in members), ">f8").tolist()
            ends = list(itertools.accumulate(map(len, values)))
            return cls(times, b"".join(values), ends)
        sizes = set(map(len, members))
        if len(sizes) == 1 and (size := sizes.pop()) > 8:
            # Fixed-size members (most sensors): numpy copies them into one array in C
            # (faster than bytes.join), then columns are sliced.
            rows = np.array(members, dtype=f"S{size}").view(np.uint8).reshape(n, size)
            return cls.from_rows(rows)
        lengths = np.fromiter(map(len, members), np.int64, n)
        joined = np.frombuffer(b"".join(members), np.uint8)
        starts = np.cumsum(lengths) - lengths
        stamp_index = starts[:, None] + np.arange(8)
        times = joined[stamp_index].view(">f8").ravel().astype(np.float64)
        keep = np.ones(len(joined), bool)
        keep[stamp_index.ravel()] = False
        return cls(times, joined[keep].tobytes(), np.cumsum(lengths - 8))

    @classmethod
    def from_rows(cls, rows: _Array) -> SampleBatch:
        """Batch from a (count, size) uint8 array of members of one size (> 8 bytes)."""
        count, size = rows.shape
        times = np.ascontiguousarray(rows[:, :8]).view(">f8").ravel().astype(np.float64)
        data = np.ascontiguousarray(rows[:, 8:]).tobytes()
        return cls(times, data, np.arange(1, count + 1, dtype=np.int64) * (size - 8))

    def encoded(self) -> list[tuple[bytes, float]]:
        """The samples as (encoded value, timestamp) pairs."""
        if not len(self):
            return []
        data = _as_bytes(self.data)
        ends = _as_list(self.ends)
        starts = [0, *ends]  # one longer than ends: zip stops at the last value
        return [(data[s:e], t) for s, e, t in zip(starts, ends, _as_list(self.times), strict=False)]


EMPTY_BATCH = SampleBatch([], b"", [])


class SampleStore:
    """The samples of one sensor, sorted by (timestamp, value), without duplicates."""

    __slots__ = ("_data", "_ends", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._data = bytearray()
        self._ends = array("q")

    def __len__(self) -> int:
        return len(self._times)

    @classmethod
    def from_batch(cls, batch: SampleBatch) -> SampleStore:
        """A store holding the samples of `batch`, which must be sorted and distinct."""
        store = cls()
        if isinstance(batch.times, list):
            store._times.extend(batch.times)
            store._ends.extend(batch.ends)
        else:
            store._times.frombytes(np.ascontiguousarray(batch.times, np.float64).tobytes())
            store._ends.frombytes(np.ascontiguousarray(batch.ends, np.int64).tobytes())
        store._data += batch.data if isinstance(batch.data, bytes) else batch.data.data
        return store

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

    @property
    def nbytes(self) -> int:
        """Bytes held: values, timestamps and offsets."""
        return len(self._data) + 16 * len(self._times)

    def span(self) -> tuple[float, float]:
        """Timestamps of the first and last samples (the store is not empty)."""
        return self._times[0], self._times[-1]

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
        if hi - lo == 1:
            end = self._ends[lo]
            return SampleBatch([self._times[lo]], bytes(self._data[base:end]), [end - base])
        if hi - lo <= _SMALL:
            small = [end - base for end in self._ends[lo:hi]]
            return SampleBatch(
                self._times[lo:hi].tolist(), bytes(self._data[base : base + small[-1]]), small
            )
        # One copy of each slice; the views are released before the buffers can grow.
        times = np.frombuffer(self._times, np.float64)[lo:hi].copy()
        ends = np.frombuffer(self._ends, np.int64)[lo:hi] - base
        data = np.frombuffer(self._data, np.uint8)[base : self._ends[hi - 1]].copy()
        return SampleBatch(times, data, ends)

    def bounds(self, query: RangeQuery) -> tuple[int, int]:
        """The positions ``lo:hi`` of the samples a :class:`RangeQuery` asks for."""
        times = self._times
        lo = 0 if query.start is None else bisect.bisect_left(times, query.start)
        hi = lo
        if query.scan:
            hi = len(times) if query.stop is None else bisect.bisect_left(times, query.stop, lo)
        if query.previous and lo > 0:
            lo -= 1  # the sample before the start is next to the range: one slice
        return lo, hi

    def query(self, query: RangeQuery) -> SampleBatch:
        """The samples a :class:`RangeQuery` asks for."""
        return self._slice(*self.bounds(query))

    def borrow(self, lo: int, hi: int, use: Callable[[_Array, _Array, _Array], T]) -> T:
        """``use(times, data, ends)`` on views of samples ``lo:hi`` (``lo < hi``), not copies.

        `data` holds the values back to back and `ends` their end offsets
        counted from the start of the store's data, not of `data`.  The views
        live only for the call: `use` must not keep them nor return anything
        sharing their memory (a live view stops the buffers from growing), and
        the caller must hold the lock that guards the store's writers.
        """
        base = self._ends[lo - 1] if lo else 0
        times = np.frombuffer(self._times, np.float64)[lo:hi]
        ends = np.frombuffer(self._ends, np.int64)[lo:hi]
        data = np.frombuffer(self._data, np.uint8)[base : self._ends[hi - 1]]
        try:
            return use(times, data, ends)
        except BaseException as exc:
            # A traceback keeps the frames of `use`, and so the views, alive.
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            del times, ends, data


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


def _bulk_values(data: bytes | _Array, n: int, size: int) -> list[Any] | None:
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
    n = len(batch.times)
    if n == 1:
        return [(decode(_as_bytes(batch.data)), batch.times[0])]
    if n < 10_000:
        return _decode_batch(batch, n, decode)
    with _young_collections_paused():
        return _decode_batch(batch, n, decode)


# Every new tuple is tracked by the cyclic garbage collector, whose young-generation
# collections would run hundreds of times while a big result is built, for nothing:
# the tuples hold only values and floats.  Measured on 1 M floats: +9 % time on
# Python 3.11, +35 % on 3.12, +32 % on 3.13 with them running.  So a big decode pauses
# them, without touching the interpreter's on/off switch (gc.disable), which a program
# may use for its own reasons: it raises the young-generation threshold to _PAUSED and
# puts the old thresholds back when the last concurrent decode ends, unless the program
# changed the thresholds meanwhile (then its setting stands).  A program that turned
# collection off (gc.disable, or a threshold of 0) is left alone.  Explicit
# gc.collect() calls work as ever.
_PAUSED = 1 << 30
_pause_lock = threading.Lock()
_pauses = 0
_saved_thresholds: tuple[int, ...] = ()


@contextlib.contextmanager
def _young_collections_paused() -> Iterator[None]:
    global _pauses, _saved_thresholds
    with _pause_lock:
        if _pauses == 0:
            thresholds = gc.get_threshold()
            if not gc.isenabled() or thresholds[0] == 0:  # collection is off: leave it
                joined = False
            else:
                _saved_thresholds = thresholds
                gc.set_threshold(_PAUSED, *thresholds[1:])
                joined = True
        else:
            joined = True
        if joined:
            _pauses += 1
    try:
        yield
    finally:
        if joined:
            with _pause_lock:
                _pauses -= 1
                if _pauses == 0 and gc.get_threshold()[0] == _PAUSED:
                    gc.set_threshold(*_saved_thresholds)


def _decode_batch(
    batch: SampleBatch, n: int, decode: Callable[[bytes], Any]
) -> list[tuple[Any, float]]:
    if not n:
        return []
    times = _as_list(batch.times)
    data = batch.data
    size = len(data) // n
    # Equal total and first length is not proof of equal lengths: check all.
    if n > _SMALL and size * n == len(data) and (np.diff(batch.ends, prepend=0) == size).all():
        values = _bulk_values(data, n, size)
        if values is not None:
            return list(zip(values, times, strict=True))
    data = _as_bytes(data)
    ends = _as_list(batch.ends)
    starts = [0, *ends]  # one longer than ends: zip stops at the last value
    return [(decode(data[s:e]), t) for s, e, t in zip(starts, ends, times, strict=False)]
