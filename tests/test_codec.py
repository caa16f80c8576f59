"""The value codec: byte-for-byte katsdptelstate 1.0's, and safe on hostile input.

katsdptelstate (the reference implementation) is imported here only as an oracle: every
value our strategies make must encode to exactly its bytes and decode to exactly its
value.  The known, deliberate differences are tested as such:

* dicts with non-str keys decode (katsdptelstate refuses them);
* a numpy scalar of a structured dtype with padding decodes to its own dtype
  (katsdptelstate's ``np.dtype(descr)`` turns the padding into extra void fields);
* empty numpy str / bytes / void scalars (``np.array(["a", ""])[1]``) decode
  (katsdptelstate encodes them but fails to decode them);
* a .npy payload with bytes after the array data is refused (numpy.load ignores them);
* the padding of structured dtypes is kept as it is in memory (numpy.save writes
  uninitialised bytes there for strided arrays, numpy.load leaves it uninitialised), so
  comparisons with katsdptelstate ignore padding;
* arrays whose dtype numpy's own .npy header misdescribes (np.concatenate makes some)
  are an EncodeError, not bytes that nothing reads back right;
* tuples nested more than 200 deep are refused (katsdptelstate crashes the interpreter
  at ~170: every level of msgpack.unpackb keeps ~40 KiB on the C stack).
"""

# ruff: noqa: RUF001  (Greek field names are the point: they need version 3.0 .npy headers)

from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import enum
import math
import os
import pickle
import struct
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import katsdptelstate
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import telstate
from telstate import (
    ALLOWED_ENCODINGS,
    ENCODING_DEFAULT,
    ENCODING_MSGPACK,
    ENCODING_PICKLE,
    PICKLE_PROTOCOL,
    DecodeError,
    EncodeError,
    _codec,
    decode_value,
    encode_value,
    equal_encoded_values,
    set_allow_pickle,
)

_DOUBLE = struct.Struct("<d")
_SRC = Path(telstate.__file__).resolve().parent.parent


# --------------------------------------------------------------------------- helpers


def _same_dtype(got: np.dtype[Any], want: np.dtype[Any]) -> bool:
    # Equal, and described alike in a .npy header (byte order, offsets, padding).
    return bool(got == want) and got.str == want.str and got.descr == want.descr


def _raw_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """The bytes of every item in C order, padding included (unlike array.tobytes())."""
    if not array.nbytes:
        return b""
    items = np.asarray(array).view(np.dtype((np.void, array.dtype.itemsize)))
    return np.ascontiguousarray(items).tobytes()


def _field_bytes(array: np.ndarray[Any, Any]) -> bytes:
    """The bytes of every item in C order, with any padding between fields zeroed."""
    if not array.nbytes:
        return b""
    zeroed = np.zeros(array.shape, array.dtype)
    zeroed[...] = array  # numpy copies structured items field by field
    return _raw_bytes(zeroed)


def _has_padding(dtype: np.dtype[Any]) -> bool:
    if dtype.subdtype is not None:
        return _has_padding(dtype.subdtype[0])
    if dtype.fields is None:
        return False
    fields = [dtype.fields[name][0] for name in dtype.names or ()]
    return sum(f.itemsize for f in fields) != dtype.itemsize or any(map(_has_padding, fields))


def _numpy_save_garbles(value: Any) -> bool:
    """Whether `value` holds a strided array with padding, which numpy.save (and so
    katsdptelstate) writes with uninitialised bytes in the padding."""
    if isinstance(value, np.ndarray):
        contiguous = value.flags.c_contiguous or value.flags.f_contiguous
        return _has_padding(value.dtype) and not contiguous and value.nbytes > 0
    if isinstance(value, list | tuple):
        return any(_numpy_save_garbles(v) for v in value)
    if isinstance(value, dict):
        return any(_numpy_save_garbles(v) for v in value.values())
    return False


def assert_same(
    got: Any, want: Any, path: str = "value", *, flags: bool = True, padding: bool = True
) -> None:
    """Assert that `got` and `want` are the same value, bit for bit.

    Types must match exactly: tuple is not list, np.float32 is not float, np.str_ is not
    str.  Floats and complex numbers compare by their bits, so NaN matches NaN (with the
    same payload) and -0.0 does not match 0.0.  Arrays compare by dtype, shape and data in
    C order, whatever their memory layout (Fortran order, strides); the padding of
    structured dtypes too unless not `padding` (numpy.load leaves it uninitialised); and,
    when `flags`, by whether they are writeable.  numpy scalars compare by dtype and
    bytes.  Dicts compare keys in order, then values.
    """
    assert type(got) is type(want), f"{path}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, np.ndarray):
        assert _same_dtype(got.dtype, want.dtype), f"{path}: dtype {got.dtype!r} != {want.dtype!r}"
        assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
        data = _raw_bytes if padding else _field_bytes
        assert data(got) == data(want), f"{path}: array data differ"
        if flags:
            assert got.flags.writeable == want.flags.writeable, f"{path}: writeable differs"
    elif isinstance(want, np.generic):
        assert _same_dtype(got.dtype, want.dtype), f"{path}: dtype {got.dtype!r} != {want.dtype!r}"
        assert got.tobytes() == want.tobytes(), f"{path}: numpy scalar bytes differ"
    elif isinstance(want, float):
        assert _DOUBLE.pack(got) == _DOUBLE.pack(want), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, complex):
        bits = [_DOUBLE.pack(x) for x in (got.real, got.imag, want.real, want.imag)]
        assert bits[:2] == bits[2:], f"{path}: {got!r} != {want!r}"
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]", flags=flags, padding=padding)
    elif isinstance(want, dict):
        assert_same(list(got), list(want), f"{path}.keys()", flags=flags, padding=padding)
        for key, w in want.items():
            assert_same(got[key], w, f"{path}[{key!r}]", flags=flags, padding=padding)
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def _reference_misreads(value: Any) -> bool:
    """Whether katsdptelstate cannot decode `value` right (see the module doc).

    That is a numpy scalar whose dtype ``np.dtype(descr)`` does not rebuild (structured
    dtypes with padding; arrays are fine, as numpy.load uses ``descr_to_dtype``) or of
    zero width (an empty np.str_ or np.bytes_, which katsdptelstate cannot decode).
    """
    if isinstance(value, np.generic):
        descr = np.lib.format.dtype_to_descr(value.dtype)
        empty = value.dtype.itemsize == 0 and value.dtype.names is None
        return empty or bool(np.dtype(descr) != value.dtype)
    if isinstance(value, list | tuple):
        return any(_reference_misreads(v) for v in value)
    if isinstance(value, dict):
        return any(_reference_misreads(v) for v in value.values())
    return False


def _hexdiff(a: bytes, b: bytes) -> str:
    pairs = enumerate(zip(a, b, strict=False))
    i = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    return f"first difference at byte {i}: {a[i : i + 16].hex()} vs {b[i : i + 16].hex()}"


def check_identical(value: Any) -> None:
    """`value` encodes to katsdptelstate's bytes and decodes to its value (and to `value`)."""
    ours = encode_value(value)
    theirs = katsdptelstate.encode_value(value)
    if _numpy_save_garbles(value):
        # Identical but for the padding, where we write the array's own bytes.
        assert len(ours) == len(theirs)
        assert_same(decode_value(theirs), decode_value(ours), padding=False)
    else:
        assert ours == theirs, _hexdiff(ours, theirs)
    assert encode_value(value, ENCODING_MSGPACK) == ours
    got = decode_value(ours)
    if not _reference_misreads(value):
        assert_same(got, katsdptelstate.decode_value(theirs), padding=False)
    # And the round trip is exact, padding included (arrays come back contiguous and
    # writeable), and encoding what we decoded gives the same bytes.
    assert_same(got, value, flags=False)
    assert encode_value(got) == ours


def decodes_or_refuses(encoded: bytes) -> None:
    """decode_value returns a value or raises DecodeError, and nothing else."""
    with contextlib.suppress(DecodeError):
        decode_value(encoded, allow_pickle=False)


# --------------------------------------------------------------------------- strategies

_INT_EDGES = [0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129, 2**15, 2**16, -(2**15) - 1]
_INT_EDGES += [2**31, 2**32, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]
ints = st.integers(-(2**63), 2**64 - 1) | st.sampled_from(_INT_EDGES)
floats = (
    st.floats()
    | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324, 1.8e308])
    # Every bit pattern, so NaNs with payloads and signalling NaNs too.
    | st.binary(min_size=8, max_size=8).map(lambda b: _DOUBLE.unpack(b)[0])
)
complexes = st.complex_numbers() | st.builds(complex, floats, floats)

_PLAIN_CODES = ["b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"]
_PLAIN_CODES += ["c8", "c16", "S1", "S7", "U1", "U5", "M8[D]", "M8[s]", "M8[ns]", "m8[h]", "m8[us]"]
plain_dtypes = st.builds(
    lambda code, order: np.dtype(code).newbyteorder(order),
    st.sampled_from(_PLAIN_CODES),
    st.sampled_from("<>"),
)
# Inside structured dtypes the data are random bytes, and numpy cannot even print a U
# field holding code points past U+10FFFF, so fields are of the other kinds (and V).
field_dtypes = plain_dtypes.filter(lambda d: d.kind != "U") | st.just(np.dtype("V3"))


@st.composite
def structured_dtypes(draw: st.DrawFn, fields: st.SearchStrategy[np.dtype[Any]]) -> np.dtype[Any]:
    """A structured dtype: optional subarray fields, gaps between fields, trailing padding."""
    formats = draw(st.lists(fields, max_size=4))
    names = draw(
        st.lists(
            st.text("abcxyz_", min_size=1, max_size=3),
            min_size=len(formats),
            max_size=len(formats),
            unique=True,
        )
    )
    offset = 0
    offsets: list[int] = []
    full_formats: list[Any] = []
    for fmt in formats:
        shape = draw(st.sampled_from([(), (2,), (1, 3)]))
        offset += draw(st.sampled_from([0, 0, 1, 3]))  # padding before the field
        offsets.append(offset)
        full_formats.append((fmt, shape) if shape else fmt)
        offset += fmt.itemsize * math.prod(shape)
    itemsize = offset + draw(st.sampled_from([0, 0, 2]))  # trailing padding
    spec = {"names": names, "formats": full_formats, "offsets": offsets, "itemsize": itemsize}
    return np.dtype(spec)  # type: ignore[call-overload]


raw_dtypes = st.recursive(field_dtypes, structured_dtypes, max_leaves=6)


def _every_other(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A copy of `array` as every other item of a bigger one (neither C nor F contiguous).

    Not np.stack: numpy's promotion of structured dtypes can break them (see
    test_promoted_dtypes_refused), and its copies skip padding; raw items keep it.
    """
    bigger = np.zeros((*array.shape, 2), array.dtype)
    if array.dtype.itemsize:
        items = np.dtype((np.void, array.dtype.itemsize))
        bigger.view(items)[..., 0] = array.view(items)
    return bigger[..., 0]


_LAYOUTS: dict[str, Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]] = {
    "C": lambda a: a,
    "Fortran": np.asfortranarray,
    "strided": lambda a: _every_other(a),
    "reversed": lambda a: a[::-1] if a.ndim else a,  # negative strides
    "transposed": lambda a: a.T,  # Fortran-contiguous when 2-d or more
    "swapped": lambda a: np.swapaxes(a, 0, -1) if a.ndim else a,
}
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def raw_arrays(draw: st.DrawFn, shape: st.SearchStrategy[tuple[int, ...]]) -> np.ndarray[Any, Any]:
    """Arrays of structured (or void) dtypes, filled with random bytes, padding included."""
    array = np.zeros(draw(shape), draw(raw_dtypes))
    if array.nbytes:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        array.reshape(-1).view(np.uint8)[:] = np.frombuffer(rng.bytes(array.nbytes), np.uint8)
    return array


@st.composite
def numpy_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Arrays of many dtypes, shapes (0-d, empty) and memory layouts."""
    if draw(st.booleans()):
        array = draw(hnp.arrays(draw(plain_dtypes), shapes))
    else:
        array = draw(raw_arrays(shapes))
    return _LAYOUTS[draw(st.sampled_from(sorted(_LAYOUTS)))](array)


numpy_scalars = st.one_of(
    plain_dtypes.flatmap(lambda d: hnp.arrays(d, ())).map(lambda a: a[()]),
    raw_arrays(st.just(())).map(lambda a: a[()]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    complexes,
    st.text(),
    st.binary(),
    numpy_arrays(),
    numpy_scalars,
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4) | st.binary(max_size=3), children, max_size=4),
    ),
    max_leaves=10,
)

_IDENTITY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- identity


def test_constants_match_katsdptelstate() -> None:
    assert PICKLE_PROTOCOL == katsdptelstate.encoding.PICKLE_PROTOCOL == 2
    assert ENCODING_PICKLE == katsdptelstate.ENCODING_PICKLE == b"\x80"
    assert ENCODING_MSGPACK == katsdptelstate.ENCODING_MSGPACK == b"\xff"
    assert ENCODING_DEFAULT == katsdptelstate.ENCODING_DEFAULT == ENCODING_MSGPACK
    assert ALLOWED_ENCODINGS == katsdptelstate.ALLOWED_ENCODINGS
    assert isinstance(ALLOWED_ENCODINGS, frozenset)
    # Both errors are ValueErrors, as katsdptelstate's are.
    assert issubclass(DecodeError, ValueError) and issubclass(EncodeError, ValueError)
    assert issubclass(DecodeError, telstate.TelstateError)


@_IDENTITY_SETTINGS
@given(values)
def test_identical_to_katsdptelstate(value: Any) -> None:
    check_identical(value)


@_IDENTITY_SETTINGS
@given(numpy_arrays())
def test_arrays_identical_and_writeable(array: np.ndarray[Any, Any]) -> None:
    check_identical(array)
    check_identical([array])  # nested: the packer's path rather than the top-level one
    decoded = decode_value(encode_value(array))
    assert decoded.flags.writeable
    assert decoded.flags.c_contiguous or decoded.flags.f_contiguous


@_IDENTITY_SETTINGS
@given(numpy_scalars)
def test_numpy_scalars_identical(scalar: np.generic) -> None:
    check_identical(scalar)


@pytest.mark.parametrize(
    "value",
    [-(2**63), -(2**63) + 1, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1],
)
def test_int_edges(value: int) -> None:
    check_identical(value)
    check_identical([value, (value,), {"k": value}])


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 2**100, -(2**100), [1, 2**64], (2**64,), {"a": -(2**63) - 1}],
    ids=repr,
)
def test_ints_beyond_64_bits_raise(value: Any) -> None:
    with pytest.raises(Exception):  # noqa: B017  (whatever katsdptelstate says)
        katsdptelstate.encode_value(value)
    with pytest.raises(EncodeError):
        encode_value(value)
    # The per-thread packer is left clean for the next value.
    assert encode_value([1, 2]) == bytes.fromhex("ff 92 01 02")


def _big_structured() -> np.ndarray[Any, Any]:
    dtype = np.dtype({"names": ["a", "b"], "formats": ["<u2", ">f8"], "offsets": [1, 5]})
    array = np.zeros(1000, dtype)
    array.view(np.uint8)[:] = np.arange(array.nbytes, dtype=np.uint8)
    return array


_BIG_ARRAYS = {
    # > 4096 bytes, so decoding takes the top-level fast path; ext16 and ext32 headers.
    "f8": np.linspace(0, 1, 1000),
    "u1 ext32": np.arange(70_000, dtype=np.uint8),
    ">i4 Fortran": np.asfortranarray(np.arange(3000, dtype=">i4").reshape(50, 60)),
    "strided": np.arange(20_000, dtype=np.int16)[::3],
    "reversed 2-d": np.arange(6000, dtype="<c8").reshape(60, 100)[::-1, ::-2],
    "datetime64": np.arange(2000).astype("M8[s]"),
    ">timedelta64": np.arange(2000).astype(">m8[us]"),
    "U": np.array(["αβγ", "x", "€uro"] * 500),
    "structured padded": _big_structured(),
    "empty big dims": np.zeros((0, 100_000), np.float64),
    "void": np.zeros(1, "V5000"),
}


@pytest.mark.parametrize("name", sorted(_BIG_ARRAYS))
def test_big_arrays_identical(name: str) -> None:
    array = _BIG_ARRAYS[name]
    check_identical(array)
    check_identical({"nested": [array, (array[:1],)]})


@pytest.mark.parametrize(
    "value",
    [
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),  # subclasses: data only, as numpy.save
        np.zeros(3, np.dtype([])),  # itemsize 0
        np.arange(6, dtype=np.uint8).view(np.dtype({"names": [], "formats": [], "itemsize": 2})),
        np.zeros((), np.dtype([]))[()],
        np.zeros((2, 0), "U3"),
        np.array(b"", "S"),
        np.float64("nan"),
        np.longdouble(1) / 3,
        np.clongdouble(1j) / 3,
        np.datetime64("NaT"),
        np.timedelta64(-5, "ps"),
        np.void(b"\x00\x01\xff"),
        np.str_("αβ"),
        np.bytes_(b"a\x00b"),
        np.bool_(True),
        [np.float32(1.5), np.float64(1.5), 1.5],
        bytearray(b"ab"),  # packed as bin: decodes as bytes (checked below)
        memoryview(b"ab"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_odd_values_identical(value: Any) -> None:
    ours = encode_value(value)
    assert ours == katsdptelstate.encode_value(value)
    assert_same(decode_value(ours), katsdptelstate.decode_value(ours), padding=False)


def test_structured_u_fields_identical() -> None:
    dtype = np.dtype([("name", ">U4"), ("x", [("y", "<f2", (2,))]), ("t", "M8[ms]")])
    array = np.array([("αβ", ([1.5, -0.0],), 7), ("", ([np.nan, np.inf],), -1)], dtype)
    for value in (array, array[::-1], array[0], np.asfortranarray(np.stack([array] * 3))):
        check_identical(value)


def test_npy_version_3_header_identical() -> None:
    """Field names beyond latin-1 need .npy version 3.0 (numpy warns it writes one)."""
    dtype = np.dtype([("α", "<i4"), ("€", [("😀", ">f8")]), ("q'\\α\"", "u1")])
    array = np.zeros((3, 2), dtype)
    array.view(np.uint8)[...] = np.arange(array.nbytes, dtype=np.uint8).reshape(3, -1)
    for value in (array, np.asfortranarray(array), array[:, ::-1], np.tile(array, 200)):
        with pytest.warns(UserWarning, match="format 3.0"):
            ours = encode_value(value)
        with pytest.warns(UserWarning, match="format 3.0"):
            assert ours == katsdptelstate.encode_value(value)
        assert b"NUMPY\x03\x00" in ours[:16]
        assert_same(decode_value(ours), katsdptelstate.decode_value(ours))
        assert_same(decode_value(ours), value, flags=False)


def test_npy_version_2_header_identical() -> None:
    """A header over 64 KiB needs version 2.0; numpy.load refuses headers that long."""
    array = np.zeros(2, [(f"field{i:05}", "<i2") for i in range(4000)])
    with pytest.warns(UserWarning, match="format 2.0"):
        ours = encode_value(array)
    with pytest.warns(UserWarning, match="format 2.0"):
        assert ours == katsdptelstate.encode_value(array)
    with pytest.raises(katsdptelstate.DecodeError):
        katsdptelstate.decode_value(ours)
    with pytest.raises(DecodeError):
        decode_value(ours)


@pytest.mark.parametrize(
    "inner",
    [
        {"names": ["b"], "formats": ["?"], "offsets": [0], "itemsize": 2},
        {"names": [], "formats": [], "itemsize": 2},
    ],
    ids=["padded", "padding only"],
)
def test_promoted_dtypes_refused(inner: dict[str, Any]) -> None:
    """np.concatenate promotes structured dtypes and, with padding nested in a subarray,
    makes one that numpy's own .npy header misdescribes: katsdptelstate writes what
    nothing can read back (numpy.load misreads it, we refuse it); we refuse to encode."""
    dtype = np.dtype([("x", np.dtype(inner), (2,)), ("y", "u1")])  # type: ignore[call-overload]
    array = np.arange(3 * dtype.itemsize, dtype=np.uint8).view(dtype)
    check_identical(array)  # fine before promotion
    promoted = np.concatenate([array, array])
    assert promoted.dtype.itemsize == 5
    assert np.lib.format.descr_to_dtype(promoted.dtype.descr).itemsize != 5
    for value in (promoted, [promoted], promoted[::2]):
        with pytest.raises(EncodeError, match="cannot describe"):
            encode_value(value)
    theirs = katsdptelstate.encode_value(promoted)
    assert katsdptelstate.decode_value(theirs).dtype.itemsize != 5
    with pytest.raises(DecodeError, match="payload has"):
        decode_value(theirs)


def test_padded_structured_scalar_differs_from_katsdptelstate_by_design() -> None:
    dtype = np.dtype({"names": ["a", "b"], "formats": ["u1", "<i4"], "offsets": [0, 4]})
    scalar = np.array([(7, -2)], dtype)[0]
    encoded = encode_value(scalar)
    assert encoded == katsdptelstate.encode_value(scalar)
    assert_same(decode_value(encoded), scalar)  # the dtype round-trips, padding and all
    theirs = katsdptelstate.decode_value(encoded)
    assert theirs.dtype.names == ("a", "f1", "b")  # padding turned into a void field


@pytest.mark.parametrize(
    "value",
    [
        np.array(["a", ""])[1],
        np.array([b"a", b""])[1],
        np.bytes_(b""),
        np.str_(""),
        np.void(b""),
    ],
    ids=lambda v: str(v.dtype),
)
def test_empty_numpy_scalars_decode(value: np.generic) -> None:
    encoded = encode_value(value)
    assert encoded == katsdptelstate.encode_value(value)
    assert_same(decode_value(encoded), value)
    with pytest.raises(katsdptelstate.DecodeError, match="itemsize"):
        katsdptelstate.decode_value(encoded)
    # Only what the encoder writes (tobytes() pads S0 to 1 byte and U0 to 4).
    descr = encode_value(np.lib.format.dtype_to_descr(value.dtype))[1:]
    data = value.tobytes()
    for raw in (data + b"\0", data + b"x", b"x" * len(data)):
        if raw != data:
            forged = msgpack.packb(msgpack.ExtType(4, descr + raw))
            with pytest.raises(DecodeError):
                decode_value(b"\xff" + forged)


def test_deep_nesting() -> None:
    """Values nest as deep as katsdptelstate can read; forged deeper ones are refused."""
    value: Any = "leaf"
    for _ in range(100):
        value = (value,)
    check_identical(value)  # katsdptelstate copes with 100 (and crashes at ~170)
    for _ in range(100):
        value = (value,)
    assert_same(decode_value(encode_value(value)), value)  # 200 deep: ours still decodes
    # 201 deep and far beyond (the bytes are tiny): a DecodeError, not a crash.
    for depth in (101, 1000):  # two levels each
        forged = msgpack.packb([])
        for _ in range(depth):
            forged = msgpack.packb(msgpack.ExtType(1, msgpack.packb([msgpack.ExtType(1, forged)])))
        with pytest.raises(DecodeError, match="nested"):
            decode_value(b"\xff" + forged)
    # Threads with small stacks cope with the deepest value we decode.
    outcome: list[Any] = []
    old_size = threading.stack_size(512 * 1024)
    try:
        thread = threading.Thread(target=lambda: outcome.append(decode_value(encode_value(value))))
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_size)
    assert_same(outcome[0], value)
    # Encoding something absurdly deep is an EncodeError (katsdptelstate: RecursionError).
    for _ in range(sys.getrecursionlimit()):
        value = (value,)
    with pytest.raises(EncodeError):
        encode_value(value)
    assert encode_value(1) == b"\xff\x01"


# --------------------------------------------------------------------------- golden bytes

_GOLDEN_NPY_HEADER = (
    b"{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }"  # repr of the header dict
    + b" " * 20  # numpy >= 1.23 leaves room for the first axis to grow to 21 digits
    + b" " * 40  # padding so that the data start 64-byte aligned (10 + 118 = 128)
    + b"\n"
)
GOLDEN = [
    pytest.param(1, "ff 01", id="int"),  # msgpack header; positive fixint 1
    pytest.param("abc", "ff a3 616263", id="str"),  # header; fixstr of 3 bytes; 'abc'
    pytest.param(b"abc", "ff c4 03 616263", id="bytes"),  # header; bin8, length 3; 'abc'
    # header; ext8 of 3 bytes, type 1 (tuple); fixarray of 2; 1; 2
    pytest.param((1, 2), "ff c7 03 01 92 01 02", id="tuple"),
    pytest.param(None, "ff c0", id="None"),  # header; nil
    pytest.param(True, "ff c3", id="True"),  # header; true
    pytest.param(-1.5, "ff cb bff8000000000000", id="float"),  # header; float64, big-endian
    pytest.param({"a": [1]}, "ff 81 a1 61 91 01", id="dict"),  # fixmap 1; 'a'; fixarray [1]
    # header; fixext16 (16 bytes follow), type 2 (complex); real 1.0 and imag 2.0 as
    # big-endian doubles
    pytest.param(complex(1, 2), "ff d8 02 3ff0000000000000 4000000000000000", id="complex"),
    # header; fixext8 (8 bytes follow), type 4 (numpy scalar); descr as msgpack (fixstr of
    # 3 bytes, '<f4'); then the value's own bytes: 1.5 as a little-endian float32
    pytest.param(np.float32(1.5), "ff d7 04 a3 3c6634 0000c03f", id="float32"),
    pytest.param(
        np.array([1, 2, 3], "<i4"),
        "ff c7 8c 03"  # header; ext8 of 140 bytes (128-byte .npy header + 12 data), type 3
        "934e554d5059"  # .npy magic: \x93NUMPY
        "01 00"  # .npy format version 1.0
        "7600"  # header length 118, little-endian uint16
        + _GOLDEN_NPY_HEADER.hex()  # the header dict, space padded, newline
        + "01000000 02000000 03000000",  # the data: three little-endian int32
        id="int32 array",
    ),
]


@pytest.mark.parametrize(("value", "golden"), GOLDEN)
def test_golden_bytes(value: Any, golden: str) -> None:
    expected = bytes.fromhex(golden)
    assert encode_value(value) == expected
    assert katsdptelstate.encode_value(value) == expected
    assert_same(decode_value(expected), value)


def test_golden_python2_pickle() -> None:
    """Python 2 pickled str (before March 2019) decode as latin-1, as katsdptelstate's."""
    # PROTO 2; SHORT_BINSTRING of 4 bytes 'caf\xe9'; BINPUT 0; STOP
    encoded = bytes.fromhex("8002 55 04 636166e9 71 00 2e")
    assert decode_value(encoded, allow_pickle=True) == "café"
    assert katsdptelstate.decode_value(encoded, allow_pickle=True) == "café"


# --------------------------------------------------------------------------- non-str keys


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("ff 81 01 02", {1: 2}),  # fixmap 1: 1 -> 2
        ("ff 81 c7 03 01 92 01 02 a1 78", {(1, 2): "x"}),  # (1, 2) -> 'x'
        ("ff 82 c0 01 cb 3ff8000000000000 02", {None: 1, 1.5: 2}),
        ("ff 82 c3 01 01 02", {True: 2}),  # True and 1 are the same key: last one wins
    ],
)
def test_non_str_keys_decode(encoded: str, expected: dict[Any, Any]) -> None:
    data = bytes.fromhex(encoded)
    assert_same(decode_value(data), expected)
    with pytest.raises(katsdptelstate.DecodeError, match="map key"):
        katsdptelstate.decode_value(data)


def test_non_str_keys_round_trip() -> None:
    value = {1: 2, (1, ("a", b"b")): "x", None: [1.5], b"k": {2: 3}}
    assert_same(decode_value(encode_value(value)), value)


@pytest.mark.parametrize("key", ["91 01", "80", "c7 02 01 91 90"], ids=["list", "dict", "tuple"])
def test_unhashable_keys_refused(key: str) -> None:
    with pytest.raises(DecodeError):
        decode_value(bytes.fromhex(f"ff 81 {key} 01"))


# --------------------------------------------------------------------------- pickles


@pytest.fixture
def pickle_gate() -> Iterator[None]:
    """Start with pickles refused and no warning pending; restore the setting afterwards."""
    saved = (_codec._allow_pickle, _codec._warn_on_pickle)
    set_allow_pickle(False)
    try:
        yield
    finally:
        set_allow_pickle(*saved)


class _MakeDirectory:
    """Unpickles as os.mkdir(path): what a hostile pickle in a telescope state could do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


_PICKLED = {"a": (1, 2.5), "b": [b"x", "y"], "c": np.arange(3)}


def test_pickle_encoding_matches_katsdptelstate() -> None:
    ours = encode_value(_PICKLED, ENCODING_PICKLE)
    assert ours == katsdptelstate.encode_value(_PICKLED, ENCODING_PICKLE)
    assert ours == pickle.dumps(_PICKLED, protocol=PICKLE_PROTOCOL)
    assert ours[:2] == b"\x80\x02"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickles_refused_by_default(pickle_gate: None, protocol: int) -> None:
    encoded = pickle.dumps(_PICKLED, protocol=protocol)
    assert encoded[0] <= 0x80
    with pytest.raises(DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
        decode_value(encoded)
    with pytest.raises(DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
        decode_value(encoded, allow_pickle=False)
    assert_same(decode_value(encoded, allow_pickle=True), _PICKLED)
    set_allow_pickle(True)
    assert_same(decode_value(encoded), _PICKLED)
    assert_same(decode_value(encoded), katsdptelstate.decode_value(encoded, allow_pickle=True))
    with pytest.raises(DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
        decode_value(encoded, allow_pickle=False)  # the argument overrides the setting
    set_allow_pickle(False)
    with pytest.raises(DecodeError):
        decode_value(encoded)


def test_corrupt_pickle_is_decode_error(pickle_gate: None) -> None:
    for encoded in (b"\x80\x02garbage", b"\x80", b"\x00", pickle.dumps(1, 2)[:-1]):
        with pytest.raises(DecodeError):
            decode_value(encoded, allow_pickle=True)


def test_malicious_pickle_never_runs(pickle_gate: None, tmp_path: Path) -> None:
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        target = tmp_path / f"pwned{protocol}"
        evil = pickle.dumps(_MakeDirectory(target), protocol=protocol)
        with pytest.raises(DecodeError, match="KATSDPTELSTATE_ALLOW_PICKLE"):
            decode_value(evil)
        with pytest.raises(DecodeError):
            equal_encoded_values(evil, encode_value("x"))
        set_allow_pickle(True)
        with pytest.raises(DecodeError):
            decode_value(evil, allow_pickle=False)
        set_allow_pickle(False)
        assert not target.exists()
        # Control: the pickle really is live, so refusing it above meant something.
        assert decode_value(evil, allow_pickle=True) is None
        assert target.is_dir()


def test_set_allow_pickle_warns_once(pickle_gate: None) -> None:
    encoded = pickle.dumps([1, 2], protocol=2)
    set_allow_pickle(True, warn=True)
    assert decode_value(encode_value("msgpack")) == "msgpack"  # no pickle: no warning
    assert decode_value(encoded, allow_pickle=True) == [1, 2]  # explicit: no warning
    with pytest.warns(FutureWarning, match="set_allow_pickle") as record:
        assert decode_value(encoded) == [1, 2]
    assert len(record) == 1
    assert record[0].filename == __file__  # attributed to the caller of decode_value
    assert decode_value(encoded) == [1, 2]  # only once: a second warning would be an error


def test_warn_without_allow_does_nothing(pickle_gate: None) -> None:
    set_allow_pickle(False, warn=True)
    encoded = pickle.dumps([1, 2], protocol=2)
    with pytest.raises(DecodeError):
        decode_value(encoded)
    set_allow_pickle(True)
    assert decode_value(encoded) == [1, 2]  # and no warning was left pending


_ENV_SCRIPT = """
import pickle, telstate
try:
    print(telstate.decode_value(pickle.dumps({"a": 1}, 2)))
except telstate.DecodeError as exc:
    print("refused", "KATSDPTELSTATE_ALLOW_PICKLE" in str(exc))
"""


@pytest.mark.parametrize(
    ("setting", "output", "warns"),
    [
        (None, "refused True", False),
        ("0", "refused True", False),
        ("1", "{'a': 1}", False),
        ("yes", "refused True", True),
        ("", "refused True", True),
    ],
)
def test_environment_variable_at_import(setting: str | None, output: str, warns: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KATSDPTELSTATE_ALLOW_PICKLE",)}
    env["PYTHONPATH"] = os.pathsep.join([str(_SRC), env.get("PYTHONPATH", "")])
    env.pop("PYTHONWARNINGS", None)
    if setting is not None:
        env["KATSDPTELSTATE_ALLOW_PICKLE"] = setting
    result = subprocess.run(
        [sys.executable, "-c", _ENV_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == output
    if warns:
        assert "UserWarning" in result.stderr
        assert "KATSDPTELSTATE_ALLOW_PICKLE" in result.stderr
    else:
        assert result.stderr == ""


# --------------------------------------------------------------------------- bad headers


@pytest.mark.parametrize("header", range(0x81, 0xFF), ids=lambda h: f"{h:#04x}")
def test_reserved_header_bytes(header: int) -> None:
    for encoded in (bytes([header]), bytes([header]) + b"\x01\x02"):
        with pytest.raises(DecodeError, match="header"):
            decode_value(encoded, allow_pickle=True)
        with pytest.raises(katsdptelstate.DecodeError):
            katsdptelstate.decode_value(encoded, allow_pickle=True)


def test_empty_value() -> None:
    with pytest.raises(DecodeError):
        decode_value(b"")
    with pytest.raises(katsdptelstate.DecodeError):
        katsdptelstate.decode_value(b"")


@pytest.mark.parametrize(
    "encoded",
    ["ff", "ff 01 02", "ff 92 01", "ff c7 03 01 01", "ff d8 02 00", "ff c7 01 09 00", "ff c1"],
    ids=["nothing", "extra", "short array", "tuple of int", "short complex", "ext 9", "0xc1"],
)
def test_corrupt_msgpack(encoded: str) -> None:
    with pytest.raises(DecodeError):
        decode_value(bytes.fromhex(encoded))


# --------------------------------------------------------------------------- fuzzing

_FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# msgpack headers with lengths, each followed by the largest length it can hold.
_FORGED_HEADS = {
    "str8": "d9 ff",
    "str16": "da ffff",
    "str32": "db ffffffff",
    "bin8": "c4 ff",
    "bin16": "c5 ffff",
    "bin32": "c6 ffffffff",
    "array16": "dc ffff",
    "array32": "dd ffffffff",
    "map16": "de ffff",
    "map32": "df ffffffff",
    "ext8 tuple": "c7 ff 01",
    "ext16 array": "c8 ffff 03",
    "ext32 array": "c9 ffffffff 03",
    "ext32 scalar": "c9 ffffffff 04",
    "fixext16 complex": "d8 02",
}
_WRAPPERS = {
    "top": lambda b: b,
    "in list": lambda b: b"\x92\x01" + b,
    "in tuple": lambda b: bytes([0xC7, len(b) + 1, 1, 0x91]) + b,
    "as map key": lambda b: b"\x81" + b,
    "as scalar descr": lambda b: bytes([0xC7, len(b), 4]) + b,
}


@pytest.mark.parametrize("wrapper", sorted(_WRAPPERS))
@pytest.mark.parametrize("head", sorted(_FORGED_HEADS))
def test_forged_lengths_fail_fast(head: str, wrapper: str) -> None:
    for tail in (b"", b"\x01\x02\x03", bytes(100)):
        encoded = b"\xff" + _WRAPPERS[wrapper](bytes.fromhex(_FORGED_HEADS[head]) + tail)
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError):
                decode_value(encoded)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"{peak} bytes allocated for {len(encoded)} input bytes"


def test_str32_of_4_gib_fails_without_allocating() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode_value(bytes.fromhex("ff db ff ff ff ff"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for a 6-byte input"


@_FUZZ_SETTINGS
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_msgpack(data: bytes) -> None:
    decodes_or_refuses(b"\xff" + data)


@_FUZZ_SETTINGS
@given(st.binary(max_size=60))
def test_fuzz_arbitrary_extensions(data: bytes) -> None:
    for code in (1, 2, 3, 4, 5, 0x7F, 0xFF):  # 0xff: ext type -1 (a timestamp)
        decodes_or_refuses(b"\xff" + struct.pack(">BBB", 0xC7, len(data), code) + data)


_DIMS = st.integers(-3, 5) | st.sampled_from(
    [2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 + 3, 10**30]
)
_DESCRS = [
    "'<f8'", "'>i4'", "'|u1'", "'|b1'", "'<U5'", "'|S3'", "'<M8[s]'", "'>m8'",
    "'|O'", "'O'", "[('a', '|O')]", "[('a', '<i4'), ('b', [('c', '|O')])]",
    "'<U0'", "'|S0'", "'|V0'", "[]", "[('a', '<i4'), ('', '|V4')]", "[('α', '<i2')]",
    "('<f8', (2,))", "('<f8', (1000000, 1000000))", "'<V99999999999'", "'<U99999999999'",
    "'garbage'", "None", "1", "{'a': 1}", "[('a',)]", "[(1, '<i4')]", "b'<f8'", "'<f8' * 2",
]  # fmt: skip


@st.composite
def npy_header_dicts(draw: st.DrawFn) -> str:
    """The text of a .npy header dict, with forged shapes, dtypes and orders."""
    shape: Any = tuple(draw(st.lists(_DIMS, max_size=4)))
    shape = draw(st.sampled_from([repr(shape), repr(list(shape)), "3", "(3.0,)", "(True, 2)"]))
    fields = {
        "descr": draw(st.sampled_from(_DESCRS)),
        "fortran_order": draw(st.sampled_from(["False", "True", "0", "None"])),
        "shape": shape,
    }
    if draw(st.integers(0, 9)) == 0:
        del fields[draw(st.sampled_from(sorted(fields)))]
    return "{" + "".join(f"'{k}': {v}, " for k, v in fields.items()) + "}"


def _npy(header: str, data: bytes, version: int) -> bytes:
    text = header.encode("utf-8" if version >= 3 else "latin-1", "replace")
    size = 2 if version == 1 else 4
    text += b" " * (-(6 + 2 + size + len(text) + 1) % 64) + b"\n"
    length = struct.pack("<H" if size == 2 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


@_FUZZ_SETTINGS
@given(
    header=npy_header_dicts(),
    version=st.sampled_from([1, 2, 3, 4]),
    data=st.binary(max_size=64) | st.sampled_from([bytes(5000), bytes(70_000)]),
    nested=st.booleans(),
)
def test_fuzz_forged_npy_headers(header: str, version: int, data: bytes, nested: bool) -> None:
    ext = msgpack.packb(msgpack.ExtType(3, _npy(header, data, version)))
    decodes_or_refuses(b"\xff" + (b"\x91" + ext if nested else ext))


_SCALAR_DESCRS = st.one_of(
    st.sampled_from(_DESCRS).map(lambda d: d.strip("'")),
    st.text(max_size=12),
    st.recursive(
        st.none() | st.integers(-5, 2**40) | st.text(max_size=4) | st.sampled_from(["<f8", "O"]),
        lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple),
        max_leaves=8,
    ),
)


@_FUZZ_SETTINGS
@given(descr=_SCALAR_DESCRS, raw=st.binary(max_size=24))
def test_fuzz_numpy_scalar_descr(descr: Any, raw: bytes) -> None:
    payload = encode_value(descr)[1:] + raw
    decodes_or_refuses(b"\xff" + msgpack.packb(msgpack.ExtType(4, payload)))


_INTERESTING_BYTES = [0x00, 0x7F, 0x80, 0x90, 0xC0, 0xC1, 0xC7, 0xC9, 0xD4, 0xD8, 0xDB, 0xDF, 0xFF]
_FORGED_LENGTHS = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\xff\xff", b"\xff", b"\0\0\0\0"]


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding with a few bytes flipped, cut, inserted, deleted or forged."""
    base = draw(values | st.sampled_from(sorted(_BIG_ARRAYS)).map(_BIG_ARRAYS.__getitem__))
    data = bytearray(encode_value(base))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(1, max(1, len(data) - 1)))
        op = draw(
            st.sampled_from(
                ["flip", "cut", "insert", "delete", "byte", "length", "head", "npy", "first"]
            )
        )
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "byte" and pos < len(data):
            data[pos] = draw(st.sampled_from(_INTERESTING_BYTES) | st.integers(0, 255))
        elif op == "length":  # overwrite what may be a length field
            forged = draw(st.sampled_from(_FORGED_LENGTHS))
            data[pos : pos + len(forged)] = forged
        elif op == "head":  # insert a container or string header claiming a huge size
            data[pos:pos] = bytes.fromhex(draw(st.sampled_from(sorted(_FORGED_HEADS.values()))))
        elif op == "npy" and (start := data.find(b"{'descr'")) >= 0:
            # Rewrite the .npy header dict in place, keeping the header's length.
            end = data.find(b"\n", start)
            forged = draw(npy_header_dicts()).encode("utf-8")[: end - start]
            data[start:end] = forged.ljust(end - start)
        elif op == "first":  # the header byte: a pickle (refused here) or reserved
            data[0] = draw(st.integers(0, 255))
    return bytes(data)


@_FUZZ_SETTINGS
@given(mutated_encodings())
def test_fuzz_mutated_encodings(encoded: bytes) -> None:
    decodes_or_refuses(encoded)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize(
    "shape",
    [(2**31,), (2**40,), (2**34, 8), (2**62, 2**62), (-1, -1), (2**70,)],
    ids=str,
)
@pytest.mark.parametrize("descr", ["'<f8'", "'|u1'", "[('α', '<u2')]", "'|V0'"])
@pytest.mark.parametrize("size", [0, 10, 5000])
def test_huge_npy_shapes_allocate_nothing(
    version: int, shape: tuple[int, ...], descr: str, size: int
) -> None:
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape!r}, }}"
    encoded = b"\xff" + msgpack.packb(msgpack.ExtType(3, _npy(header, bytes(size), version)))
    tracemalloc.start()
    try:
        try:
            result = decode_value(encoded)
        except DecodeError:
            result = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for {len(encoded)} input bytes"
    if result is not None:  # only arrays of nothing, which katsdptelstate makes too
        assert descr == "'|V0'" and result.nbytes == 0 and size == 0
        assert_same(result, katsdptelstate.decode_value(encoded))


@pytest.mark.parametrize("descr", ["|S0", "<U0", "|V0"])
def test_zero_width_dtypes_like_numpy(descr: str) -> None:
    """Arrays of S0 / U0 stay so (np.empty would widen them to uninitialised S1 / U1)."""
    for order in ("False", "True"):
        header = f"{{'descr': '{descr}', 'fortran_order': {order}, 'shape': (3, 2), }}"
        encoded = b"\xff" + msgpack.packb(msgpack.ExtType(3, _npy(header, b"", 1)))
        assert_same(decode_value(encoded), katsdptelstate.decode_value(encoded))


def test_npy_trailing_data_refused() -> None:
    """numpy.load ignores bytes after the array data; we refuse them."""
    encoded = bytearray(encode_value(np.arange(3, dtype=np.uint8)))
    encoded[2] += 1  # ext8 length
    encoded += b"!"
    assert_same(katsdptelstate.decode_value(bytes(encoded)), np.arange(3, dtype=np.uint8))
    with pytest.raises(DecodeError, match="bytes"):
        decode_value(bytes(encoded))


# --------------------------------------------------------------------------- encode errors


class _Thing:
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _Str(str):
    __slots__ = ()


class _Int(enum.IntEnum):
    ONE = 1


@pytest.mark.parametrize(
    "value",
    [
        _Thing(),
        {1, 2},
        frozenset([1]),
        _Dict(a=1),
        collections.OrderedDict(a=1),
        collections.defaultdict(int),
        _Str("x"),
        _Int.ONE,
        decimal.Decimal(1),
        datetime.datetime(2019, 3, 1),
        range(3),
        len,
        [1, _Thing()],
        (1, {2}),
        {"a": _Thing()},
        np.array([1, "a"], dtype=object),
        np.array(None, dtype=object),
        [np.zeros(2, dtype=object)],
        np.zeros(2, [("a", "<i4"), ("b", object)]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unencodable_values(value: Any) -> None:
    with pytest.raises(katsdptelstate.EncodeError):
        katsdptelstate.encode_value(value)
    with pytest.raises(EncodeError):
        encode_value(value)
    # The per-thread packer is left clean for the next value.
    assert encode_value([1, "a"]) == bytes.fromhex("ff 92 01 a1 61")


@pytest.mark.parametrize("encoding", [b"\x00", b"\x81", b"\xfe", b"", b"\xff\xff", b"\x80\x80"])
def test_unknown_encoding(encoding: bytes) -> None:
    with pytest.raises(ValueError, match="encoding"):
        encode_value(1, encoding)


@pytest.mark.parametrize("encoding", sorted(ALLOWED_ENCODINGS))
def test_allowed_encodings(encoding: bytes) -> None:
    value = {"a": (1, [2.5, None]), "b": np.arange(3)}
    encoded = encode_value(value, encoding)
    assert encoded[:1] == encoding
    assert encoded == katsdptelstate.encode_value(value, encoding)
    assert_same(decode_value(encoded, allow_pickle=True), value, flags=False)


# --------------------------------------------------------------------------- equality


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("abc", b"abc", True),
        (b"abc", "abc", True),
        ("café", "café".encode(), True),
        ("café", "café".encode("latin-1"), False),
        ("", b"", True),
        (np.str_("abc"), "abc", True),
        (np.bytes_(b"abc"), "abc", True),
        ("abc", "abd", False),
        (b"abc", b"ab", False),
        (1, 1, True),
        (1, 1.0, False),
        (1, True, False),
        ((1, 2), [1, 2], False),
        (["a"], [b"a"], False),  # not recursive
        ({"a": 1}, {"a": 1}, True),
        (np.float64(1.5), 1.5, False),
        ("1", 1, False),
        (None, b"", False),
    ],
    ids=repr,
)
def test_equal_encoded_values(a: Any, b: Any, equal: bool) -> None:
    x, y = encode_value(a), encode_value(b)
    assert equal_encoded_values(x, y) is equal
    assert equal_encoded_values(y, x) is equal
    assert katsdptelstate.encoding.equal_encoded_values(x, y) is equal


def test_equal_encoded_values_across_encodings(pickle_gate: None) -> None:
    """Python 2 era values (pickles) equal their msgpack form when both are text."""
    pickled, packed = encode_value("abc", ENCODING_PICKLE), encode_value(b"abc")
    with pytest.raises(DecodeError):
        equal_encoded_values(pickled, packed)  # pickles refused: cannot tell
    set_allow_pickle(True)
    assert equal_encoded_values(pickled, packed)
    assert equal_encoded_values(pickled, encode_value("abc"))
    assert not equal_encoded_values(encode_value(1, ENCODING_PICKLE), encode_value(1))


def test_equal_encoded_values_undecodable() -> None:
    assert equal_encoded_values(b"\x81", b"\x81")  # equal bytes need no decoding
    with pytest.raises(DecodeError):
        equal_encoded_values(b"\x81", b"\xff\x01")
    with pytest.raises(DecodeError):
        equal_encoded_values(b"\xff\x01", b"\xff\xdb\xff\xff\xff\xff")


@settings(max_examples=200, deadline=None)
@given(
    a=st.text(max_size=4) | st.binary(max_size=4) | st.integers(0, 3),
    b=st.text(max_size=4) | st.binary(max_size=4) | st.integers(0, 3),
)
def test_equal_encoded_values_matches_katsdptelstate(a: Any, b: Any) -> None:
    x, y = encode_value(a), encode_value(b)
    assert equal_encoded_values(x, y) is katsdptelstate.encoding.equal_encoded_values(x, y)
