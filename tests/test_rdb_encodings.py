"""Every encoding the RDB reader claims, in files built byte by byte (tests/rdb_data.py).

No server on this machine writes zipmaps (Redis < 2.6), type-3 sorted sets (scores as
text, Redis < 4), hashes with field expiry (Redis 7.4+: types 22-25), Valkey 9 files or
module values, so these files come from the test-side encoder.  For each encoding the
reader must return the telstate-typed keys (an immutable, a sensor, an indexed key) it
holds, skip and count what telstate does not use, and raise RdbParseError -- never
another exception -- for every truncation and for damaged compact blobs.  Listpack
entries too long for the default limits are taken from files a real redis-server writes.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import telstate
from telstate import KeyType, RdbParseError, TelescopeState
from telstate._logic import encode_sub_key
from telstate.rdb._reader import RdbIndex

from . import rdb_data as R
from .servers import RedisServer

IMMUTABLE = telstate.encode_value({"observer": "ghost", "n_ants": 64})
SAMPLES = [(1_556_012_345.0 + i, f"track{i}") for i in range(5)]
MEMBERS = [R.sensor_member(t, v) for t, v in SAMPLES]
SUB_KEYS = {"m000": 1.5, ("m001", "h"): [1, 2], 7: "seven"}
FIELDS = {encode_sub_key(k): telstate.encode_value(v) for k, v in SUB_KEYS.items()}
EXPIRY = {encode_sub_key("m000"): 4_102_444_800_000, encode_sub_key(7): 4_102_444_800_500}


def _zset_items(members: list[bytes], score: Any = 0) -> list[R.Item]:
    items: list[R.Item] = []
    for member in members:
        items += [member, score]
    return items


def _compact(item: bytes) -> R.Item:
    """An item as Redis stores it in a ziplist or listpack: integers as integers."""
    if re.fullmatch(rb"0|-?[1-9][0-9]{0,18}", item) and -(2**63) <= int(item) < 2**63:
        return int(item)
    return item


def _hash_items(fields: dict[bytes, bytes]) -> list[R.Item]:
    return [_compact(item) for pair in fields.items() for item in pair]


def _value_of_length(size: int) -> bytes:
    """An encoded telstate string value of exactly `size` bytes."""
    for n in range(max(0, size - 12), size + 1):
        value = telstate.encode_value("x" * n)
        if len(value) == size:
            return value
    raise AssertionError(f"no string value encodes to {size} bytes")


def _check_telstate_keys(data: bytes, sensor: bool = True) -> None:
    """The file's immutable, indexed key and (if `sensor`) sensor read as telstate values."""
    ts = TelescopeState.open(data)
    assert ts.get("obs_params") == {"observer": "ghost", "n_ants": 64}
    assert ts.key_type("obs_params") is KeyType.IMMUTABLE
    assert ts.key_type("idx") is KeyType.INDEXED
    for sub_key, value in SUB_KEYS.items():
        assert ts.get_indexed("idx", sub_key) == value
    if sensor:
        assert ts.key_type("sensor") is KeyType.MUTABLE
        assert ts.get_range("sensor", st=0) == [(v, t) for t, v in SAMPLES]


def _every_truncation_raises(data: bytes) -> None:
    for end in range(len(data)):
        with pytest.raises(RdbParseError):
            RdbIndex(data[:end], "cut.rdb")


# --------------------------------------------------------------------------- hashes

HASHES: dict[str, tuple[str, int, int, Callable[[dict[bytes, bytes]], bytes]]] = {
    # name: magic, version, type, value encoder
    "4 hash table": ("REDIS", 9, R.HASH, R.hash_4),
    "9 zipmap": ("REDIS", 3, R.HASH_ZIPMAP, lambda f: R.string(R.zipmap(list(f.items())))),
    "13 ziplist": ("REDIS", 9, R.HASH_ZIPLIST, lambda f: R.string(R.ziplist(_hash_items(f)))),
    "16 listpack": ("REDIS", 11, R.HASH_LISTPACK, lambda f: R.string(R.listpack(_hash_items(f)))),
    "22 metadata (7.4 rc)": (
        "REDIS",
        12,
        R.HASH_METADATA_PRE_GA,
        lambda f: R.hash_metadata(f, EXPIRY, pre_ga=True),
    ),
    "23 listpack-ex (7.4 rc)": (
        "REDIS",
        12,
        R.HASH_LISTPACK_EX_PRE_GA,
        lambda f: R.hash_listpack_ex(f, EXPIRY, pre_ga=True),
    ),
    "24 metadata": ("REDIS", 12, R.HASH_METADATA, lambda f: R.hash_metadata(f, EXPIRY, False)),
    "25 listpack-ex": (
        "REDIS",
        12,
        R.HASH_LISTPACK_EX,
        lambda f: R.hash_listpack_ex(f, EXPIRY, pre_ga=False),
    ),
    "22 Valkey 9 hash": ("VALKEY", 80, R.VALKEY_HASH_2, lambda f: R.valkey_hash_2(f, EXPIRY)),
}


def _hash_file(name: str, fields: dict[bytes, bytes] = FIELDS) -> bytes:
    magic, version, rdb_type, encode = HASHES[name]
    sensor = (
        R.record(R.ZSET, b"sensor", R.zset_3([(m, 0.0) for m in MEMBERS]))
        if version < 4
        else R.record(R.ZSET_2, b"sensor", R.zset_5([(m, 0.0) for m in MEMBERS]))
    )
    return R.rdb_file(
        R.record(R.STRING, b"obs_params", R.string(IMMUTABLE)),
        R.record(rdb_type, b"idx", encode(fields)),
        sensor,
        version=version,
        magic=magic,
    )


@pytest.mark.parametrize("name", sorted(HASHES))
def test_hash_encodings(name: str) -> None:
    data = _hash_file(name)
    index = RdbIndex(data, name)
    assert index.magic == HASHES[name][0] and index.version == HASHES[name][1]
    assert sorted(index) == [b"idx", b"obs_params", b"sensor"] and len(index) == 3
    assert index.entries[b"idx"].rdb_type == HASHES[name][2]
    assert index.key_type(index.entries[b"idx"]) is KeyType.INDEXED
    assert index.read(b"idx") == FIELDS
    assert index.read(b"obs_params") == IMMUTABLE
    assert not index.skipped
    _check_telstate_keys(data)
    _every_truncation_raises(data)


@pytest.mark.parametrize("name", sorted(HASHES))
def test_hash_encodings_of_long_and_integer_fields(name: str) -> None:
    """Fields and values of every length form, and integers stored as integers."""
    fields = {
        b"a" * 63: b"b" * 64,
        b"c" * 300: b"d" * 5000,
        b"e" * 20_000: b"",
        b"12": b"-5",
        b"300": b"30000",
        b"100000": b"10000000",
        b"-4000000000": b"9223372036854775807",
        b"007": b"1.5",
    }
    index = RdbIndex(_hash_file(name, fields), name)
    assert index.read(b"idx") == fields


def test_zipmap_with_free_space_and_long_lengths() -> None:
    fields = {b"k" * 300: b"v" * 254, b"short": b"x"}
    for free in (0, 3):
        blob = R.zipmap(list(fields.items()), free=free)
        data = R.rdb_file(R.record(R.HASH_ZIPMAP, b"idx", R.string(blob)), version=2)
        assert RdbIndex(data).read(b"idx") == fields


# --------------------------------------------------------------------------- sorted sets

ZSETS: dict[str, tuple[int, int, Callable[[list[bytes]], bytes]]] = {
    # name: version, type, value encoder (all scores 0, as telstate writes them)
    "3 text scores": (3, R.ZSET, lambda m: R.zset_3([(x, 0.0) for x in m])),
    "5 binary scores": (9, R.ZSET_2, lambda m: R.zset_5([(x, 0.0) for x in m])),
    "12 ziplist": (9, R.ZSET_ZIPLIST, lambda m: R.string(R.ziplist(_zset_items(m)))),
    "17 listpack": (11, R.ZSET_LISTPACK, lambda m: R.string(R.listpack(_zset_items(m)))),
}


def _zset_file(name: str, members: list[bytes]) -> bytes:
    version, rdb_type, encode = ZSETS[name]
    return R.rdb_file(
        R.record(R.STRING, b"obs_params", R.string(IMMUTABLE)),
        R.record(R.HASH, b"idx", R.hash_4(FIELDS)),
        R.record(rdb_type, b"sensor", encode(members)),
        version=version,
    )


@pytest.mark.parametrize("name", sorted(ZSETS))
def test_sorted_set_encodings(name: str) -> None:
    data = _zset_file(name, MEMBERS[::-1])
    index = RdbIndex(data, name)
    assert index.entries[b"sensor"].rdb_type == ZSETS[name][1]
    assert index.key_type(index.entries[b"sensor"]) is KeyType.MUTABLE
    assert index.read(b"sensor") == MEMBERS
    assert index.read_samples(b"sensor").encoded() == [
        (telstate.encode_value(v), t) for t, v in SAMPLES
    ]
    assert index.sample_span(b"sensor") == (5, SAMPLES[0][0], SAMPLES[-1][0])
    _check_telstate_keys(data)
    _every_truncation_raises(data)


def _big_sensor(n: int = 200, start: float = 1e9) -> list[bytes]:
    """`n` fixed-size members (each 8 + 9 bytes), ascending."""
    return [R.sensor_member(start + i, f"value{i:04d}") for i in range(n)]


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
@pytest.mark.parametrize("rdb_type", [R.ZSET, R.ZSET_2])
def test_big_fixed_size_sensors(rdb_type: int, order: str) -> None:
    """The vectorised path (>= 64 fixed-size members, all scores 0) in both binary forms."""
    members = _big_sensor()
    stored = {
        "ascending": members,
        "descending": members[::-1],
        "shuffled": members[1::2] + members[::2],
    }[order]
    value = (R.zset_3 if rdb_type == R.ZSET else R.zset_5)([(m, 0.0) for m in stored])
    data = R.rdb_file(R.record(rdb_type, b"sensor", value), version=9)
    index = RdbIndex(data)
    entry = index.entries[b"sensor"]
    assert entry.end == len(data) - 9  # before EOF and the checksum
    assert index.read(b"sensor") == members
    assert [t for _, t in index.read_samples(b"sensor").encoded()] == [1e9 + i for i in range(200)]
    assert index.sample_span(b"sensor") == (200, 1e9, 1e9 + 199)


@pytest.mark.parametrize("rdb_type", [R.ZSET, R.ZSET_2])
def test_big_sensor_with_a_repeated_member_is_corrupt(rdb_type: int) -> None:
    members = _big_sensor()
    stored = members[1::2] + members[::2] + members[:1]
    value = (R.zset_3 if rdb_type == R.ZSET else R.zset_5)([(m, 0.0) for m in stored])
    index = RdbIndex(R.rdb_file(R.record(rdb_type, b"sensor", value), version=9))
    with pytest.raises(RdbParseError, match="twice"):
        index.read_samples(b"sensor")


BIG_ZSET_CASES: dict[str, tuple[int, list[tuple[bytes, float]]]] = {
    # sorted sets of >= 64 members the vectorised path must hand to the general one
    "text scores not 0": (R.ZSET, [(m, 1.0) for m in _big_sensor()]),
    "text scores that differ": (R.ZSET, [(m, float(i % 3)) for i, m in enumerate(_big_sensor())]),
    "text scores nan/inf": (R.ZSET, [(m, float("inf")) for m in _big_sensor()]),
    "binary scores not 0": (R.ZSET_2, [(m, 2.5) for m in _big_sensor()]),
    "members of varying length": (
        R.ZSET_2,
        [(R.sensor_member(1e9 + i, "v" * (i % 7)), 0.0) for i in range(100)],
    ),
    "members of varying length prefix": (
        R.ZSET,
        [(R.sensor_member(1e9 + i, "v" * (50 + i)), 0.0) for i in range(100)],
    ),
    "short members": (R.ZSET_2, [(b"%08d" % i, 0.0) for i in range(100)]),
}


@pytest.mark.parametrize("name", sorted(BIG_ZSET_CASES))
def test_big_sorted_sets_off_the_fast_path(name: str) -> None:
    rdb_type, pairs = BIG_ZSET_CASES[name]
    value = (R.zset_3 if rdb_type == R.ZSET else R.zset_5)(pairs)
    index = RdbIndex(R.rdb_file(R.record(rdb_type, b"z", value), version=9))
    expected = [m for _, m in sorted((s, m) for m, s in pairs)]
    assert index.read(b"z") == expected
    if len(expected[0]) >= 9:
        samples = index.read_samples(b"z").encoded()
        assert [struct.pack(">d", t) + v for v, t in samples] == expected
        assert index.sample_span(b"z")[0] == len(pairs)
    else:
        with pytest.raises(RdbParseError, match="too short to be a sensor sample"):
            index.read_samples(b"z")


def test_integer_encoded_first_member() -> None:
    """A member that Redis stored as an integer string is not a fixed-size record."""
    members = [b"%d" % (1000 + i) for i in range(100)]
    value = R.length(100) + b"".join(R.int_string(int(m)) + b"\x011" for m in members)
    index = RdbIndex(R.rdb_file(R.record(R.ZSET, b"z", value), version=3))
    assert index.read(b"z") == members


def test_text_scores() -> None:
    pairs = [(b"plus", math.inf), (b"minus", -math.inf), (b"half", 0.5), (b"big", 1e300)]
    pairs += [(b"neg", -3.0), (b"zero", 0.0)]
    index = RdbIndex(R.rdb_file(R.record(R.ZSET, b"z", R.zset_3(pairs)), version=3))
    assert index.read(b"z") == [b"minus", b"neg", b"zero", b"half", b"big", b"plus"]
    # Redis refuses NaN scores, but the format has a code for them
    nan = R.zset_3([(b"nan", math.nan)])
    assert RdbIndex(R.rdb_file(R.record(R.ZSET, b"z", nan), version=3)).read(b"z") == [b"nan"]


def test_scores_that_are_not_numbers() -> None:
    value = R.length(1) + R.string(b"m" * 12) + b"\x03abc"
    index = RdbIndex(R.rdb_file(R.record(R.ZSET, b"z", value), version=3))
    with pytest.raises(RdbParseError, match="corrupt data") as info:
        index.read(b"z")
    assert info.value.key == b"z"


def test_empty_sorted_set() -> None:
    """Redis never saves one, but a file may hold it: no samples, no span."""
    index = RdbIndex(R.rdb_file(R.record(R.ZSET_2, b"z", R.zset_5([])), version=9))
    assert index.read(b"z") == []
    assert index.sample_span(b"z") == (0, None, None)


# --------------------------------------------------------------------------- skipping

SKIPPED = [
    # (type, value, kind)
    (R.LIST, R.length(2) + R.string(b"a") + R.int_string(7), "list"),
    (R.LIST_ZIPLIST, R.string(R.ziplist([b"a", 1])), "list"),
    (R.LIST_QUICKLIST, R.length(1) + R.string(R.ziplist([b"a"])), "list"),
    (R.LIST_QUICKLIST_2, R.length(1) + R.length(2) + R.string(R.listpack([b"a"])), "list"),
    (R.SET, R.length(1) + R.string(b"member"), "set"),
    (R.SET_INTSET, R.string(struct.pack("<II", 2, 1) + struct.pack("<h", 5)), "set"),
    (R.SET_LISTPACK, R.string(R.listpack([b"x", 3])), "set"),
    (
        R.MODULE_2,
        R.module_value(
            0x1234_5678_9ABC_DEF0,
            [
                ("sint", 5),
                ("uint", 2**40),
                ("float", 1.5),
                ("double", -2.25),
                ("string", b"payload" * 30),
            ],
        ),
        "module",
    ),
    (R.MODULE_2, R.module_value(1, []), "module"),
]


def test_other_types_are_skipped_and_counted() -> None:
    records = [R.record(t, b"other%d" % i, value) for i, (t, value, _) in enumerate(SKIPPED)]
    data = R.rdb_file(
        R.record(R.STRING, b"obs_params", R.string(IMMUTABLE)),
        *records,
        R.record(R.HASH_LISTPACK_EX, b"idx", R.hash_listpack_ex(FIELDS, EXPIRY, False)),
        version=12,
    )
    index = RdbIndex(data)
    assert sorted(index) == [b"idx", b"obs_params"]
    assert index.skipped == {"list": 4, "set": 3, "module": 2}
    _check_telstate_keys(data, sensor=False)
    _every_truncation_raises(data)


def test_opcodes_between_records() -> None:
    """Expiry (ms and s), LRU/LFU, AUX, RESIZEDB, function libraries, slot info, module
    AUX data, several databases: all passed over, the keys still found."""
    function_pre_ga = b"\xf6" + R.string(b"lib") + R.string(b"LUA")
    data = R.rdb_file(
        b"\xfa" + R.string(b"redis-ver") + R.string(b"7.4.0"),
        b"\xfa" + R.string(b"ctime") + R.int_string(1_700_000_000),
        R.module_aux(99, 2, [("uint", 1), ("string", b"aux")]),
        b"\xf5" + R.string(b"#!lua name=lib\nredis.register_function('f', ...)"),
        function_pre_ga + R.length(1) + R.string(b"a description") + R.string(b"code"),
        function_pre_ga + R.length(0) + R.string(b"code"),
        b"\xf4" + R.length(5) + R.length(100) + R.length(0),
        b"\xfb" + R.length(3) + R.length(1),
        b"\xfc" + struct.pack("<q", 4_102_444_800_000),
        R.record(R.STRING, b"obs_params", R.string(IMMUTABLE)),
        b"\xfd" + struct.pack("<i", 2_000_000_000),
        b"\xf8" + R.length(12345),
        R.record(R.HASH, b"idx", R.hash_4(FIELDS)),
        b"\xf9\x07",
        R.record(R.ZSET_2, b"sensor", R.zset_5([(m, 0.0) for m in MEMBERS])),
        b"\xfe\x05",
        R.record(R.STRING, b"in_db5", R.string(b"five")),
        version=12,
    )
    index = RdbIndex(data)
    assert index.aux == {b"redis-ver": b"7.4.0", b"ctime": b"1700000000"}
    assert index.databases == {0, 5}
    assert sorted(index) == [b"idx", b"in_db5", b"obs_params", b"sensor"]
    assert index.entries[b"in_db5"].db == 5
    assert sorted(RdbIndex(data, db=5)) == [b"in_db5"]
    _check_telstate_keys(data)
    _every_truncation_raises(data)


def test_rdb_versions_before_5_have_no_checksum() -> None:
    data = R.rdb_file(R.record(R.STRING, b"k", R.string(b"v")), version=4)
    assert data.endswith(b"\xff") and RdbIndex(data).read(b"k") == b"v"
    with pytest.raises(RdbParseError, match="1 bytes after the end"):
        RdbIndex(data + b"\x00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (bytes([R.MODULE_PRE_GA]) + R.string(b"k") + R.length(1), "4.0 release candidates"),
        (bytes([8]) + R.string(b"k") + R.string(b"v"), "unknown value type 8"),
        (b"\xf3" + R.length(1), "unknown opcode 243"),
        (bytes([R.MODULE_2]) + R.string(b"k") + R.length(1) + R.length(6), "module value opcode"),
        (b"\x00" + R.string(b"k") + b"\xc4", "unknown string encoding 4"),
        (b"\x00\xc5", "unknown string encoding 5"),
        (b"\xfe\xc0", "a length was expected"),
    ],
)
def test_what_cannot_be_read_is_named(body: bytes, message: str) -> None:
    data = b"REDIS0011\xfe\x00" + body + b"\xff" + bytes(8)
    with pytest.raises(RdbParseError, match=message):
        RdbIndex(data, "odd.rdb")


def test_types_22_to_25_of_valkey_are_not_redis_ones() -> None:
    """Under the VALKEY magic, 23-25 are not hashes with field expiry."""
    value = R.hash_listpack_ex(FIELDS, EXPIRY, pre_ga=False)
    assert len(RdbIndex(R.rdb_file(R.record(25, b"idx", value), version=12))) == 1
    with pytest.raises(RdbParseError, match="unknown value type 25"):
        RdbIndex(R.rdb_file(R.record(25, b"idx", value), version=80, magic="VALKEY"))


def test_unsupported_versions() -> None:
    for magic, version in (("REDIS", 14), ("REDIS", 0), ("VALKEY", 82)):
        with pytest.raises(RdbParseError, match=f"unsupported RDB version {version}"):
            RdbIndex(R.rdb_file(version=version, magic=magic))


# --------------------------------------------------------------------------- damaged blobs


def _hash_blob_file(rdb_type: int, blob: bytes, version: int = 9) -> bytes:
    return R.rdb_file(R.record(rdb_type, b"idx", R.string(blob)), version=version)


def _fix_size(blob: bytes) -> bytes:
    """A ziplist or listpack whose total-size header is made to match its length again."""
    return len(blob).to_bytes(4, "little") + blob[4:]


GOOD_ZIPLIST = R.ziplist([b"f", b"v", b"g", 123456])
GOOD_LISTPACK = R.listpack([b"f", b"v", b"g", 123456])

DAMAGED = {
    "ziplist size": (R.HASH_ZIPLIST, GOOD_ZIPLIST + b"\x00", "ziplist size does not match"),
    "ziplist encoding": (
        R.HASH_ZIPLIST,
        GOOD_ZIPLIST[:11] + b"\xc8" + GOOD_ZIPLIST[12:],
        "bad ziplist entry encoding 0xc8",
    ),
    "ziplist entry past end": (
        R.HASH_ZIPLIST,
        GOOD_ZIPLIST[:11] + b"\x30" + GOOD_ZIPLIST[12:],
        "ziplist entry runs past its end",
    ),
    "ziplist count": (
        R.HASH_ZIPLIST,
        GOOD_ZIPLIST[:8] + b"\x05\x00" + GOOD_ZIPLIST[10:],
        "ziplist entry count does not match",
    ),
    "ziplist without end": (
        R.HASH_ZIPLIST,
        _fix_size(GOOD_ZIPLIST[:-1]),
        "truncated ziplist",
    ),
    "ziplist header": (R.HASH_ZIPLIST, b"\x05\x00", "truncated ziplist"),
    "ziplist odd": (R.HASH_ZIPLIST, R.ziplist([b"f", b"v", b"g"]), "incomplete field"),
    "listpack size": (R.HASH_LISTPACK, GOOD_LISTPACK + b"\x00", "listpack size does not match"),
    "listpack encoding": (
        R.HASH_LISTPACK,
        GOOD_LISTPACK[:6] + b"\xf5" + GOOD_LISTPACK[7:],
        "bad listpack entry encoding 0xf5",
    ),
    "listpack entry past end": (
        R.HASH_LISTPACK,
        _fix_size(GOOD_LISTPACK[:6] + b"\xbf" + b"\x00" * 5 + b"\xff"),
        "listpack entry runs past its end",
    ),
    "listpack bytes after end": (
        R.HASH_LISTPACK,
        _fix_size(GOOD_LISTPACK[:-1] + b"\xff\xff"),
        "listpack has bytes after its end",
    ),
    "listpack count": (
        R.HASH_LISTPACK,
        GOOD_LISTPACK[:4] + b"\x07\x00" + GOOD_LISTPACK[6:],
        "listpack entry count does not match",
    ),
    "listpack without end": (
        R.HASH_LISTPACK,
        _fix_size(GOOD_LISTPACK[:-1]),
        "truncated listpack",
    ),
    "listpack odd": (R.HASH_LISTPACK, R.listpack([b"f", b"v", b"g"]), "incomplete field"),
    "listpack-ex pairs": (
        R.HASH_LISTPACK_EX_PRE_GA,
        R.listpack([b"f", b"v", 0, b"g"]),
        "incomplete field",
    ),
    "zipmap length": (R.HASH_ZIPMAP, b"\x01\x01f\xff\x00", "bad zipmap length"),
    "zipmap entry past end": (R.HASH_ZIPMAP, b"\x01\x09ab\xff", "zipmap entry runs past"),
    "zipmap without end": (R.HASH_ZIPMAP, R.zipmap([(b"f", b"v")])[:-1], "truncated zipmap"),
    "zset ziplist odd": (R.ZSET_ZIPLIST, R.ziplist([b"m", 0, b"n"]), "odd number of items"),
    "zset listpack odd": (R.ZSET_LISTPACK, R.listpack([b"m", 0, b"n"]), "odd number of items"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_compact_blobs(name: str) -> None:
    rdb_type, blob, message = DAMAGED[name]
    version = 12 if rdb_type == R.HASH_LISTPACK_EX_PRE_GA else 9
    index = RdbIndex(_hash_blob_file(rdb_type, blob, version), "damaged.rdb")
    with pytest.raises(RdbParseError, match=message) as info:
        index.read(b"idx")
    assert info.value.key == b"idx" and info.value.offset is not None


def test_bad_lzf_data() -> None:
    # an LZF back-reference before the first byte of the output
    value = b"\xc3" + R.length(2) + R.length(10) + b"\x20\x00"
    index = RdbIndex(R.rdb_file(R.record(R.STRING, b"k", value)))
    with pytest.raises(RdbParseError, match="bad LZF data"):
        index.read(b"k")


def _generated_files() -> dict[str, bytes]:
    files = {f"hash {name}": _hash_file(name) for name in HASHES}
    files |= {f"zset {name}": _zset_file(name, MEMBERS) for name in ZSETS}
    records = [R.record(t, b"o%d" % i, value) for i, (t, value, _) in enumerate(SKIPPED)]
    files["skipped"] = R.rdb_file(*records)
    return files


GENERATED = _generated_files()
DAMAGE = (0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xC3, 0xFD, 0xFE, 0xFF)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_damaged_byte_gives_only_rdb_parse_errors(name: str) -> None:
    """Each byte of each generated file replaced by each of a dozen telling values."""
    data = GENERATED[name]
    failures = 0
    for pos in range(9, len(data) - 8):
        for byte in DAMAGE:
            damaged = data[:pos] + bytes([byte]) + data[pos + 1 :]
            try:
                index = RdbIndex(damaged, name, verify_checksum=False)
                for key in index:
                    index.read(key)
                    if index.key_type(index.entries[key]) is KeyType.MUTABLE:
                        index.read_samples(key)
                        index.sample_span(key)
            except RdbParseError:
                failures += 1
    assert failures > 0


# --------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def long_listpack_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, Any]]:
    """A dump of redis-server, with listpack entries of every string-length form.

    Each hash holds one value whose listpack entry (header + bytes) is a size at which
    the back-length gains a byte: 127/128, 16382/16383/16384, 2097150/2097151.
    """
    server = RedisServer(
        args=(
            "--hash-max-listpack-value",
            "3000000",
            "--zset-max-listpack-value",
            "3000000",
            "--rdbcompression",
            "no",
        )
    )
    expected: dict[bytes, Any] = {}
    try:
        client = server.client()
        for size in (127, 128, 4097, 16382, 16383, 16384, 2_097_150, 2_097_151):
            header = 1 if size - 1 < 64 else 2 if size - 2 < 4096 else 5
            value = _value_of_length(size - header)
            key = b"idx%d" % size
            client.hset(key, encode_sub_key(size), value)
            assert client.object("encoding", key) == b"listpack"
            expected[key] = {encode_sub_key(size): value}
        members = [R.sensor_member(1e9 + i, "y" * (100 * i)) for i in range(60)]
        client.zadd(b"sensor", dict.fromkeys(members, 0))
        assert client.object("encoding", b"sensor") == b"listpack"
        expected[b"sensor"] = members
        client.save()
        path = tmp_path_factory.mktemp("listpack") / "long.rdb"
        shutil.copy(server.dir / "dump.rdb", path)
        client.close()
    finally:
        server.close()
    return path, expected


def test_real_listpacks_of_long_entries(long_listpack_dump: tuple[Path, dict[bytes, Any]]) -> None:
    path, expected = long_listpack_dump
    index = RdbIndex(path.read_bytes(), str(path))
    assert {key: index.read(key) for key in index} == expected
    ts = TelescopeState.open(path)
    assert [v for v, _ in ts.get_range("sensor", st=0)] == ["y" * (100 * i) for i in range(60)]
    assert ts.get_indexed("idx16383", 16383) == telstate.decode_value(_value_of_length(16378))
