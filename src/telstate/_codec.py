"""Value encoding: the bytes every telstate value is stored as.

An encoded value is one header byte followed by a payload::

    0xff  MessagePack (the default): str as str, bytes as bin, strict types,
          so tuples, complex numbers and numpy objects go through extensions
    0x00..0x80  a pickle (legacy, before March 2019): refused unless allowed
    0x81..0xfe  reserved: a DecodeError

MessagePack extension codes (payload layout)::

    1  tuple         MessagePack of the items as a list
    2  complex       two big-endian doubles, real then imaginary
    3  numpy array   a complete .npy file (never object dtypes)
    4  numpy scalar  MessagePack of the dtype descr, then the raw value bytes

The bytes are identical to katsdptelstate 1.0's for every value both can
encode (a test proves it against katsdptelstate itself), so either library
reads what the other wrote.  Decoding caps every length at the payload size,
so forged lengths cannot make us allocate more than the input.

Big arrays take a fast path in both directions: encoding writes the msgpack
extension header and the .npy header around the array's own buffer with a
single copy, and decoding builds the array straight from the stored bytes.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import threading
import warnings
from typing import Any, Final, cast

import msgpack
import numpy as np

from ._errors import DecodeError, EncodeError

__all__ = [
    "ALLOWED_ENCODINGS",
    "ENCODING_DEFAULT",
    "ENCODING_MSGPACK",
    "ENCODING_PICKLE",
    "PICKLE_PROTOCOL",
    "decode_value",
    "encode_value",
    "equal_encoded_values",
    "set_allow_pickle",
]

#: Pickle protocol used by :func:`encode_value` with :data:`ENCODING_PICKLE`
PICKLE_PROTOCOL: Final = 2
#: Header byte of a pickled value (the PROTO opcode of protocol 2+)
ENCODING_PICKLE: Final = b"\x80"
#: Header byte of a MessagePack value
ENCODING_MSGPACK: Final = b"\xff"
#: Encoding used when none is given
ENCODING_DEFAULT: Final = ENCODING_MSGPACK
#: Encodings accepted by :func:`encode_value`
ALLOWED_ENCODINGS: Final = frozenset([ENCODING_PICKLE, ENCODING_MSGPACK])

EXT_TUPLE: Final = 1
EXT_COMPLEX: Final = 2
EXT_NDARRAY: Final = 3
EXT_NUMPY_SCALAR: Final = 4

_MSGPACK_HEADER: Final = 0xFF
_PICKLE_MAX_HEADER: Final = 0x80
_COMPLEX = struct.Struct(">dd")
# numpy's .npy helpers; typed as Any because their annotations differ between the
# numpy releases we support (untyped before numpy 2).
_npy: Any = np.lib.format
_MAX_ELEMENTS: Final = int(np.iinfo(np.intp).max)
_MAX_NPY_HEADER: Final = 10000  # characters: numpy.load's default max_header_size
# Each msgpack.unpackb call keeps ~40 KiB of parser state on the C stack, and every
# extension holding MessagePack (a tuple, a numpy scalar's descr) is unpacked from inside
# the outer unpacker, so a forged value of ~200 nested tuples (1 kB) would overflow the
# C stack and kill the process (it does katsdptelstate's).  The first levels use unpackb,
# deeper ones an Unpacker (its state lives on the heap), and the depth is capped.
_FAST_NESTING: Final = 4
_MAX_NESTING: Final = 200

_PICKLE_REFUSED = (
    "this value is a Python pickle, which can run arbitrary code when loaded, so "
    "telstate refuses it by default. Telescope states written before March 2019 "
    "store pickles. Only if you trust where the data came from, allow them with "
    "KATSDPTELSTATE_ALLOW_PICKLE=1 in the environment or "
    "telstate.set_allow_pickle(True) in the program."
)
_PICKLE_WARNING = "decoding a pickled value: pickles were allowed with set_allow_pickle"

# The pickle gate.  A plain module global: reads are atomic, writes take the lock
# so that "allow and warn once" changes together.
_pickle_lock = threading.Lock()
_allow_pickle = False
_warn_on_pickle = False


def set_allow_pickle(allow: bool, warn: bool = False) -> None:
    """Allow or refuse decoding of pickled values.

    Parameters
    ----------
    allow
        Whether :func:`decode_value` may unpickle values.  Pickles can run
        arbitrary code, so only allow them for data you trust.
    warn
        If true (and `allow` is true), issue a :class:`FutureWarning` the next
        time a pickle is decoded.
    """
    global _allow_pickle, _warn_on_pickle
    with _pickle_lock:
        _allow_pickle = bool(allow)
        _warn_on_pickle = bool(warn) and bool(allow)


def _allow_pickle_from_environment() -> None:
    setting = os.environ.get("KATSDPTELSTATE_ALLOW_PICKLE")
    if setting not in (None, "0", "1"):
        warnings.warn(
            f"KATSDPTELSTATE_ALLOW_PICKLE should be 0 or 1, not {setting!r}: pickles stay refused",
            stacklevel=2,
        )
    set_allow_pickle(setting == "1")


_allow_pickle_from_environment()


# --------------------------------------------------------------------------- encoding


def _ext_header(code: int, length: int) -> bytes:
    """MessagePack header of an extension object with `length` bytes of data."""
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(length)
    if fixed is not None:
        return bytes((fixed, code))
    if length <= 0xFF:
        return bytes((0xC7, length, code))
    if length <= 0xFFFF:
        return struct.pack(">BHB", 0xC8, length, code)
    if length <= 0xFFFFFFFF:
        return struct.pack(">BIB", 0xC9, length, code)
    raise EncodeError(f"value of {length} bytes is too large for MessagePack")


def _npy_parts(array: np.ndarray[Any, Any]) -> tuple[bytes, memoryview]:
    """The .npy header of `array` and a view of its data in file order.

    The result is byte-for-byte what :func:`numpy.save` writes, without its copies.
    """
    if array.dtype.hasobject:
        raise EncodeError(f"cannot encode arrays of dtype {array.dtype}: they hold Python objects")
    header_data = _npy.header_data_from_array_1_0(array)
    if array.dtype.names is not None and (
        _npy.descr_to_dtype(header_data["descr"]).itemsize != array.dtype.itemsize
    ):
        # Some dtypes made by numpy's promotion (np.concatenate of structs nested, with
        # padding, in subarrays) have a descr of another size: the bytes written would
        # not decode (numpy.load, so katsdptelstate, would misread them).
        raise EncodeError(f"a .npy header cannot describe numpy dtype {array.dtype}")
    header = io.BytesIO()
    try:
        _npy.write_array_header_1_0(header, header_data)
    except (ValueError, UnicodeEncodeError):
        # Too long or not latin-1 for a version 1.0 header: let numpy pick the version.
        whole = io.BytesIO()
        np.save(whole, array, allow_pickle=False)
        return whole.getvalue(), memoryview(b"")
    if not array.nbytes:
        return header.getvalue(), memoryview(b"")
    if array.flags.c_contiguous:
        data = np.asarray(array)
    elif array.flags.f_contiguous:
        data = np.asarray(array.T)  # .npy stores Fortran order as the transpose's C order
    else:
        # Copied as raw items: numpy copies structured dtypes field by field, leaving
        # their padding uninitialised (so numpy.save writes random bytes there).
        data = np.ascontiguousarray(array.view(np.dtype((np.void, array.dtype.itemsize))))
    # Bytes viewed in numpy: the buffer protocol cannot export every dtype (datetime64).
    return header.getvalue(), data.reshape(-1).view(np.uint8).data


def _encode_ndarray(array: np.ndarray[Any, Any]) -> bytes:
    header, data = _npy_parts(array)
    return b"".join((header, data))


def _encode_numpy_scalar(value: np.generic) -> bytes:
    if value.dtype.hasobject:
        raise EncodeError(f"cannot encode numpy scalars of dtype {value.dtype}")
    descr = _npy.dtype_to_descr(value.dtype)
    return _pack_nested(descr) + value.tobytes()


def _default(value: Any) -> msgpack.ExtType:
    """Encode what plain MessagePack cannot (called by the packer)."""
    if isinstance(value, tuple):
        return msgpack.ExtType(EXT_TUPLE, _pack_nested(list(value)))
    if isinstance(value, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, _encode_ndarray(value))
    if isinstance(value, np.generic):
        return msgpack.ExtType(EXT_NUMPY_SCALAR, _encode_numpy_scalar(value))
    if isinstance(value, complex):
        return msgpack.ExtType(EXT_COMPLEX, _COMPLEX.pack(value.real, value.imag))
    if type(value) is int:  # the packer hands over only the ints it cannot store
        shown = value if value.bit_length() <= 256 else f"of {value.bit_length()} bits"
        raise EncodeError(f"cannot encode integer {shown}: MessagePack integers are 64-bit")
    raise EncodeError(f"cannot encode values of type {type(value).__name__}")


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_default)


def _pack_nested(value: Any) -> bytes:
    # A fresh packer: the thread's shared one may be half-way through the outer value.
    return _new_packer().pack(value)  # type: ignore[no-any-return]


_local = threading.local()


def _pack(value: Any) -> bytes:
    """MessagePack bytes of `value` with a per-thread reusable packer."""
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = _new_packer()
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except EncodeError:
        packer.reset()
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        packer.reset()
        raise EncodeError(f"cannot encode {type(value).__name__} value: {exc}") from exc


def encode_value(value: Any, encoding: bytes = ENCODING_DEFAULT) -> bytes:
    """Encode `value` into the bytes that telstate stores.

    Parameters
    ----------
    value
        Any encodable value: None, bool, int (64-bit), float, str, bytes,
        list, tuple, dict, complex, numpy arrays (not of objects) and numpy
        scalars, nested freely.
    encoding
        :data:`ENCODING_MSGPACK` (the default) or :data:`ENCODING_PICKLE`.

    Returns
    -------
    bytes
        Header byte followed by the payload.

    Raises
    ------
    EncodeError
        If `value` cannot be encoded.
    ValueError
        If `encoding` is not one of :data:`ALLOWED_ENCODINGS`.
    """
    if encoding == ENCODING_MSGPACK:
        if type(value) is np.ndarray:
            header, data = _npy_parts(value)
            ext = _ext_header(EXT_NDARRAY, len(header) + data.nbytes)
            return b"".join((ENCODING_MSGPACK, ext, header, data))
        return ENCODING_MSGPACK + _pack(value)
    if encoding == ENCODING_PICKLE:
        try:
            return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # whatever a __reduce__ raises: PicklingError, TypeError...
            raise EncodeError(f"cannot pickle {type(value).__name__} value: {exc}") from exc
    raise ValueError(f"unknown encoding {encoding!r}")


# --------------------------------------------------------------------------- decoding


def _read_array_header_3_0(fp: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Read a version 3.0 .npy header: version 2.0 with UTF-8 instead of latin-1 text.

    numpy has no public reader for it, so the text is recast as a version 2.0 header
    with its non-latin-1 characters (which only occur inside the str literals of field
    names) written as backslash escapes, which mean the same characters there.
    """
    (length,) = struct.unpack("<I", fp.read(4))
    raw = fp.read(length)
    if len(raw) != length:
        raise DecodeError("truncated numpy array header")
    text = raw.decode("utf-8")
    if len(text) > _MAX_NPY_HEADER:
        raise DecodeError(f"numpy array header of {len(text)} characters is too long")
    escaped = text.encode("latin-1", "backslashreplace")
    parsed: tuple[tuple[int, ...], bool, np.dtype[Any]] = _npy.read_array_header_2_0(
        io.BytesIO(struct.pack("<I", len(escaped)) + escaped), max_header_size=len(escaped)
    )
    return parsed


# numpy reads a .npy header with ast.literal_eval, and CPython's AST construction keeps its
# recursion depth in global state: before 3.11.8 / 3.12.1, two threads building ASTs at
# once can fail with "AST constructor recursion depth mismatch" (CPython gh-106905).  The
# headers are a few dozen bytes, so reading them one at a time costs nothing.
_HEADER_LOCK = threading.Lock()


def _read_npy_header(header: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype from the header of a .npy file (one thread at a time)."""
    with _HEADER_LOCK:
        version = _npy.read_magic(header)
        if version == (1, 0):
            return _npy.read_array_header_1_0(header)  # type: ignore[no-any-return]
        if version == (2, 0):
            return _npy.read_array_header_2_0(header)  # type: ignore[no-any-return]
        if version == (3, 0):
            # Not numpy.load: it allocates what the header claims before reading the data.
            return _read_array_header_3_0(header)
    raise DecodeError(f"unknown .npy format version {version}")


def _decode_ndarray(data: bytes | memoryview) -> np.ndarray[Any, Any]:
    """Array from a .npy file held in `data`, with exactly one copy of the data."""
    header = io.BytesIO(data[: 65536 + 16] if len(data) > 65536 + 16 else data)
    try:
        shape, fortran, dtype = _read_npy_header(header)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"bad numpy array header: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError(f"refusing numpy array of dtype {dtype}: it would need pickles")
    count = 1
    for dim in shape:
        count *= dim
    start = header.tell()
    if count * dtype.itemsize != len(data) - start:
        raise DecodeError(
            f"numpy array of shape {shape} and dtype {dtype} needs "
            f"{count * dtype.itemsize} bytes, payload has {len(data) - start}"
        )
    if count > _MAX_ELEMENTS:
        raise DecodeError(f"numpy array of shape {shape} has too many elements")
    if dtype.itemsize == 0:
        # As numpy.load does: np.empty would widen S0 / U0 to S1 / U1 of uninitialised memory.
        return np.ndarray(shape, dtype, order="F" if fortran else "C")
    # One copy of the raw bytes: an array copy would go field by field and leave the
    # padding of structured dtypes uninitialised (as numpy.load does).
    buffer = np.empty(count * dtype.itemsize, np.uint8)
    buffer[:] = np.frombuffer(data, np.uint8, count * dtype.itemsize, start)
    flat = buffer.view(dtype)
    if fortran:
        return flat.reshape(shape[::-1]).T
    return flat.reshape(shape)


def _new_unpacker(data: bytes, depth: int) -> msgpack.Unpacker:
    """An Unpacker holding `data`, every length capped at its size."""
    unpacker = msgpack.Unpacker(
        raw=False,
        ext_hook=_EXT_HOOKS[depth],
        strict_map_key=False,
        max_buffer_size=max(len(data), 1),
    )
    unpacker.feed(data)
    return unpacker


def _decode_numpy_scalar(data: bytes, depth: int) -> np.generic:
    unpacker = _new_unpacker(data, depth)
    try:
        descr = unpacker.unpack()
    except msgpack.OutOfData as exc:
        raise DecodeError("truncated numpy scalar") from exc
    raw = data[unpacker.tell() :]
    dtype: np.dtype[Any]
    try:
        dtype = _npy.descr_to_dtype(descr)
    except Exception as exc:
        raise DecodeError(f"bad numpy dtype {descr!r}: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError(f"refusing numpy scalar of dtype {dtype}: it would need pickles")
    if dtype.itemsize == 0:
        # An empty str / bytes / void, such as np.array(["a", ""])[1]: numpy.frombuffer
        # refuses zero-width dtypes (katsdptelstate cannot decode these), and the value
        # was encoded as its tobytes(), which pads S0 and U0 to a character.
        empty = cast(np.generic, np.ndarray((), dtype)[()])  # indexing a 0-d array: a scalar
        if raw != empty.tobytes():
            raise DecodeError(f"numpy scalar of dtype {dtype} has {len(raw)} bytes of data")
        return empty
    if len(raw) != dtype.itemsize:
        raise DecodeError(
            f"numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes, not {len(raw)}"
        )
    return np.frombuffer(raw, dtype, 1)[0]  # type: ignore[no-any-return]


def _unpack_nested(data: bytes, depth: int) -> Any:
    """The MessagePack object held in an extension, at nesting `depth` (see _MAX_NESTING)."""
    if depth < _FAST_NESTING:
        return _unpack(data, depth)
    unpacker = _new_unpacker(data, depth)
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData as exc:
        raise DecodeError("truncated MessagePack in an extension") from exc
    if unpacker.tell() != len(data):
        raise DecodeError("extra bytes after MessagePack in an extension")
    return value


def _decode_ext(depth: int, code: int, data: bytes) -> Any:
    """Decode an extension found at nesting `depth` (0 in the top-level value)."""
    if depth >= _MAX_NESTING:
        raise DecodeError(f"extensions nested more than {_MAX_NESTING} deep")
    if code == EXT_TUPLE:
        items = _unpack_nested(data, depth + 1)
        if not isinstance(items, list):
            raise DecodeError("tuple extension does not hold a list")
        return tuple(items)
    if code == EXT_COMPLEX:
        if len(data) != _COMPLEX.size:
            raise DecodeError(f"complex extension has {len(data)} bytes, not 16")
        return complex(*_COMPLEX.unpack(data))
    if code == EXT_NDARRAY:
        return _decode_ndarray(data)
    if code == EXT_NUMPY_SCALAR:
        return _decode_numpy_scalar(data, depth + 1)
    raise DecodeError(f"unknown MessagePack extension type {code}")


# The unpacker's ext_hook for each nesting depth, so that no state needs passing around.
_EXT_HOOKS: Final = tuple(functools.partial(_decode_ext, d) for d in range(_MAX_NESTING + 1))
#: The ext_hook of a top-level value
_ext_hook: Final = _EXT_HOOKS[0]


def _unpack(payload: bytes | memoryview, depth: int = 0) -> Any:
    limit = len(payload)
    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=False,
        ext_hook=_EXT_HOOKS[depth],
        max_str_len=limit,
        max_bin_len=limit,
        max_array_len=limit,
        max_map_len=limit,
        max_ext_len=limit,
    )


def _top_level_array(value: bytes) -> np.ndarray[Any, Any] | None:
    """Decode an encoded array without msgpack's copies, or None if not an array."""
    kind = value[1]
    if kind == 0xC9:
        length, code = struct.unpack_from(">Ib", value, 2)
        start = 7
    elif kind == 0xC8:
        length, code = struct.unpack_from(">Hb", value, 2)
        start = 5
    else:
        return None
    if code != EXT_NDARRAY or start + length != len(value):
        return None
    return _decode_ndarray(memoryview(value)[start:])


def decode_value(value: bytes, allow_pickle: bool | None = None) -> Any:
    """Decode bytes made by :func:`encode_value` (the format is self-describing).

    Parameters
    ----------
    value
        Encoded value.
    allow_pickle
        Whether to unpickle a pickled value; None (the default) follows
        :func:`set_allow_pickle` and the ``KATSDPTELSTATE_ALLOW_PICKLE``
        environment variable, which default to refusing.

    Raises
    ------
    DecodeError
        If `value` is corrupt, uses an unknown encoding, or is a refused pickle.
    """
    if not value:
        raise DecodeError("empty value")
    header = value[0]
    if header == _MSGPACK_HEADER:
        try:
            if len(value) > 4096:
                array = _top_level_array(value)
                if array is not None:
                    return array
                return _unpack(memoryview(value)[1:])
            return _unpack(value[1:])
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"corrupt MessagePack value: {exc}") from exc
    if header <= _PICKLE_MAX_HEADER:
        return _unpickle(value, allow_pickle)
    raise DecodeError(
        f"value starts with unknown header byte 0x{header:02x}: it may come from a newer telstate"
    )


def _unpickle(value: bytes, allow_pickle: bool | None) -> Any:
    global _warn_on_pickle
    if allow_pickle is None:
        with _pickle_lock:
            allow_pickle = _allow_pickle
            warn, _warn_on_pickle = _warn_on_pickle, False
        if warn:
            warnings.warn(_PICKLE_WARNING, FutureWarning, stacklevel=3)
    if not allow_pickle:
        raise DecodeError(_PICKLE_REFUSED)
    try:
        return pickle.loads(value, encoding="latin1")
    except Exception as exc:
        raise DecodeError(f"corrupt pickle: {exc}") from exc


def equal_encoded_values(a: bytes, b: bytes) -> bool:
    """Whether two encoded values stand for the same value.

    True when the bytes are equal, or when both decode to str or bytes that
    are equal once str is taken as UTF-8 (so that values written as str by
    Python 3 match the same text written as bytes by Python 2).

    Raises
    ------
    DecodeError
        If the bytes differ and one of them cannot be decoded.
    """
    if a == b:
        return True
    x, y = decode_value(a), decode_value(b)
    if isinstance(x, str | bytes) and isinstance(y, str | bytes):
        as_bytes = [
            v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in (x, y)
        ]
        return as_bytes[0] == as_bytes[1]
    return False
