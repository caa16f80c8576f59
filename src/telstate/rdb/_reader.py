"""Reading RDB files: an index of where each key lies, and decoding on demand.

:class:`RdbIndex` walks an RDB file held in any buffer (bytes, or a
memory-mapped file) once, records for every key its type and the byte range
of its value, and skips the values themselves: strings by their length
prefix, and big sorted sets by a vectorised check that their members are
fixed-size records.  Reading a key decodes only that key.  Nothing here does
I/O: the caller supplies the buffer.

Encodings understood (see :mod:`._format` for the codes)::

    strings     raw, int-encoded (8/16/32-bit), LZF-compressed
    sorted set  3 (string scores), 5 (binary scores), 12 ziplist, 17 listpack
    hash        4, 9 zipmap, 13 ziplist, 16 listpack, 22-25 with field expiry
    skipped     lists, sets, streams, module values (counted by kind)

Every read is bounds-checked: a truncated or corrupt file raises
:class:`RdbParseError` with the file name, the offset and the key, never an
IndexError, and a forged length cannot make us allocate more than the file
holds (LZF output is capped by the best ratio LZF can reach).

Key and field expiry are not applied: an archived file keeps every key it
holds, whenever it is opened (Redis itself would drop expired keys on load).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from .._errors import RdbParseError
from .._keys import KeyType
from .._samples import SampleBatch
from . import _format as F
from ._crc64 import crc64
from ._lzf import lzf_decompress

__all__ = ["Entry", "RdbIndex"]

_DOUBLE_LE = struct.Struct("<d")
_FLOAT_LE = struct.Struct("<f")
# Integer-encoded strings: encoding -> size of the little-endian integer.
_INT_SIZES = {F.ENC_INT8: 1, F.ENC_INT16: 2, F.ENC_INT32: 4}
# LZF turns at most 3 input bytes into 264 output bytes.
_LZF_MAX_RATIO = 88

_ZSET_TYPES = frozenset({F.TYPE_ZSET, F.TYPE_ZSET_2, F.TYPE_ZSET_ZIPLIST, F.TYPE_ZSET_LISTPACK})
_HASH_TYPES = frozenset(
    {
        F.TYPE_HASH,
        F.TYPE_HASH_ZIPMAP,
        F.TYPE_HASH_ZIPLIST,
        F.TYPE_HASH_LISTPACK,
        F.TYPE_HASH_METADATA_PRE_GA,
        F.TYPE_HASH_LISTPACK_EX_PRE_GA,
        F.TYPE_HASH_METADATA,
        F.TYPE_HASH_LISTPACK_EX,
    }
)


class Entry(NamedTuple):
    """Where a key's value lies in the file."""

    rdb_type: int
    start: int  # first byte of the value (after the key)
    end: int  # one past its last byte
    db: int


class _Corrupt(Exception):
    """Internal: a problem at an offset, turned into RdbParseError with context."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class RdbIndex:
    """The keys of an RDB file and where their values lie.

    Parameters
    ----------
    data
        The whole file: bytes, bytearray, memoryview or mmap.
    name
        File name for error messages.
    verify_checksum
        Check the trailing CRC-64 (when the file has a non-zero one).  This
        reads every byte of the file.
    db
        Index only this database; None (the default) indexes them all, a key in
        a later database replacing one of the same name in an earlier one.

    Raises
    ------
    RdbParseError
        If the file is not an RDB file, is truncated or corrupt, or its
        checksum does not match.
    """

    def __init__(
        self,
        data: Any,
        name: str | None = None,
        verify_checksum: bool = True,
        db: int | None = None,
    ) -> None:
        self.name = name
        self._only_db = db
        self._buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self._n = len(self._buf)
        #: Entries by key (keys of all databases; a later database's key wins).
        self.entries: dict[bytes, Entry] = {}
        #: Keys of types telstate does not use, counted by kind ("list", "stream", ...).
        self.skipped: Counter[str] = Counter()
        #: AUX fields of the file (redis-ver, ctime, ...).
        self.aux: dict[bytes, bytes] = {}
        self.databases: set[int] = set()
        self._key: bytes | None = None
        try:
            self._read_header()
            self._walk(verify_checksum)
        except _Corrupt as exc:
            raise self._error(exc.reason, exc.offset) from None
        except RdbParseError:
            raise
        except (IndexError, ValueError, struct.error, OverflowError) as exc:
            raise self._error(f"corrupt data ({exc})", None) from None

    # ----------------------------------------------------------------- errors

    def _error(self, reason: str, offset: int | None, key: bytes | None = None) -> RdbParseError:
        return RdbParseError(self.name, offset, key if key is not None else self._key, reason)

    # ----------------------------------------------------------------- primitives

    def _need(self, pos: int, count: int) -> None:
        if count < 0 or pos + count > self._n:
            raise _Corrupt(f"needs {count} bytes but the file ends (truncated?)", pos)

    def _length(self, pos: int) -> tuple[int, int]:
        """A length and the position after it."""
        self._need(pos, 1)
        first = self._buf[pos]
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, pos + 1
        if kind == 1:
            self._need(pos, 2)
            return ((first & 0x3F) << 8) | self._buf[pos + 1], pos + 2
        if first == 0x80:
            self._need(pos, 5)
            return int.from_bytes(self._buf[pos + 1 : pos + 5], "big"), pos + 5
        if first == 0x81:
            self._need(pos, 9)
            return int.from_bytes(self._buf[pos + 1 : pos + 9], "big"), pos + 9
        raise _Corrupt(f"a length was expected, found byte 0x{first:02x}", pos)

    def _count(self, pos: int, min_size: int = 1) -> tuple[int, int]:
        """A count of items each taking at least `min_size` bytes (checked against the file)."""
        count, pos = self._length(pos)
        if count * min_size > self._n - pos:
            raise _Corrupt(f"claims {count} items, more than the file can hold", pos)
        return count, pos

    def _string(self, pos: int) -> tuple[bytes, int]:
        """A string (any encoding) and the position after it."""
        self._need(pos, 1)
        first = self._buf[pos]
        if first >> 6 != 3:
            length, pos = self._length(pos)
            self._need(pos, length)
            return bytes(self._buf[pos : pos + length]), pos + length
        encoding = first & 0x3F
        if encoding in _INT_SIZES:
            size = _INT_SIZES[encoding]
            self._need(pos, 1 + size)
            number = int.from_bytes(self._buf[pos + 1 : pos + 1 + size], "little", signed=True)
            return b"%d" % number, pos + 1 + size
        if encoding == F.ENC_LZF:
            compressed, pos = self._length(pos + 1)
            length, pos = self._length(pos)
            self._need(pos, compressed)
            if length > compressed * _LZF_MAX_RATIO + 64:
                raise _Corrupt(f"LZF string claims {length} bytes from {compressed}", pos)
            try:
                return lzf_decompress(self._buf[pos : pos + compressed], length), pos + compressed
            except ValueError as exc:
                raise _Corrupt(f"bad LZF data: {exc}", pos) from None
        raise _Corrupt(f"unknown string encoding {encoding}", pos)

    def _skip_string(self, pos: int) -> int:
        self._need(pos, 1)
        first = self._buf[pos]
        if first >> 6 != 3:
            length, pos = self._length(pos)
            self._need(pos, length)
            return pos + length
        encoding = first & 0x3F
        if encoding in _INT_SIZES:
            self._need(pos, 1 + _INT_SIZES[encoding])
            return pos + 1 + _INT_SIZES[encoding]
        if encoding == F.ENC_LZF:
            compressed, pos = self._length(pos + 1)
            _, pos = self._length(pos)
            self._need(pos, compressed)
            return pos + compressed
        raise _Corrupt(f"unknown string encoding {encoding}", pos)

    # ----------------------------------------------------------------- the walk

    def _read_header(self) -> None:
        head = bytes(self._buf[:9])
        if head[:5] == b"REDIS" and head[5:9].isdigit():
            self.magic, self.version, self._pos = "REDIS", int(head[5:9]), 9
            limit = F.MAX_REDIS_VERSION
        elif head[:6] == b"VALKEY" and head[6:9].isdigit():
            self.magic, self.version, self._pos = "VALKEY", int(head[6:9]), 9
            limit = F.MAX_VALKEY_VERSION
        else:
            raise _Corrupt("not an RDB file (no REDIS or VALKEY magic)", 0)
        if not 1 <= self.version <= limit:
            raise _Corrupt(f"unsupported RDB version {self.version}", 5)

    def _walk(self, verify_checksum: bool) -> None:
        buf, pos, db = self._buf, self._pos, 0
        while True:
            self._key = None
            self._need(pos, 1)
            code = buf[pos]
            start = pos
            pos += 1
            if code == F.OP_EOF:
                break
            if code == F.OP_SELECTDB:
                db, pos = self._length(pos)
                self.databases.add(db)
            elif code == F.OP_RESIZEDB:
                _, pos = self._length(pos)
                _, pos = self._length(pos)
            elif code == F.OP_AUX:
                field, pos = self._string(pos)
                value, pos = self._string(pos)
                self.aux[field] = value
            elif code == F.OP_EXPIRETIME_MS:
                self._need(pos, 8)
                pos += 8
            elif code == F.OP_EXPIRETIME:
                self._need(pos, 4)
                pos += 4
            elif code == F.OP_FREQ:
                self._need(pos, 1)
                pos += 1
            elif code == F.OP_IDLE:
                _, pos = self._length(pos)
            elif code == F.OP_MODULE_AUX:
                _, pos = self._length(pos)  # module id
                _, pos = self._length(pos)  # "when" opcode
                _, pos = self._length(pos)  # "when"
                pos = self._skip_module_value(pos)
            elif code == F.OP_FUNCTION2:
                pos = self._skip_string(pos)
            elif code == F.OP_FUNCTION_PRE_GA:
                pos = self._skip_string(pos)  # name
                pos = self._skip_string(pos)  # engine
                has_description, pos = self._length(pos)
                if has_description:
                    pos = self._skip_string(pos)
                pos = self._skip_string(pos)  # code
            elif code == F.OP_SLOT_INFO:
                for _ in range(3):
                    _, pos = self._length(pos)
            elif code < F.OP_SLOT_IMPORT_VALKEY:
                key, pos = self._string(pos)
                self._key = key
                end = self._skip_value(code, pos)
                if self._only_db is not None and db != self._only_db:
                    pass
                elif code in _ZSET_TYPES or code in _HASH_TYPES or code == F.TYPE_STRING:
                    self.entries[key] = Entry(code, pos, end, db)
                else:
                    self.skipped[F.OTHER_TYPE_NAMES.get(code, f"type {code}")] += 1
                pos = end
            else:
                raise _Corrupt(f"unknown opcode {code}", start)
        self._key = None
        self._check_end(pos, verify_checksum)

    def _check_end(self, pos: int, verify_checksum: bool) -> None:
        if self.version < 5:
            if pos != self._n:
                raise _Corrupt(f"{self._n - pos} bytes after the end of the data", pos)
            return
        self._need(pos, 8)
        if pos + 8 != self._n:
            raise _Corrupt(f"{self._n - pos - 8} bytes after the checksum", pos + 8)
        stored = int.from_bytes(self._buf[pos : pos + 8], "little")
        if verify_checksum and stored != 0:
            actual = crc64(memoryview(self._buf)[:pos])
            if actual != stored:
                raise _Corrupt(
                    f"checksum mismatch: file says {stored:016x}, data gives {actual:016x}", pos
                )

    # ----------------------------------------------------------------- skipping values

    def _skip_value(self, code: int, pos: int) -> int:
        """The position after a value of type `code` starting at `pos`."""
        if code in (
            F.TYPE_STRING,
            F.TYPE_HASH_ZIPMAP,
            F.TYPE_LIST_ZIPLIST,
            F.TYPE_SET_INTSET,
            F.TYPE_ZSET_ZIPLIST,
            F.TYPE_HASH_ZIPLIST,
            F.TYPE_HASH_LISTPACK,
            F.TYPE_ZSET_LISTPACK,
            F.TYPE_SET_LISTPACK,
        ):
            return self._skip_string(pos)
        if code in (F.TYPE_LIST, F.TYPE_SET, F.TYPE_LIST_QUICKLIST):
            count, pos = self._count(pos)
            for _ in range(count):
                pos = self._skip_string(pos)
            return pos
        if code == F.TYPE_ZSET_2 or code == F.TYPE_ZSET:
            return self._skip_zset(code, pos)
        if code == F.TYPE_HASH:
            count, pos = self._count(pos, 2)
            for _ in range(2 * count):
                pos = self._skip_string(pos)
            return pos
        if code == F.TYPE_LIST_QUICKLIST_2:
            count, pos = self._count(pos, 2)
            for _ in range(count):
                _, pos = self._length(pos)  # container kind
                pos = self._skip_string(pos)
            return pos
        if code in (F.TYPE_STREAM_LISTPACKS, F.TYPE_STREAM_LISTPACKS_2, F.TYPE_STREAM_LISTPACKS_3):
            return self._skip_stream(code, pos)
        if code == F.TYPE_MODULE_2:
            _, pos = self._length(pos)  # module id
            return self._skip_module_value(pos)
        if self.magic == "VALKEY":
            if code == F.TYPE_VALKEY_HASH_2:
                count, pos = self._count(pos, 10)
                for _ in range(count):
                    pos = self._skip_string(self._skip_string(pos))
                    self._need(pos, 8)
                    pos += 8
                return pos
        elif code in (F.TYPE_HASH_METADATA, F.TYPE_HASH_METADATA_PRE_GA):
            if code == F.TYPE_HASH_METADATA:
                self._need(pos, 8)
                pos += 8  # minimum expiry
            count, pos = self._count(pos, 3)
            for _ in range(count):
                _, pos = self._length(pos)  # field TTL
                pos = self._skip_string(self._skip_string(pos))
            return pos
        elif code in (F.TYPE_HASH_LISTPACK_EX, F.TYPE_HASH_LISTPACK_EX_PRE_GA):
            if code == F.TYPE_HASH_LISTPACK_EX:
                self._need(pos, 8)
                pos += 8
            return self._skip_string(pos)
        if code == F.TYPE_MODULE_PRE_GA:
            raise _Corrupt("module values of Redis 4.0 release candidates cannot be skipped", pos)
        raise _Corrupt(f"unknown value type {code}", pos - 1)

    def _skip_zset(self, code: int, pos: int) -> int:
        count, pos = self._count(pos, 2)
        if count >= 64:
            stride = self._fixed_zset_stride(code, pos, count)
            if stride:
                return pos + stride * count
        for _ in range(count):
            pos = self._skip_string(pos)
            if code == F.TYPE_ZSET_2:
                self._need(pos, 8)
                pos += 8
            else:
                self._need(pos, 1)
                size = self._buf[pos]
                pos += 1 + (size if size < 253 else 0)
        return pos

    def _fixed_zset_stride(self, code: int, pos: int, count: int) -> int:
        """Record size if all `count` members are plain strings of one length, else 0.

        Checked with numpy over the whole run of records: every record must start
        with the same length prefix and (type 3) end with the same score text.
        """
        first = self._buf[pos]
        if first >> 6 == 3:
            return 0
        length, after = self._length(pos)
        prefix = after - pos
        score = 8 if code == F.TYPE_ZSET_2 else None
        if score is None:
            self._need(after + length, 1)
            size = self._buf[after + length]
            if size >= 253:
                return 0
            score = 1 + size
        stride = prefix + length + score
        if stride * count > self._n - pos:
            return 0
        rows = np.frombuffer(self._buf, np.uint8, stride * count, pos).reshape(count, stride)
        head = rows[:, :prefix]
        if not (head == head[0]).all():
            return 0
        if code == F.TYPE_ZSET:
            tail = rows[:, prefix + length :]
            if not (tail == tail[0]).all():
                return 0
        return stride

    def _skip_stream(self, code: int, pos: int) -> int:
        count, pos = self._count(pos, 2)
        for _ in range(2 * count):  # master ID, listpack
            pos = self._skip_string(pos)
        for _ in range(3):  # length, last ID
            _, pos = self._length(pos)
        if code >= F.TYPE_STREAM_LISTPACKS_2:
            for _ in range(5):  # first ID, max deleted ID, entries added
                _, pos = self._length(pos)
        groups, pos = self._count(pos)
        for _ in range(groups):
            pos = self._skip_string(pos)
            for _ in range(2 + (code >= F.TYPE_STREAM_LISTPACKS_2)):
                _, pos = self._length(pos)
            pending, pos = self._count(pos, 24)
            for _ in range(pending):
                self._need(pos, 24)
                _, pos = self._length(pos + 24)  # raw ID, delivery time; delivery count
            consumers, pos = self._count(pos)
            for _ in range(consumers):
                pos = self._skip_string(pos)
                skip = 16 if code >= F.TYPE_STREAM_LISTPACKS_3 else 8  # seen (and active) time
                self._need(pos, skip)
                owned, pos = self._count(pos + skip, 16)
                self._need(pos, 16 * owned)
                pos += 16 * owned
        return pos

    def _skip_module_value(self, pos: int) -> int:
        while True:
            opcode, pos = self._length(pos)
            if opcode == F.MODULE_EOF:
                return pos
            if opcode in (F.MODULE_SINT, F.MODULE_UINT):
                _, pos = self._length(pos)
            elif opcode == F.MODULE_FLOAT:
                self._need(pos, 4)
                pos += 4
            elif opcode == F.MODULE_DOUBLE:
                self._need(pos, 8)
                pos += 8
            elif opcode == F.MODULE_STRING:
                pos = self._skip_string(pos)
            else:
                raise _Corrupt(f"unknown module value opcode {opcode}", pos)

    # ----------------------------------------------------------------- reading values

    def key_type(self, entry: Entry) -> KeyType:
        """The telstate key type of an entry."""
        if entry.rdb_type == F.TYPE_STRING:
            return KeyType.IMMUTABLE
        if entry.rdb_type in _ZSET_TYPES:
            return KeyType.MUTABLE
        return KeyType.INDEXED

    def read(self, key: bytes) -> bytes | list[bytes] | dict[bytes, bytes]:
        """Value of `key`: bytes (string), sorted members (zset) or a dict (hash)."""
        entry = self.entries[key]
        self._key = key
        try:
            if entry.rdb_type == F.TYPE_STRING:
                return self._string(entry.start)[0]
            if entry.rdb_type in _ZSET_TYPES:
                return self._zset_members(entry)
            return self._hash(entry)
        except _Corrupt as exc:
            raise self._error(exc.reason, exc.offset, key) from None
        except (IndexError, ValueError, struct.error, OverflowError) as exc:
            raise self._error(f"corrupt data ({exc})", entry.start, key) from None

    def read_samples(self, key: bytes) -> SampleBatch:
        """The sorted set `key` as sensor samples, decoded in bulk where possible."""
        entry = self.entries[key]
        self._key = key
        try:
            batch = self._fixed_samples(entry)
            if batch is not None:
                return batch
            members = self.read(key)
            assert isinstance(members, list)
            short = next((m for m in members if len(m) < 9), None)
            if short is not None:
                raise _Corrupt(
                    f"sorted-set member {short!r} is too short to be a sensor sample", entry.start
                )
            return SampleBatch.from_members(members)
        except _Corrupt as exc:
            raise self._error(exc.reason, exc.offset, key) from None

    def sample_span(self, key: bytes) -> tuple[int, float | None, float | None]:
        """Number of samples of a sorted set and its first and last timestamps.

        Fixed-size members are read in place (no decoding); others are decoded.
        """
        entry = self.entries[key]
        try:
            if entry.rdb_type in (F.TYPE_ZSET, F.TYPE_ZSET_2):
                count, pos = self._count(entry.start, 2)
                stride = self._fixed_zset_stride(entry.rdb_type, pos, count) if count >= 64 else 0
                if stride:
                    prefix = self._length(pos)[1] - pos
                    rows = np.frombuffer(self._buf, np.uint8, stride * count, pos)
                    stamps = rows.reshape(count, stride)[:, prefix : prefix + 8]
                    times = np.ascontiguousarray(stamps).view(">f8").ravel()
                    return count, float(times.min()), float(times.max())
        except _Corrupt as exc:
            raise self._error(exc.reason, exc.offset, key) from None
        batch = self.read_samples(key)
        if not len(batch):
            return 0, None, None
        return len(batch), float(batch.times[0]), float(batch.times[-1])

    def raw_value(self, key: bytes) -> memoryview:
        """The bytes of a key's value exactly as stored (for RESTORE payloads)."""
        entry = self.entries[key]
        return memoryview(self._buf)[entry.start : entry.end]

    def _fixed_samples(self, entry: Entry) -> SampleBatch | None:
        if entry.rdb_type not in (F.TYPE_ZSET, F.TYPE_ZSET_2):
            return None
        count, pos = self._count(entry.start, 2)
        if count < 64:
            return None
        stride = self._fixed_zset_stride(entry.rdb_type, pos, count)
        if not stride:
            return None
        length, after = self._length(pos)
        prefix = after - pos
        if length < 9:
            return None
        rows = np.frombuffer(self._buf, np.uint8, stride * count, pos).reshape(count, stride)
        if entry.rdb_type == F.TYPE_ZSET_2:
            scores = rows[:, prefix + length :]
            if scores.any():  # telstate scores are all +0.0: let the general path sort others
                return None
        elif bytes(rows[0, prefix + length :]) != b"\x010":
            return None
        members = np.ascontiguousarray(rows[:, prefix : prefix + length])
        keys = members.view(f"S{length}").ravel()
        if count > 1 and not (keys[1:] > keys[:-1]).all():
            if (keys[1:] < keys[:-1]).all():
                members = members[::-1]  # Redis saves skiplists from the top down
            else:
                order = np.argsort(keys, kind="stable")
                members = members[order]
                keys = members.view(f"S{length}").ravel()
                if not (keys[1:] > keys[:-1]).all():
                    raise _Corrupt("sorted set holds a member twice", pos)
        return SampleBatch.from_rows(members)

    def _zset_members(self, entry: Entry) -> list[bytes]:
        """Members in Redis order: by score, then by bytes."""
        code, pos = entry.rdb_type, entry.start
        pairs: list[tuple[float, bytes]] = []
        if code in (F.TYPE_ZSET, F.TYPE_ZSET_2):
            count, pos = self._count(pos, 2)
            for _ in range(count):
                member, pos = self._string(pos)
                if code == F.TYPE_ZSET_2:
                    self._need(pos, 8)
                    score = _DOUBLE_LE.unpack_from(self._buf, pos)[0]
                    pos += 8
                else:
                    score, pos = self._text_score(pos)
                pairs.append((score, member))
        else:
            blob, _ = self._string(pos)
            items = (
                _ziplist(blob, entry.start)
                if code == F.TYPE_ZSET_ZIPLIST
                else _listpack(blob, entry.start)
            )
            if len(items) % 2:
                raise _Corrupt("sorted set with an odd number of items", entry.start)
            for i in range(0, len(items), 2):
                pairs.append((float(items[i + 1]), _as_bytes(items[i])))
        pairs.sort()
        return [member for _, member in pairs]

    def _text_score(self, pos: int) -> tuple[float, int]:
        self._need(pos, 1)
        size = self._buf[pos]
        if size == 253:
            return float("nan"), pos + 1
        if size == 254:
            return float("inf"), pos + 1
        if size == 255:
            return float("-inf"), pos + 1
        self._need(pos + 1, size)
        return float(bytes(self._buf[pos + 1 : pos + 1 + size])), pos + 1 + size

    def _hash(self, entry: Entry) -> dict[bytes, bytes]:
        code, pos = entry.rdb_type, entry.start
        result: dict[bytes, bytes] = {}
        if code == F.TYPE_HASH or (self.magic == "VALKEY" and code == F.TYPE_VALKEY_HASH_2):
            count, pos = self._count(pos, 2)
            for _ in range(count):
                field, pos = self._string(pos)
                value, pos = self._string(pos)
                if code != F.TYPE_HASH:
                    self._need(pos, 8)
                    pos += 8  # field expiry
                result[field] = value
            return result
        if code in (F.TYPE_HASH_METADATA, F.TYPE_HASH_METADATA_PRE_GA):
            if code == F.TYPE_HASH_METADATA:
                pos += 8
            count, pos = self._count(pos, 3)
            for _ in range(count):
                _, pos = self._length(pos)
                field, pos = self._string(pos)
                value, pos = self._string(pos)
                result[field] = value
            return result
        step = 2
        if code in (F.TYPE_HASH_LISTPACK_EX, F.TYPE_HASH_LISTPACK_EX_PRE_GA):
            pos += 8 if code == F.TYPE_HASH_LISTPACK_EX else 0
            step = 3  # field, value, expiry
        blob, _ = self._string(pos)
        if code == F.TYPE_HASH_ZIPMAP:
            return _zipmap(blob, entry.start)
        items = (
            _ziplist(blob, entry.start)
            if code == F.TYPE_HASH_ZIPLIST
            else _listpack(blob, entry.start)
        )
        if len(items) % step:
            raise _Corrupt("hash with an incomplete field", entry.start)
        for i in range(0, len(items), step):
            result[_as_bytes(items[i])] = _as_bytes(items[i + 1])
        return result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


# --------------------------------------------------------------------------- blobs


def _as_bytes(item: bytes | int) -> bytes:
    return item if isinstance(item, bytes) else b"%d" % item


def _ziplist(blob: bytes, offset: int) -> list[bytes | int]:
    """Entries of a ziplist (Redis < 7 compact list)."""
    try:
        total, _, count = struct.unpack_from("<IIH", blob)
        if total != len(blob):
            raise _Corrupt("ziplist size does not match its string", offset)
        pos = 10
        items: list[bytes | int] = []
        while blob[pos] != 0xFF:
            pos += 1 if blob[pos] < 254 else 5  # previous entry length
            head = blob[pos]
            kind = head >> 6
            if kind == 0:
                length, pos = head & 0x3F, pos + 1
            elif kind == 1:
                length, pos = ((head & 0x3F) << 8) | blob[pos + 1], pos + 2
            elif kind == 2:
                length, pos = int.from_bytes(blob[pos + 1 : pos + 5], "big"), pos + 5
            else:
                if head == 0xC0:
                    items.append(int.from_bytes(blob[pos + 1 : pos + 3], "little", signed=True))
                    pos += 3
                elif head == 0xD0:
                    items.append(int.from_bytes(blob[pos + 1 : pos + 5], "little", signed=True))
                    pos += 5
                elif head == 0xE0:
                    items.append(int.from_bytes(blob[pos + 1 : pos + 9], "little", signed=True))
                    pos += 9
                elif head == 0xF0:
                    items.append(int.from_bytes(blob[pos + 1 : pos + 4], "little", signed=True))
                    pos += 4
                elif head == 0xFE:
                    items.append(int.from_bytes(blob[pos + 1 : pos + 2], "little", signed=True))
                    pos += 2
                elif 0xF1 <= head <= 0xFD:
                    items.append(head - 0xF1)
                    pos += 1
                else:
                    raise _Corrupt(f"bad ziplist entry encoding 0x{head:02x}", offset)
                continue
            if pos + length > len(blob):
                raise _Corrupt("ziplist entry runs past its end", offset)
            items.append(blob[pos : pos + length])
            pos += length
        if count != 0xFFFF and count != len(items):
            raise _Corrupt("ziplist entry count does not match", offset)
        return items
    except (IndexError, struct.error) as exc:
        raise _Corrupt(f"truncated ziplist ({exc})", offset) from None


def _listpack(blob: bytes, offset: int) -> list[bytes | int]:
    """Entries of a listpack (Redis >= 7 compact list)."""
    try:
        total, count = struct.unpack_from("<IH", blob)
        if total != len(blob):
            raise _Corrupt("listpack size does not match its string", offset)
        pos = 6
        items: list[bytes | int] = []
        while blob[pos] != 0xFF:
            head = blob[pos]
            start = pos
            if head < 0x80:  # 7-bit unsigned int
                items.append(head)
                pos += 1
            elif head < 0xC0:  # 6-bit string length
                length = head & 0x3F
                items.append(blob[pos + 1 : pos + 1 + length])
                pos += 1 + length
            elif head < 0xE0:  # 13-bit signed int
                value = ((head & 0x1F) << 8) | blob[pos + 1]
                items.append(value - (1 << 13) if value >= 1 << 12 else value)
                pos += 2
            elif head < 0xF0:  # 12-bit string length
                length = ((head & 0x0F) << 8) | blob[pos + 1]
                items.append(blob[pos + 2 : pos + 2 + length])
                pos += 2 + length
            elif head == 0xF0:  # 32-bit string length
                length = int.from_bytes(blob[pos + 1 : pos + 5], "little")
                items.append(blob[pos + 5 : pos + 5 + length])
                pos += 5 + length
            elif head in (0xF1, 0xF2, 0xF3, 0xF4):  # 16/24/32/64-bit signed int
                size = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[head]
                items.append(int.from_bytes(blob[pos + 1 : pos + 1 + size], "little", signed=True))
                pos += 1 + size
            else:
                raise _Corrupt(f"bad listpack entry encoding 0x{head:02x}", offset)
            if pos > len(blob) - 1:
                raise _Corrupt("listpack entry runs past its end", offset)
            entry_size = pos - start
            # the back-length: 7 bits a byte, but Redis gives each all-ones size
            # (2**14 - 1, 2**21 - 1, 2**28 - 1) the longer form
            pos += (
                1
                + (entry_size >= 128)
                + (entry_size >= 16383)
                + (entry_size >= 2097151)
                + (entry_size >= 268435455)
            )
        if pos != len(blob) - 1:
            raise _Corrupt("listpack has bytes after its end", offset)
        if count != 0xFFFF and count != len(items):
            raise _Corrupt("listpack entry count does not match", offset)
        return items
    except (IndexError, struct.error) as exc:
        raise _Corrupt(f"truncated listpack ({exc})", offset) from None


def _zipmap(blob: bytes, offset: int) -> dict[bytes, bytes]:
    """Fields of a zipmap (Redis < 2.6 compact hash)."""
    try:
        pos, result = 1, {}
        while blob[pos] != 0xFF:
            items = []
            for has_free in (False, True):
                length = blob[pos]
                if length < 254:
                    pos += 1
                elif length == 254:
                    length = int.from_bytes(blob[pos + 1 : pos + 5], "little")
                    pos += 5
                else:
                    raise _Corrupt("bad zipmap length", offset)
                free = 0
                if has_free:
                    free = blob[pos]
                    pos += 1
                if pos + length > len(blob):
                    raise _Corrupt("zipmap entry runs past its end", offset)
                items.append(blob[pos : pos + length])
                pos += length + free
            result[items[0]] = items[1]
        return result
    except IndexError as exc:
        raise _Corrupt(f"truncated zipmap ({exc})", offset) from None
