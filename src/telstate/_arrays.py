"""Sensor samples as numpy arrays: a :class:`SampleBatch` turned into (values, timestamps).

A batch holds the encoded values back to back (``data``) with their end offsets
(``ends``).  Every MessagePack value starts with ``0xff`` and a type byte, and the
type byte alone tells the size of numbers and the length header of strings, so
the type bytes of the whole batch (``data[starts + 1]``) are read with one numpy
gather.  When they show one homogeneous kind, the values are converted without a
Python object per sample:

* numbers of one encoding (all ``0xcb`` doubles, all ``0xd3`` int64 ...) and
  numpy scalars of one dtype: one strided view of the payloads, cast once;
* numbers of mixed encodings (MessagePack stores each int in its smallest
  form, so 5, 300 and -7 take three encodings): gathered per encoding, at most
  ten gathers, then merged;
* booleans and one-byte ints: the type byte is the value;
* strings and bytes: the length headers are decoded per header form, the
  payloads are scattered into a zero-padded ``(n, width)`` matrix that is viewed
  as a fixed-width ``str_`` / ``bytes_`` array.  Non-ASCII text is decoded once
  as a whole (which validates it) and re-encoded as UTF-32, whose code units are
  the array's characters.

Anything else (None, containers, mixtures of kinds, pickles, corrupt values)
is decoded one value at a time with :func:`~._codec.decode_value` (so refused
pickles still raise) and then classified by :func:`values_array`.

The resulting dtype depends only on the decoded values, never on the path:

=====================================  ==========================================
values                                 dtype
=====================================  ==========================================
none (an empty batch)                  float64 (empty)
all float                              float64
all int                                int64; uint64 if some exceed int64 and
                                       none is negative; else object
int and float mixed                    float64 if every int is exactly a double,
                                       else object
all bool                               bool
all complex                            complex128
all str                                ``str_`` of the longest length (*)
all bytes                              ``bytes_`` of the longest length (*)
numpy scalars, all of one dtype        that dtype (*)
anything else, or bool mixed with      object
numbers
=====================================  ==========================================

(*) Fixed-width strings cannot end in NUL characters (numpy strips them), and a
single long value widens every row, so str / bytes values become an object array
when one ends in a NUL or when the padded array would take more than
``_PAD_FACTOR`` times the characters actually held (plus ``_PAD_SLACK``).  Numpy
scalars of a zero-width dtype also become an object array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._codec import decode_value
from ._samples import SampleBatch, decode_batch
from ._strided import Rows, gather, tables_match

__all__ = [
    "SampleArrays",
    "batch_arrays",
    "batches_arrays",
    "fixed_arrays",
    "strided_numbers",
    "values_array",
]

_Array = NDArray[Any]

# A str / bytes batch stays fixed-width while padding costs at most this factor (in
# characters) over what the values hold, plus some slack for small batches.
_PAD_FACTOR = 8
_PAD_SLACK = 1 << 16

_INT64_MAX = 2**63 - 1


class SampleArrays(NamedTuple):
    """A sensor's samples as arrays, in time order.

    Attributes
    ----------
    values
        One value per sample; its dtype as :meth:`telstate.TelescopeState.get_range_arrays` says.
    timestamps
        Sample times, float64.
    """

    values: _Array
    timestamps: NDArray[np.float64]


def batch_arrays(batch: SampleBatch, decode: Callable[[bytes], Any] = decode_value) -> SampleArrays:
    """The samples of `batch` as a values array and a timestamps array.

    Parameters
    ----------
    batch
        Samples as read from a backend.
    decode
        Decoder for the values that cannot be converted in bulk (the default
        refuses pickles unless they are allowed).

    Returns
    -------
    SampleArrays
        The values (dtype as in the table of :mod:`telstate._arrays`) and the
        timestamps.  The timestamps may share memory with `batch`.

    Raises
    ------
    DecodeError
        If a value cannot be decoded (including a refused pickle).
    """
    times = np.asarray(batch.times, dtype=np.float64)
    n = len(times)
    if not n:
        return SampleArrays(np.empty(0, np.float64), np.empty(0, np.float64))
    values = _bulk(np.frombuffer(batch.data, np.uint8), np.asarray(batch.ends, np.int64), decode)
    if values is None:
        values = values_array([value for value, _ in decode_batch(batch, decode)])
    return SampleArrays(values, times)


def fixed_arrays(
    times: _Array, data: _Array, ends: _Array, decode: Callable[[bytes], Any] = decode_value
) -> SampleArrays | None:
    """New arrays from samples whose values share one size and header, or None.

    For values held in the process: `times`, `data` (the values back to back)
    and `ends` (their end offsets, counted from any origin) may be views of a
    store's buffers, borrowed (see ``SampleStore.borrow``): the arrays returned
    never share memory with them.  None when the values differ in size or are
    not of a kind converted in bulk; :func:`batch_arrays` then decides.

    Raises
    ------
    DecodeError
        If the first value cannot be decoded.
    """
    n = len(times)
    size = len(data) // n if n else 0
    # n values of `size` bytes fill `data` exactly when every step of `ends` is `size`.
    if size < 2 or size * n != len(data) or not (np.diff(ends) == size).all():
        return None
    values = _fixed(data, n, size, decode)
    if values is None:
        return None
    return SampleArrays(values, np.array(times, np.float64))


def batches_arrays(
    batches: Sequence[SampleBatch], decode: Callable[[bytes], Any] = decode_value
) -> list[SampleArrays]:
    """:func:`batch_arrays` of each of `batches` (the sensors of a ``get_ranges``).

    Batches of numbers that all have one fixed-size encoding (all ``0xcb`` doubles,
    say: most sensors) are converted together: their values are joined and checked
    and converted once, each result being a slice of the whole (so a result keeps
    the others' values alive as long as it lives).  The dtype of each result is
    the one :func:`batch_arrays` gives it alone.
    """
    results: list[SampleArrays | None] = [None] * len(batches)
    groups: dict[bytes, list[int]] = {}
    for i, batch in enumerate(batches):
        n = len(batch.times)
        head = bytes(batch.data[:2])  # data may be bytes or a uint8 array
        if (
            n > _SMALL_JOINED
            and len(batch.data) == n * _JOINED.get(head[1:], 0)
            and head[:1] == b"\xff"
        ):
            groups.setdefault(head[1:], []).append(i)
    for kind, members in groups.items():
        if len(members) > 1:
            joined = _joined([batches[i] for i in members], kind)
            if joined is not None:
                for i, arrays in zip(members, joined, strict=True):
                    results[i] = arrays
    return [
        batch_arrays(batch, decode) if arrays is None else arrays
        for batch, arrays in zip(batches, results, strict=True)
    ]


def _buffer(data: bytes | _Array) -> bytes | memoryview:
    """A batch's values as a buffer (they may be bytes or a uint8 array)."""
    return data if isinstance(data, bytes) else data.data


# Batches this long or shorter are converted alone (their times and ends are lists).
_SMALL_JOINED = 64


def _joined(batches: list[SampleBatch], kind: bytes) -> list[SampleArrays] | None:
    """The arrays of `batches`, all of encoding `kind`, converted at once; None if some
    value is not of that encoding after all."""
    size = _JOINED[kind]
    counts = np.fromiter((len(batch.times) for batch in batches), np.int64, len(batches))
    total = int(counts.sum())
    data = np.frombuffer(b"".join(_buffer(batch.data) for batch in batches), np.uint8)
    # every value `size` bytes long: each batch's ends step by `size` from `size`
    ends = np.concatenate([np.asarray(batch.ends, np.int64) for batch in batches])
    steps = np.diff(ends, prepend=0)
    starts = np.cumsum(counts) - counts
    steps[starts] = ends[starts]
    if not (steps == size).all():
        return None
    values = strided_numbers([Rows(data, 0, size, total)], size)
    if values is None:
        return None
    return [
        SampleArrays(values[start : start + count], np.asarray(batch.times, np.float64))
        for batch, start, count in zip(batches, starts.tolist(), counts.tolist(), strict=True)
    ]


def strided_numbers(tables: Sequence[Rows], size: int) -> _Array | None:
    """The values of `size` bytes that start the records of `tables` (none empty) as one
    array, if all are numbers of one fixed-size encoding converted together (the
    encodings of :func:`batches_arrays`), else None; read in place, never copied first.
    """
    first = tables[0]
    kind = bytes(first.buf[first.start + 1 : first.start + 2])
    if _JOINED.get(kind) != size or not tables_match(tables, 0, b"\xff" + kind):
        return None
    code, floating = _NUMBERS[kind[0]]
    return gather(tables, 2, code, np.float64 if floating else np.int64)


# --------------------------------------------------------------------------- classification


def values_array(values: list[Any]) -> _Array:
    """An array of decoded values, with the dtype given by :mod:`telstate._arrays`'s rules."""
    if not values:
        return np.empty(0, np.float64)
    kinds = set(map(type, values))
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind is float:
            return np.array(values, np.float64)
        if kind is bool:
            return np.array(values, np.bool_)
        if kind is complex:
            return np.array(values, np.complex128)
        if kind is int:
            return _ints(values)
        if kind is str or kind is bytes:
            return _strings(values, kind)
        if issubclass(kind, np.generic):
            dtypes = {value.dtype for value in values}
            if len(dtypes) == 1 and (dtype := dtypes.pop()).itemsize and not dtype.hasobject:
                array = np.empty(len(values), dtype)
                array[...] = values
                return array
    elif kinds == {int, float} and all(
        int(float(value)) == value for value in values if type(value) is int
    ):
        return np.array(values, np.float64)  # ints are 64-bit: float() cannot overflow
    return _objects(values)


def _objects(values: list[Any]) -> _Array:
    # fromiter, unlike np.array, never looks inside tuples, lists or arrays
    return np.fromiter(values, dtype=object, count=len(values))


def _ints(values: list[int]) -> _Array:
    if max(values) <= _INT64_MAX:
        return np.array(values, np.int64)  # every MessagePack int is at least -2**63
    if min(values) >= 0:
        return np.array(values, np.uint64)
    return _objects(values)


def _strings(values: list[Any], kind: type) -> _Array:
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    nul = "\0" if kind is str else b"\0"
    if _too_padded(lengths) or any(value[-1:] == nul for value in values):
        return _objects(values)
    return np.array(values, np.str_ if kind is str else np.bytes_)


def _too_padded(lengths: NDArray[np.int64]) -> bool:
    width = int(lengths.max())
    return len(lengths) * width > _PAD_FACTOR * int(lengths.sum()) + _PAD_SLACK


def _exact_doubles(ints: _Array) -> NDArray[np.bool_]:
    """Whether each int64 / uint64 is exactly representable as a float64."""
    doubles = ints.astype(np.float64)
    limit = 2.0**64 if ints.dtype == np.uint64 else 2.0**63
    inside = (doubles < limit) & (doubles >= -(2.0**63))
    # Cast back only what fits (out-of-range casts are undefined), then compare.
    exact: NDArray[np.bool_] = inside & (np.where(inside, doubles, 0.0).astype(ints.dtype) == ints)
    return exact


# --------------------------------------------------------------------------- bulk paths

# Number encodings: type byte -> (payload dtype, is float)
_NUMBERS: dict[int, tuple[str, bool]] = {
    0xCA: (">f4", True), 0xCB: (">f8", True),
    0xCC: (">u1", False), 0xCD: (">u2", False), 0xCE: (">u4", False), 0xCF: (">u8", False),
    0xD0: (">i1", False), 0xD1: (">i2", False), 0xD2: (">i4", False), 0xD3: (">i8", False),
}  # fmt: skip

# Type byte (as bytes) -> value size, of the encodings batches_arrays converts together:
# not 0xcf, as a uint64 batch's dtype depends on its own values.
_JOINED: dict[bytes, int] = {
    bytes([kind]): 2 + np.dtype(code).itemsize
    for kind, (code, _) in _NUMBERS.items()
    if kind != 0xCF
}

# str and bin encodings: type byte -> bytes of the length field after it
_STR: dict[int, int] = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN: dict[int, int] = {0xC4: 1, 0xC5: 2, 0xC6: 4}


def _gather(data: _Array, at: _Array, width: int) -> _Array:
    """Rows of `width` bytes starting at each of `at` (which must fit)."""
    rows: _Array = data[at[:, None] + np.arange(width)]
    return rows


def _bulk(data: _Array, ends: _Array, decode: Callable[[bytes], Any]) -> _Array | None:
    """The values decoded with numpy, or None if they need decoding one by one."""
    n = len(ends)
    size = len(data) // n
    if size >= 2 and size * n == len(data) and _evenly(ends, size):
        # Values of one size (most sensors): their rows are checked in place, no gather
        values = _fixed(data, n, size, decode)
        if values is not None:
            return values
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1]
    sizes = ends - starts
    if (sizes < 2).any() or (data[starts] != 0xFF).any():
        return None  # empty values, pickles, unknown headers: decode will say
    kinds = data[starts + 1]
    size = int(sizes[0])
    if (sizes == size).all():
        values = _fixed(data, n, size, decode)
        if values is not None:
            return values
    first = int(kinds[0])
    if first in _NUMBERS or first < 0x80 or first >= 0xE0:
        return _numbers(data, starts, sizes, kinds)
    if 0xA0 <= first <= 0xBF or first in _STR:
        return _text(data, starts, sizes, kinds, binary=False)
    if first in _BIN:
        return _text(data, starts, sizes, kinds, binary=True)
    return None


def _evenly(ends: _Array, size: int) -> bool:
    """Whether every value is `size` bytes long (`ends` steps by `size` from `size`)."""
    return bool(ends[0] == size) and bool((np.diff(ends) == size).all())


def _fixed(data: _Array, n: int, size: int, decode: Callable[[bytes], Any]) -> _Array | None:
    """Values of one size sharing their header bytes: one strided view of the payloads."""
    rows = data.reshape(n, size)
    if size == 2:
        codes = rows[:, 1]
        if (rows[:, 0] == 0xFF).all() and ((codes == 0xC2) | (codes == 0xC3)).all():
            flags: _Array = codes == 0xC3
            return flags
        return None  # one-byte ints go the mixed-number way; nil is an object
    sample = decode(rows[0].tobytes())
    if isinstance(sample, np.generic):
        dtype = sample.dtype
        if not dtype.itemsize or dtype.hasobject:
            return None
        target = dtype
    elif type(sample) is complex:
        dtype, target = np.dtype(">c16"), np.dtype(np.complex128)
    elif type(sample) is float or type(sample) is int:
        kind = int(rows[0, 1])
        if kind not in _NUMBERS:
            return None  # a one-byte int is size 2; ints of other shapes are not here
        dtype = np.dtype(_NUMBERS[kind][0])
        target = np.dtype(np.float64 if _NUMBERS[kind][1] else np.int64)
    else:
        return None
    head = size - dtype.itemsize
    # One column at a time: comparing the (n, head) block at once is ~8x slower.
    if head < 2 or not all((rows[:, j] == rows[0, j]).all() for j in range(head)):
        return None
    record = np.dtype([("head", np.uint8, (head,)), ("value", dtype)])
    field = data.view(record)["value"]
    if dtype == np.dtype(">u8") and (field > _INT64_MAX).any():
        return field.astype(np.uint64)
    return field.astype(target)


def _numbers(data: _Array, starts: _Array, sizes: _Array, kinds: _Array) -> _Array | None:
    """Ints and floats of mixed encodings, gathered per encoding."""
    n = len(kinds)
    one_byte = (kinds < 0x80) | (kinds >= 0xE0)  # fixints: the type byte is the value
    if not (sizes[one_byte] == 2).all():
        return None
    ints = np.zeros(n, np.int64)
    ints[one_byte] = kinds[one_byte].view(np.int8)
    floats: _Array | None = None
    is_float = np.zeros(n, bool)
    big = False  # some uint64 above the int64 range (held wrapped in `ints`)
    handled = one_byte.copy()
    for kind in np.unique(kinds[~one_byte]).tolist():
        if kind not in _NUMBERS:
            return None
        code, floating = _NUMBERS[kind]
        dtype = np.dtype(code)
        where = np.flatnonzero(kinds == kind)
        if not (sizes[where] == 2 + dtype.itemsize).all():
            return None
        payload = _gather(data, starts[where] + 2, dtype.itemsize).view(dtype).ravel()
        handled[where] = True
        if floating:
            if floats is None:
                floats = np.zeros(n, np.float64)
            floats[where] = payload
            is_float[where] = True
        elif kind == 0xCF:
            unsigned = payload.astype(np.uint64)
            big = big or bool((unsigned > _INT64_MAX).any())
            ints[where] = unsigned.view(np.int64)
        else:
            ints[where] = payload
    if not handled.all():
        return None
    if big:
        if floats is not None:
            return None  # big ints with floats: per-sample rules decide
        negative = ints < 0  # the wrapped big ones, and true negatives of other encodings
        if (negative & (kinds != 0xCF)).any():
            return None  # mixed signs beyond int64: per-sample rules (object)
        return ints.view(np.uint64)
    if floats is None:
        return ints
    int_at = ~is_float
    if int_at.any() and not _exact_doubles(ints[int_at]).all():
        return None
    floats[int_at] = ints[int_at]
    return floats


def _text(
    data: _Array, starts: _Array, sizes: _Array, kinds: _Array, binary: bool
) -> _Array | None:
    """All str (or all bytes) values: a fixed-width array built by scattering the payloads."""
    n = len(kinds)
    head = np.full(n, -1, np.int64)  # bytes before the payload, after 0xff
    length = np.zeros(n, np.int64)
    if not binary:
        fix = (kinds >= 0xA0) & (kinds <= 0xBF)
        head[fix] = 1
        length[fix] = kinds[fix] & 0x1F
    forms = _BIN if binary else _STR
    for kind, width in forms.items():
        where = np.flatnonzero(kinds == kind)
        if not len(where):
            continue
        if not (sizes[where] >= 2 + width).all():
            return None
        field = _gather(data, starts[where] + 2, width).astype(np.int64)
        value = np.zeros(len(where), np.int64)
        for j in range(width):  # big-endian length of 1, 2 or 4 bytes
            value = value * 256 + field[:, j]
        head[where] = 1 + width
        length[where] = value
    if (head < 0).any() or not (sizes == 1 + head + length).all():
        return None
    # The payloads, back to back: drop each value's 0xff and header bytes.
    keep = np.ones(len(data), bool)
    for j in range(int(head.max()) + 1):
        keep[starts[head >= j] + j] = False
    payload = data[keep]
    offsets = np.cumsum(length) - length
    nonempty = length > 0
    units: _Array = payload
    counts = length
    if not binary:
        points, counts = _code_points(payload, offsets, length)
        if points is None:
            return None
        units = points
    if _too_padded(counts):
        return None
    if nonempty.any() and (units[(np.cumsum(counts) - 1)[nonempty]] == 0).any():
        return None  # a trailing NUL would be stripped by the fixed-width dtype
    width = max(1, int(counts.max()))
    firsts = np.cumsum(counts) - counts
    matrix = np.zeros(n * width, np.uint8 if binary else np.uint32)
    rows = np.repeat(np.arange(n, dtype=np.int64) * width - firsts, counts)
    matrix[rows + np.arange(len(units))] = units
    return matrix.view(f"S{width}" if binary else f"<U{width}")


def _code_points(payload: _Array, offsets: _Array, length: _Array) -> tuple[_Array | None, _Array]:
    """UTF-8 payloads as code points (one array) and the count per string."""
    if not len(payload) or int(payload.max()) < 0x80:
        return payload.astype(np.uint32), length  # ASCII: a byte is a character
    lead = (payload & 0xC0) != 0x80  # bytes that start a character
    nonempty = length > 0
    if not lead[offsets[nonempty]].all():
        return None, length  # a string that starts inside a character: let decode say
    try:
        text = payload.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return None, length
    # Each string starts on a character and the whole is valid, so each string is valid.
    leads = np.concatenate(([0], np.cumsum(lead)))
    counts = leads[offsets + length] - leads[offsets]
    return np.frombuffer(text.encode("utf-32-le"), np.uint32), counts
