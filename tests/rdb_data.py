"""RDB test data: a telescope state with every kind of key, and an RDB encoder.

:func:`fill` writes keys that a real server saves in each encoding it uses; the encoder
below builds, byte by byte, the encodings no server on this machine writes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

import telstate


def fill(ts: telstate.TelescopeState) -> None:
    """Write keys that exercise every RDB encoding a server uses for telstate data."""
    ts["small_int"] = 1
    ts["text"] = "x" * 100  # long enough for LZF, compressible
    ts["random_bytes"] = np.random.default_rng(1).bytes(300)  # incompressible
    ts["array"] = np.arange(20000.0).reshape(100, 200)  # big, LZF-compressed
    ts["nested"] = {"a": (1, 2.5, "three"), "b": [None, True, 1 - 2j]}
    ts.view("1556012345")["obs_params"] = {"observer": "ghost", "n": 3}
    for i in range(10):  # small sorted set: listpack / ziplist
        ts.add("sensor_small", float(i), ts=1e9 + i)
    with ts.pipeline() as batch:
        for i in range(3000):  # big sorted set of fixed-size members
            batch.add("sensor_big", i * 0.5, ts=1e9 + i)
        for i in range(500):  # big sorted set of varying members
            batch.add("activity", ["slew", "track", "scan_ready"][i % 3] * (1 + i % 2), ts=1e9 + i)
        for i in range(200):  # samples sharing timestamps
            batch.add("same_time", i, ts=1e9 + i // 10)
    for i in range(5):  # small hash
        ts.set_indexed("idx_small", (f"m{i:03d}", "h"), complex(i, -i))
    for i in range(700):  # big hash
        ts.set_indexed("idx_big", i, np.full(3, i, np.float32))


# --------------------------------------------------------------------------- an RDB encoder
#
# Writes RDB records byte by byte from the format (Redis's rdb.h/rdb.c, listpack.c,
# ziplist.c and zipmap.c describe it), so the tests can build the encodings no server on
# this machine writes: zipmaps (Redis < 2.6), type-3 sorted sets (scores as text, Redis <
# 4), hashes with field expiry (Redis 7.4+), Valkey 9 files, module values.  Nothing here
# uses telstate's own writer; the checksum is telstate's CRC-64, which
# tests/test_rdb_crc_lzf.py checks against redis-server's.

Item = bytes | int

# value types
STRING, LIST, SET, ZSET, HASH, ZSET_2, MODULE_PRE_GA, MODULE_2 = 0, 1, 2, 3, 4, 5, 6, 7
HASH_ZIPMAP, LIST_ZIPLIST, SET_INTSET, ZSET_ZIPLIST, HASH_ZIPLIST = 9, 10, 11, 12, 13
LIST_QUICKLIST, STREAM, HASH_LISTPACK, ZSET_LISTPACK, LIST_QUICKLIST_2 = 14, 15, 16, 17, 18
SET_LISTPACK = 20
HASH_METADATA_PRE_GA, HASH_LISTPACK_EX_PRE_GA, HASH_METADATA, HASH_LISTPACK_EX = 22, 23, 24, 25
VALKEY_HASH_2 = 22


def length(n: int) -> bytes:
    """An RDB length: 6, 14, 32 or 64 bits, big-endian after the first two."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return bytes([0x40 | n >> 8, n & 0xFF])
    if n < 1 << 32:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def string(data: bytes) -> bytes:
    """A raw RDB string: its length, then its bytes."""
    return length(len(data)) + data


def int_string(n: int) -> bytes:
    """An integer-encoded RDB string (8, 16 or 32 bits, little-endian)."""
    for code, size in ((0xC0, 1), (0xC1, 2), (0xC2, 4)):
        if -(1 << (8 * size - 1)) <= n < 1 << (8 * size - 1):
            return bytes([code]) + n.to_bytes(size, "little", signed=True)
    raise ValueError(f"{n} needs more than 32 bits")


def record(rdb_type: int, key: bytes, value: bytes) -> bytes:
    """A key record: type byte, key, value."""
    return bytes([rdb_type]) + string(key) + value


def rdb_file(
    *records: bytes, version: int = 11, magic: str = "REDIS", checksum: bool = True
) -> bytes:
    """A whole file: header, SELECTDB 0, the records, EOF and (version >= 5) the CRC-64."""
    from telstate.rdb._crc64 import crc64

    digits = 4 if magic == "REDIS" else 3
    data = magic.encode() + b"%0*d" % (digits, version) + b"\xfe\x00" + b"".join(records)
    data += b"\xff"
    if version >= 5:
        data += (crc64(data) if checksum else 0).to_bytes(8, "little")
    return data


def ziplist(items: list[Item]) -> bytes:
    """A ziplist (Redis 2.6-6.2's compact list): header, entries, 0xFF."""
    entries = []
    previous = 0
    for item in items:
        prevlen = bytes([previous]) if previous < 254 else b"\xfe" + previous.to_bytes(4, "little")
        if isinstance(item, int):
            if 0 <= item <= 12:
                body = bytes([0xF1 + item])
            else:
                for code, size in ((0xFE, 1), (0xC0, 2), (0xF0, 3), (0xD0, 4), (0xE0, 8)):
                    if -(1 << (8 * size - 1)) <= item < 1 << (8 * size - 1):
                        body = bytes([code]) + item.to_bytes(size, "little", signed=True)
                        break
        elif len(item) < 1 << 6:
            body = bytes([len(item)]) + item
        elif len(item) < 1 << 14:
            body = bytes([0x40 | len(item) >> 8, len(item) & 0xFF]) + item
        else:
            body = b"\x80" + len(item).to_bytes(4, "big") + item
        entries.append(prevlen + body)
        previous = len(prevlen) + len(body)
    content = b"".join(entries)
    tail = 10 + len(content) - (len(entries[-1]) if entries else 0)
    total = 10 + len(content) + 1
    count = min(len(entries), 0xFFFF)
    return struct.pack("<IIH", total, tail, count) + content + b"\xff"


def _backlen(size: int) -> bytes:
    """A listpack entry's back-length: `size` in 7-bit groups, high group first, every
    byte but the first with its top bit set.  Redis takes one more byte at each
    all-ones size (16383, 2097151, 268435455), and so do we."""
    count = 1 + (size > 127) + (size >= 16383) + (size >= 2097151) + (size >= 268435455)
    groups = [(size >> (7 * i)) & 0x7F for i in reversed(range(count))]
    return bytes([groups[0]] + [g | 0x80 for g in groups[1:]])


def listpack_entry(item: Item) -> bytes:
    """One listpack entry (encoding, data, back-length), in the smallest encoding."""
    if isinstance(item, int):
        if 0 <= item < 128:
            body = bytes([item])
        elif -(1 << 12) <= item < 1 << 12:
            body = bytes([0xC0 | (item >> 8) & 0x1F, item & 0xFF])
        else:
            for code, size in ((0xF1, 2), (0xF2, 3), (0xF3, 4), (0xF4, 8)):
                if -(1 << (8 * size - 1)) <= item < 1 << (8 * size - 1):
                    body = bytes([code]) + item.to_bytes(size, "little", signed=True)
                    break
    elif len(item) < 1 << 6:
        body = bytes([0x80 | len(item)]) + item
    elif len(item) < 1 << 12:
        body = bytes([0xE0 | len(item) >> 8, len(item) & 0xFF]) + item
    else:
        body = b"\xf0" + len(item).to_bytes(4, "little") + item
    return body + _backlen(len(body))


def listpack(items: list[Item]) -> bytes:
    """A listpack (Redis 7's compact list): total bytes, count, entries, 0xFF."""
    content = b"".join(map(listpack_entry, items))
    return struct.pack("<IH", 6 + len(content) + 1, min(len(items), 0xFFFF)) + content + b"\xff"


def zipmap(pairs: list[tuple[bytes, bytes]], free: int = 0) -> bytes:
    """A zipmap (Redis < 2.6's compact hash), each value followed by `free` spare bytes."""

    def zm_length(n: int) -> bytes:
        return bytes([n]) if n < 254 else b"\xfe" + n.to_bytes(4, "little")

    out = bytearray([min(len(pairs), 254)])
    for field, value in pairs:
        out += zm_length(len(field)) + field
        out += zm_length(len(value)) + bytes([free]) + value + b"\x00" * free
    return bytes(out + b"\xff")


def text_score(score: float) -> bytes:
    """A type-3 sorted set's score: 253/254/255 for nan/+inf/-inf, else length + text."""
    if math.isnan(score):
        return b"\xfd"
    if math.isinf(score):
        return b"\xfe" if score > 0 else b"\xff"
    text = b"%.17g" % score  # as Redis wrote them
    return bytes([len(text)]) + text


def zset_3(pairs: list[tuple[bytes, float]]) -> bytes:
    """A type-3 sorted set value: count, then member and text score."""
    return length(len(pairs)) + b"".join(string(m) + text_score(s) for m, s in pairs)


def zset_5(pairs: list[tuple[bytes, float]]) -> bytes:
    """A type-5 sorted set value: count, then member and little-endian double score."""
    return length(len(pairs)) + b"".join(string(m) + struct.pack("<d", s) for m, s in pairs)


def hash_4(fields: dict[bytes, bytes]) -> bytes:
    """A type-4 hash value: count, then field and value."""
    return length(len(fields)) + b"".join(string(f) + string(v) for f, v in fields.items())


def hash_metadata(fields: dict[bytes, bytes], expiry: dict[bytes, int], pre_ga: bool) -> bytes:
    """A Redis 7.4 hash table with field expiry (types 22 and 24).

    Type 24 starts with the smallest expiry time (8 bytes, little-endian milliseconds) and
    stores each field's as ``expiry - smallest + 1`` (0: none); type 22 (7.4 release
    candidates) stores absolute times.
    """
    smallest = min(expiry.values(), default=0)
    out = b"" if pre_ga else struct.pack("<Q", smallest)
    out += length(len(fields))
    for field, value in fields.items():
        when = expiry.get(field, 0)
        ttl = when if pre_ga or not when else when - smallest + 1
        out += length(ttl) + string(field) + string(value)
    return out


def hash_listpack_ex(fields: dict[bytes, bytes], expiry: dict[bytes, int], pre_ga: bool) -> bytes:
    """A Redis 7.4 listpack hash with field expiry (types 23 and 25).

    A listpack of field, value, expiry triples (0: none), after (type 25) the smallest
    expiry time as 8 bytes.
    """
    items: list[Item] = []
    for field, value in fields.items():
        items += [field, value, expiry.get(field, 0)]
    smallest = min(expiry.values(), default=0)
    return (b"" if pre_ga else struct.pack("<Q", smallest)) + string(listpack(items))


def valkey_hash_2(fields: dict[bytes, bytes], expiry: dict[bytes, int]) -> bytes:
    """Valkey 9's hash with field expiry (type 22 under the VALKEY magic), as telstate
    reads it: count, then field, value and an 8-byte expiry."""
    out = length(len(fields))
    for field, value in fields.items():
        out += string(field) + string(value) + struct.pack("<q", expiry.get(field, -1))
    return out


ModuleOp = tuple[str, Any]  # ("sint" | "uint" | "float" | "double" | "string", value)


def module_ops(ops: list[ModuleOp]) -> bytes:
    """A module value's annotated stream: opcode, operand ..., then the EOF opcode 0."""
    out = b""
    for kind, operand in ops:
        if kind in ("sint", "uint"):
            out += length(1 if kind == "sint" else 2) + length(operand)
        elif kind == "float":
            out += length(3) + struct.pack("<f", operand)
        elif kind == "double":
            out += length(4) + struct.pack("<d", operand)
        else:
            out += length(5) + string(operand)
    return out + length(0)


def module_value(module_id: int, ops: list[ModuleOp]) -> bytes:
    """A type-7 module value: the 64-bit module id, then the annotated stream."""
    return length(module_id) + module_ops(ops)


def module_aux(module_id: int, when: int, ops: list[ModuleOp]) -> bytes:
    """An AUX record of a module (opcode 247): module id, "when" as a UINT, its stream."""
    return b"\xf7" + length(module_id) + length(2) + length(when) + module_ops(ops)


def sensor_member(timestamp: float, value: Any) -> bytes:
    """A telstate sensor sample as a sorted-set member: big-endian timestamp + value."""
    return struct.pack(">d", timestamp) + telstate.encode_value(value)
