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

import io
import os
import pickle
import struct
import threading
import warnings
from typing import Any, Final

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
    header = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(
            header, np.lib.format.header_data_from_array_1_0(array)
        )
    except (ValueError, UnicodeEncodeError):
        # Too long or not latin-1 for a version 1.0 header: let numpy pick the version.
        whole = io.BytesIO()
        np.save(whole, array, allow_pickle=False)
        return whole.getvalue(), memoryview(b"")
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        data = array.T  # .npy stores Fortran-ordered arrays as their transpose's C order
    else:
        data = np.ascontiguousarray(array)
    return header.getvalue(), data.data.cast("B") if data.size else memoryview(b"")


def _encode_ndarray(array: np.ndarray[Any, Any]) -> bytes:
    header, data = _npy_parts(array)
    return b"".join((header, data))


def _encode_numpy_scalar(value: np.generic) -> bytes:
    if value.dtype.hasobject:
        raise EncodeError(f"cannot encode numpy scalars of dtype {value.dtype}")
    descr = np.lib.format.dtype_to_descr(value.dtype)
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
    except (TypeError, ValueError, OverflowError) as exc:
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
        return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    raise ValueError(f"unknown encoding {encoding!r}")


# --------------------------------------------------------------------------- decoding


def _decode_ndarray(data: bytes | memoryview) -> np.ndarray[Any, Any]:
    """Array from a .npy file held in `data`, with exactly one copy of the data."""
    header = io.BytesIO(data[: 65536 + 16] if len(data) > 65536 + 16 else data)
    try:
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
        else:
            # Version 3 (UTF-8 field names) is rare: let numpy read the whole thing.
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(array, np.ndarray):
                raise DecodeError("numpy array payload is not an array")
            return array
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
    if dtype.itemsize == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    if fortran:
        return flat.reshape(shape[::-1]).T.copy(order="F")
    return flat.reshape(shape).copy()


def _decode_numpy_scalar(data: bytes) -> np.generic:
    unpacker = msgpack.Unpacker(
        raw=False, ext_hook=_ext_hook, strict_map_key=False, max_buffer_size=max(len(data), 1)
    )
    unpacker.feed(data)
    try:
        descr = unpacker.unpack()
    except msgpack.OutOfData as exc:
        raise DecodeError("truncated numpy scalar") from exc
    raw = data[unpacker.tell() :]
    try:
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as exc:
        raise DecodeError(f"bad numpy dtype {descr!r}: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError(f"refusing numpy scalar of dtype {dtype}: it would need pickles")
    if len(raw) != dtype.itemsize:
        raise DecodeError(
            f"numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes, not {len(raw)}"
        )
    return np.frombuffer(raw, dtype, 1)[0]  # type: ignore[no-any-return]


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE:
        items = _unpack(data)
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
        return _decode_numpy_scalar(data)
    raise DecodeError(f"unknown MessagePack extension type {code}")


def _unpack(payload: bytes | memoryview) -> Any:
    limit = len(payload)
    return msgpack.unpackb(
        payload,
        raw=False,
        strict_map_key=False,
        ext_hook=_ext_hook,
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
