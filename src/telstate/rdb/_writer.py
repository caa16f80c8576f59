"""Encoding Redis RDB files: telstate keys in, byte chunks out, no I/O inside.

An :class:`RdbEncoder` hands out the chunks of one file in order and keeps the
running CRC-64 of everything it has handed out, so that :meth:`RdbEncoder.footer`
can close the file; the caller writes every chunk, in order.  The pure
``*_record`` functions encode one key each.  A file::

    "REDIS0009"                         magic and 4-digit RDB version
    FA <str name> <str value>   ...     AUX fields: redis-ver, redis-bits, ctime,
                                        used-mem, telstate-version
    FE <len db>                         SELECTDB
    FB <len keys> <len expires>         RESIZEDB (optional: lets Redis presize)
    <type> <str key> <value>    ...     one record per key
    FF <crc, 8 bytes little-endian>     EOF, then the CRC-64 of every byte before it

``<len>`` (numbers big-endian; the top two bits pick the form)::

    00nnnnnn                            0 .. 63
    01nnnnnn nnnnnnnn                   .. 16383
    10000000 + 4 bytes                  .. 2**32 - 1
    10000001 + 8 bytes                  .. 2**64 - 1   (RDB 8 and later)

``<str>`` is ``<len>`` and the raw bytes.  Redis may also write strings as
integers or LZF-compressed; both are optional for a writer, and raw strings
are the cheapest to write and to load.

Values, by type byte, and why (limits are the defaults of Redis 4 to 6, which
keep small sets and hashes in the compact ziplist form; writing what Redis
itself would hold means a loading server keeps the keys just as compact)::

    0   string         <str value>
    12  zset ziplist   <str ziplist>: member, 0, member, 0, ... members ascending
                       (<= 128 members, none longer than 64 bytes)
    5   zset           <len n> then n times <str member> <8-byte LE double 0.0>,
                       members DEscending, as Redis saves a skiplist: each member
                       loaded then lands at the skiplist's head.  Measured with a
                       1 M-member sensor: redis-server 7.0 loads this in 0.6 s,
                       in 1.1-1.6 s ascending, in 1.5-1.9 s as type 3 (string
                       scores, a strtod each); katsdptelstate 1.0 (rdbtools) also
                       loads type 5 fastest.  The binary score costs 6 bytes more
                       per member than type 3's "0".
    13  hash ziplist   <str ziplist>: field, value, field, value, ...
                       (<= 512 fields, fields and values <= 64 bytes)
    4   hash           <len n> then n times <str field> <str value>

A ziplist (header integers little-endian)::

    zlbytes u32 | zltail u32 (offset of the last entry) | zllen u16 | entries | FF
    entry = prevlen + encoding [+ data]
    prevlen  = length of the previous entry: 1 byte if < 254, else FE + u32
    encoding = 00nnnnnn | 01nnnnnn nnnnnnnn | 80 + u32 BE      strings
               F1+v (v = 0..12) | FE i8 | C0 i16 | F0 i24 | D0 i32 | E0 i64   (LE)

``zllen`` saturates at 65535 ("count the entries").  Scores are the integer 0
(one byte, F1), as Redis stores them; members, fields and values are always
string entries, even when they look like numbers, so that every reader gets
back bytes (Redis itself would turn "12" into an integer entry, and rdbtools
would then hand katsdptelstate an int).

Redis has no empty sorted sets or hashes (Redis 6.2+ drops them on load,
older servers keep a key that cannot exist), so encoding one raises
ValueError, as do unsorted or repeated sensor members (a ziplist must be in
order, and Redis refuses a sorted set that repeats a member).

Files are RDB version 9 (Redis 5.0 - 6.2), the newest that katsdptelstate 1.0
(rdbtools) reads.  Nothing in them needs more than version 8, and Redis 4.0
refuses versions above 8: ``RdbEncoder(version=8)`` writes files it loads.
"""

from __future__ import annotations

import operator
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final

import numpy as np

from .._ranges import pack_timestamp
from .._samples import SampleBatch
from .._version import __version__
from . import _format as F
from ._crc64 import crc64

__all__ = [
    "HASH_MAX_ZIPLIST_ENTRIES",
    "HASH_MAX_ZIPLIST_VALUE",
    "RdbEncoder",
    "ZSET_MAX_ZIPLIST_ENTRIES",
    "ZSET_MAX_ZIPLIST_VALUE",
    "encode_length",
    "encode_string",
    "encode_ziplist",
    "footer",
    "hash_record",
    "sensor_record",
    "string_record",
]

_Array = np.ndarray[Any, Any]

#: Largest sorted set / longest member that Redis (4-6, by default) keeps as a ziplist.
ZSET_MAX_ZIPLIST_ENTRIES: Final = 128
ZSET_MAX_ZIPLIST_VALUE: Final = 64
#: Largest hash / longest field or value that Redis (4-6, by default) keeps as a ziplist.
HASH_MAX_ZIPLIST_ENTRIES: Final = 512
HASH_MAX_ZIPLIST_VALUE: Final = 64

#: RDB versions this module writes, and the first Redis release writing each:
#: that release goes in the ``redis-ver`` AUX field (Redis only logs it).
_REDIS_VERSIONS: Final = {8: "4.0.0", 9: "5.0.0"}

_MAX_U32: Final = 0xFFFFFFFF
_MAX_U64: Final = 0xFFFFFFFFFFFFFFFF
_BYTES: Final = [bytes([n]) for n in range(256)]
_U16_BE: Final = struct.Struct(">H")
_U32_BE: Final = struct.Struct(">I")
_U64_BE: Final = struct.Struct(">Q")
_U32_LE: Final = struct.Struct("<I")
_ZIPLIST_HEADER: Final = struct.Struct("<IIH")
_ZIPLIST_HEADER_SIZE: Final = 10
_ZIPLIST_END: Final = b"\xff"
# A ziplist's zllen: from this count on, readers must walk the entries to count them.
_ZIPLIST_MAX_COUNT: Final = 0xFFFF
# prevlen values from this one on take 5 bytes (the byte 0xFE, then a u32).
_ZIPLIST_BIG_PREVLEN: Final = 254
_SCORE_ZERO_BINARY: Final = bytes(8)  # 0.0 as a little-endian IEEE double
# Members up to this size get their row layout from a table indexed by length.
_LENGTH_TABLE_MAX: Final = 2048
_ZIPLIST_ZERO: Final = 0  # a score in a ziplist: the integer entry 0, one byte (F1)


# --------------------------------------------------------------------------- lengths


def encode_length(n: int) -> bytes:
    """RDB length encoding of ``n`` (1, 2, 5 or 9 bytes)."""
    if n < 64:
        if n < 0:
            raise ValueError(f"a length cannot be negative: {n}")
        return _BYTES[n]
    if n < 16384:
        return _U16_BE.pack(0x4000 | n)
    if n <= _MAX_U32:
        return b"\x80" + _U32_BE.pack(n)
    if n <= _MAX_U64:
        return b"\x81" + _U64_BE.pack(n)
    raise ValueError(f"length {n} does not fit in 64 bits")


def encode_string(data: bytes) -> bytes:
    """RDB string: the length, then the raw bytes (no integer or LZF forms)."""
    return encode_length(len(data)) + data


# --------------------------------------------------------------------------- ziplists


def _ziplist_string_header(n: int) -> bytes:
    if n < 64:
        return _BYTES[n]
    if n < 16384:
        return _U16_BE.pack(0x4000 | n)
    if n <= _MAX_U32:
        return b"\x80" + _U32_BE.pack(n)
    raise ValueError(f"a ziplist string cannot hold {n} bytes")


def _ziplist_integer(v: int) -> bytes:
    # The smallest form that holds v, as Redis picks it.
    if 0 <= v <= 12:
        return _BYTES[0xF1 + v]
    if -(1 << 7) <= v < 1 << 7:
        return b"\xfe" + v.to_bytes(1, "little", signed=True)
    if -(1 << 15) <= v < 1 << 15:
        return b"\xc0" + v.to_bytes(2, "little", signed=True)
    if -(1 << 23) <= v < 1 << 23:
        return b"\xf0" + v.to_bytes(3, "little", signed=True)
    if -(1 << 31) <= v < 1 << 31:
        return b"\xd0" + v.to_bytes(4, "little", signed=True)
    if -(1 << 63) <= v < 1 << 63:
        return b"\xe0" + v.to_bytes(8, "little", signed=True)
    raise ValueError(f"a ziplist integer must fit in 64 bits: {v}")


def encode_ziplist(entries: Iterable[bytes | int]) -> bytes:
    """A complete ziplist blob holding `entries` (bytes as strings, ints as integers)."""
    parts = []
    offset = _ZIPLIST_HEADER_SIZE  # where the next entry starts
    tail = _ZIPLIST_HEADER_SIZE  # where the last entry starts (the header size if none)
    previous = 0
    count = 0
    for item in entries:
        if isinstance(item, int):
            body = _ziplist_integer(item)
        else:
            body = _ziplist_string_header(len(item)) + item
        if previous < _ZIPLIST_BIG_PREVLEN:
            entry = _BYTES[previous] + body
        else:
            entry = b"\xfe" + _U32_LE.pack(previous) + body
        parts.append(entry)
        tail = offset
        previous = len(entry)
        offset += previous
        count += 1
    total = offset + 1
    if total > _MAX_U32:
        raise ValueError(f"a ziplist cannot hold {total} bytes")
    header = _ZIPLIST_HEADER.pack(total, tail, min(count, _ZIPLIST_MAX_COUNT))
    return header + b"".join(parts) + _ZIPLIST_END


# --------------------------------------------------------------------------- records


def _record_head(type_code: int, key: bytes) -> bytes:
    return bytes([type_code]) + encode_length(len(key)) + key


def string_record(key: bytes, value: bytes) -> bytes:
    """Record of an immutable key: a Redis string."""
    return _record_head(F.TYPE_STRING, key) + encode_length(len(value)) + value


def _check_ascending(members: Sequence[bytes]) -> None:
    """Raise ValueError unless `members` is strictly ascending."""
    if not all(map(operator.lt, members, islice(members, 1, None))):
        raise ValueError("sensor members must be sorted and unique")


def sensor_record(key: bytes, members: Sequence[bytes]) -> bytes:
    """Record of a sensor: a sorted set of `members` (strictly ascending), every score 0."""
    n = len(members)
    if n == 0:
        raise ValueError("a sensor needs at least one member: Redis has no empty sorted sets")
    if n <= ZSET_MAX_ZIPLIST_ENTRIES and max(map(len, members)) <= ZSET_MAX_ZIPLIST_VALUE:
        _check_ascending(members)
        entries: list[bytes | int] = [_ZIPLIST_ZERO] * (2 * n)
        entries[::2] = members
        return _record_head(F.TYPE_ZSET_ZIPLIST, key) + encode_string(encode_ziplist(entries))
    return _big_zset_record(key, members)


def sensor_batch_record(key: bytes, batch: SampleBatch) -> bytes:
    """Record of a sensor from a :class:`SampleBatch` (sorted and distinct, as stores keep it).

    Fixed-size values (most sensors) are laid out in bulk without ever making
    one bytes object per member.
    """
    n = len(batch)
    ends = np.asarray(batch.ends, np.int64)
    size = len(batch.data) // n if n else 0
    if (
        n <= ZSET_MAX_ZIPLIST_ENTRIES
        or not n
        or size * n != len(batch.data)
        or not (np.diff(ends, prepend=0) == size).all()
    ):
        return sensor_record(key, [pack_timestamp(t) + v for v, t in batch.encoded()])
    rows = np.empty((n, 8 + size), np.uint8)
    rows[:, :8] = np.asarray(batch.times, np.float64).astype(">f8").view(np.uint8).reshape(n, 8)
    rows[:, 8:] = np.frombuffer(batch.data, np.uint8).reshape(n, size)
    head = _record_head(F.TYPE_ZSET_2, key) + encode_length(n)
    return _fixed_rows(head, rows[::-1])


def raw_record(type_code: int, key: bytes, value: bytes) -> bytes:
    """Record from a value already in RDB encoding (e.g. the body of a DUMP payload)."""
    return _record_head(type_code, key) + value


def hash_record(key: bytes, fields: Mapping[bytes, bytes]) -> bytes:
    """Record of an indexed key: a Redis hash of encoded sub-key -> encoded value."""
    n = len(fields)
    if n == 0:
        raise ValueError("an indexed key needs at least one field: Redis has no empty hashes")
    if n <= HASH_MAX_ZIPLIST_ENTRIES and all(
        len(field) <= HASH_MAX_ZIPLIST_VALUE and len(value) <= HASH_MAX_ZIPLIST_VALUE
        for field, value in fields.items()
    ):
        entries: list[bytes | int] = []
        for item in fields.items():
            entries.extend(item)
        return _record_head(F.TYPE_HASH_ZIPLIST, key) + encode_string(encode_ziplist(entries))
    parts = [_record_head(F.TYPE_HASH, key), encode_length(n)]
    for field, value in fields.items():
        parts += (encode_length(len(field)), field, encode_length(len(value)), value)
    return b"".join(parts)


def footer(crc: int) -> bytes:
    """EOF opcode and the CRC-64 (little-endian) of every byte before the CRC.

    Pass the CRC of everything before the EOF byte: this adds the EOF byte itself.
    """
    eof = bytes([F.OP_EOF])
    return eof + crc64(eof, crc).to_bytes(8, "little")


# --------------------------------------------------------------------------- big sorted sets
#
# A big sorted set is n rows <len member> <member> <score>, written in reverse
# member order.  The rows are assembled with numpy rather than one Python call per
# member.  numpy copies the members into a NUL-padded 2-D array in one call; then
#   - members of one size (almost every sensor: a float sample is always 8 + 10
#     bytes) are reversed, prefixed and suffixed in bulk (_fixed_rows);
#   - members of mixed sizes keep one contiguous run of bytes per row of a padded
#     table (_padded_rows);
#   - when padding would inflate the copy too much (a few huge members), the
#     members are joined and scattered between prefixes and scores by a byte mask
#     (_variable_rows).
# Order is checked on the padded array by comparing 8-byte prefixes as integers.


def _length_prefix_widths(lengths: _Array) -> _Array:
    widths = np.full(lengths.shape, 9, np.int64)
    widths[lengths <= _MAX_U32] = 5
    widths[lengths < 16384] = 2
    widths[lengths < 64] = 1
    return widths


def _big_zset_record(key: bytes, members: Sequence[bytes]) -> bytes:
    n = len(members)
    lengths_list = list(map(len, members))
    head = _record_head(F.TYPE_ZSET_2, key) + encode_length(n)
    first = lengths_list[0]
    fixed = lengths_list.count(first) == n  # cheap: small ints are shared objects
    longest = first if fixed else max(lengths_list)
    # A fixed-width numpy copy is the fastest way to gather the members; padding
    # shorter members to the longest is fine unless that inflates the copy a lot.
    total = first * n if fixed else sum(lengths_list)
    if longest > 0 and n * longest <= 2 * total + (1 << 20):
        padded = np.array(members, dtype=f"S{longest}").view(np.uint8).reshape(n, longest)
        _check_ascending_padded(members, padded)
        if fixed:
            return _fixed_rows(head, padded[::-1])
        return _padded_rows(head, padded[::-1], np.array(lengths_list[::-1], np.int64))
    _check_ascending(members)
    joined = np.frombuffer(bytearray().join(reversed(members)), np.uint8)
    return _variable_rows(head, np.array(lengths_list[::-1], np.int64), joined)


def _check_ascending_padded(members: Sequence[bytes], padded: _Array) -> None:
    """Strict order of the members, from their first 8 bytes as big-endian integers.

    NUL padding keeps the order of prefixes that differ (a shorter member that
    compares lower there is a prefix of the other, so really is lower); equal
    prefixes are compared in full.
    """
    n, width = padded.shape
    prefix = np.zeros((n, 8), np.uint8)
    prefix[:, : min(width, 8)] = padded[:, :8]
    keys = prefix.view(">u8").ravel()
    later, earlier = keys[1:], keys[:-1]
    if np.all(later > earlier):
        return
    if np.any(later < earlier):
        raise ValueError("sensor members must be sorted and unique")
    for i in np.flatnonzero(later == earlier).tolist():
        if not members[i] < members[i + 1]:
            raise ValueError("sensor members must be sorted and unique")


def _fixed_rows(head: bytes, rows: _Array) -> bytes:
    """`head`, then each row of `rows` (n, size) with its length prefix and a 0.0 score."""
    n, size = rows.shape
    prefix = np.frombuffer(encode_length(size), np.uint8)
    width = prefix.size + size + len(_SCORE_ZERO_BINARY)
    out = np.empty(len(head) + n * width, np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    table = out[len(head) :].reshape(n, width)
    table[:, : prefix.size] = prefix
    table[:, prefix.size : prefix.size + size] = rows
    table[:, prefix.size + size :] = 0
    return out.tobytes()


def _padded_rows(head: bytes, padded: _Array, lengths: _Array) -> bytes:
    """`head`, then rows <len> <member> <0.0> for the NUL-padded members `padded`.

    Each row of a table is [prefix, right-aligned | member | padding | 8 zero
    bytes]: the padding and the score are all zeros, so the bytes of a row to
    keep are one contiguous run, from its prefix to 8 bytes past its member.
    Prefix and run depend on the length alone, so for members of moderate size
    they come from a table indexed by length (far faster than comparing each
    row's columns).
    """
    n, longest = padded.shape
    before = len(encode_length(longest))
    score = len(_SCORE_ZERO_BINARY)
    table = np.empty((n, before + longest + score), np.uint8)
    table[:, before : before + longest] = padded
    table[:, before + longest :] = 0
    by_length = longest <= _LENGTH_TABLE_MAX
    sizes = np.arange(longest + 1) if by_length else lengths
    widths = _length_prefix_widths(sizes)
    prefixes = np.zeros((sizes.size, before), np.uint8)
    one = widths == 1
    prefixes[one, before - 1] = sizes[one]
    two = widths == 2
    prefixes[two, before - 2] = 0x40 | (sizes[two] >> 8)
    prefixes[two, before - 1] = sizes[two] & 0xFF
    for i in np.flatnonzero(widths > 2).tolist():  # members of 16 KiB or more: few
        prefix = encode_length(int(sizes[i]))
        prefixes[i, before - len(prefix) :] = np.frombuffer(prefix, np.uint8)
    columns = np.arange(table.shape[1])
    keep = (columns >= before - widths[:, np.newaxis]) & (
        columns < (before + score) + sizes[:, np.newaxis]
    )
    if by_length:
        prefixes = prefixes[lengths]
        keep = keep[lengths]
    table[:, :before] = prefixes
    return head + table[keep].tobytes()


def _variable_rows(head: bytes, lengths: _Array, data: _Array) -> bytes:
    """`head`, then rows <len> <member> <0.0> for members of `lengths`, bytes `data`."""
    widths = _length_prefix_widths(lengths)
    row_sizes = widths + lengths + len(_SCORE_ZERO_BINARY)
    starts = np.cumsum(row_sizes) - row_sizes + len(head)
    size = len(head) + int(row_sizes.sum())
    out = np.zeros(size, np.uint8)  # the scores stay 0.0
    out[: len(head)] = np.frombuffer(head, np.uint8)
    one = widths == 1
    out[starts[one]] = lengths[one]
    two = widths == 2
    out[starts[two]] = 0x40 | (lengths[two] >> 8)
    out[starts[two] + 1] = lengths[two] & 0xFF
    for i in np.flatnonzero(widths > 2).tolist():  # members of 16 KiB or more: few
        prefix = encode_length(int(lengths[i]))
        out[starts[i] : starts[i] + len(prefix)] = np.frombuffer(prefix, np.uint8)
    # Mark the member bytes: +1 where a member starts, -1 where it ends, running sum.
    member_starts = starts + widths
    edges = np.zeros(size + 1, np.int8)
    edges[member_starts] = 1
    edges[member_starts + lengths] -= 1
    inside = np.cumsum(edges[:-1], dtype=np.int8).view(np.bool_)
    out[inside] = data
    return out.tobytes()


# --------------------------------------------------------------------------- the encoder


class RdbEncoder:
    """Chunks of one RDB file, in order, with the running CRC-64 of all of them.

    Call :meth:`header`, :meth:`select_db`, then one of :meth:`string`,
    :meth:`sensor` or :meth:`hash` per key, then :meth:`footer`, and write every
    chunk returned, in that order.

    Parameters
    ----------
    version
        RDB version of the file: 9 (default; Redis 5 and later, katsdptelstate 1.0)
        or 8 (also Redis 4.0).  The content is the same.
    """

    def __init__(self, version: int = 9) -> None:
        if version not in _REDIS_VERSIONS:
            raise ValueError(f"RDB version must be one of {sorted(_REDIS_VERSIONS)}: {version}")
        self.version = version
        self._crc = 0
        self._size = 0
        self._done = False

    @property
    def crc(self) -> int:
        """CRC-64 of every byte handed out so far."""
        return self._crc

    @property
    def size(self) -> int:
        """Number of bytes handed out so far."""
        return self._size

    def _emit(self, chunk: bytes) -> bytes:
        if self._done:
            raise RuntimeError("the RDB file is already complete")
        self._crc = crc64(chunk, self._crc)
        self._size += len(chunk)
        return chunk

    def header(
        self, *, ctime: int | None = None, aux: Mapping[bytes, bytes] | None = None
    ) -> bytes:
        """Magic, version and AUX fields.

        Parameters
        ----------
        ctime
            Creation time (Unix seconds) to record; default now.
        aux
            More AUX fields, after the standard ones (readers ignore unknown ones).
        """

        if ctime is None:
            ctime = int(time.time())
        fields: dict[bytes, bytes] = {
            b"redis-ver": _REDIS_VERSIONS[self.version].encode(),
            b"redis-bits": b"64",
            b"ctime": b"%d" % ctime,
            b"used-mem": b"0",
            b"telstate-version": __version__.encode(),
        }
        fields.update(aux or {})
        parts = [b"REDIS%04d" % self.version]
        op_aux = bytes([F.OP_AUX])
        for name, value in fields.items():
            parts += (op_aux, encode_string(name), encode_string(value))
        return self._emit(b"".join(parts))

    def select_db(self, db: int = 0, *, keys: int | None = None, expires: int = 0) -> bytes:
        """SELECTDB, and RESIZEDB when the number of `keys` is known."""
        chunk = bytes([F.OP_SELECTDB]) + encode_length(db)
        if keys is not None:
            chunk += bytes([F.OP_RESIZEDB]) + encode_length(keys) + encode_length(expires)
        return self._emit(chunk)

    def string(self, key: bytes, value: bytes) -> bytes:
        """An immutable key (see :func:`string_record`)."""
        return self._emit(string_record(key, value))

    def sensor(self, key: bytes, members: Sequence[bytes]) -> bytes:
        """A sensor from its members, strictly ascending (see :func:`sensor_record`)."""
        return self._emit(sensor_record(key, members))

    def hash(self, key: bytes, fields: Mapping[bytes, bytes]) -> bytes:
        """An indexed key (see :func:`hash_record`)."""
        return self._emit(hash_record(key, fields))

    def sensor_batch(self, key: bytes, batch: SampleBatch) -> bytes:
        """A sensor from a batch of samples (see :func:`sensor_batch_record`)."""
        return self._emit(sensor_batch_record(key, batch))

    def raw(self, type_code: int, key: bytes, value: bytes) -> bytes:
        """A key whose value is already RDB-encoded (see :func:`raw_record`)."""
        return self._emit(raw_record(type_code, key, value))

    def footer(self) -> bytes:
        """EOF and the CRC-64 of the whole file: the last chunk."""
        eof = self._emit(bytes([F.OP_EOF]))
        self._done = True
        checksum = self._crc.to_bytes(8, "little")
        self._size += len(checksum)
        return eof + checksum
