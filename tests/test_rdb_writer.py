"""The RDB encoder: golden bytes, then whole files loaded by redis-server and katsdptelstate.

Values are encoded the way telstate stores them (0xFF + msgpack; sensor members are an
8-byte big-endian timestamp + the encoded value), built here with msgpack directly so
that these tests depend on nothing but the encoder.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from telstate.rdb import _writer
from telstate.rdb._crc64 import crc64
from telstate.rdb._writer import (
    RdbEncoder,
    encode_length,
    encode_string,
    encode_ziplist,
    footer,
    hash_record,
    sensor_record,
    string_record,
)

from .servers import RedisServer, server_executable

# --------------------------------------------------------------------------- helpers


def _crc64_reference(data: bytes, crc: int = 0) -> int:
    """Redis's CRC-64 (Jones), one bit at a time: reflected, initial 0, no final xor."""
    poly = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 bit-reversed
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc


def test_crc64_reference_check_value() -> None:
    assert _crc64_reference(b"123456789") == 0xE9C6D914C4B8D9CA


def encode(value: Any) -> bytes:
    """A value as telstate encodes it (msgpack form)."""
    return b"\xff" + msgpack.packb(value, use_bin_type=True)


def decode(data: bytes) -> Any:
    assert data[:1] == b"\xff"
    return msgpack.unpackb(data[1:], raw=False)


def member(ts: float, value: Any) -> bytes:
    return struct.pack(">d", ts) + encode(value)


def reference_big_zset(key: bytes, members: Sequence[bytes]) -> bytes:
    """Type 5 record, one Python call per member: what the numpy paths must produce."""
    rows = [encode_string(m) + bytes(8) for m in reversed(members)]
    return b"\x05" + encode_string(key) + encode_length(len(members)) + b"".join(rows)


# --------------------------------------------------------------------------- golden bytes


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),  # 00|000000: 6-bit form
        (63, "3f"),  # largest 6-bit length
        (64, "40 40"),  # 01|000000 01000000: 14-bit form, big-endian
        (300, "41 2c"),
        (16383, "7f ff"),  # largest 14-bit length
        (16384, "80 00 00 40 00"),  # 0x80 then a 32-bit big-endian length
        (2**32 - 1, "80 ff ff ff ff"),
        (2**32, "81 00 00 00 01 00 00 00 00"),  # 0x81 then a 64-bit big-endian length
        (2**64 - 1, "81 ff ff ff ff ff ff ff ff"),
    ],
)
def test_encode_length(n: int, encoded: str) -> None:
    assert encode_length(n) == bytes.fromhex(encoded)


@pytest.mark.parametrize("n", [-1, 2**64])
def test_encode_length_out_of_range(n: int) -> None:
    with pytest.raises(ValueError):
        encode_length(n)


def test_encode_string() -> None:
    assert encode_string(b"") == b"\x00"
    assert encode_string(b"abc") == b"\x03abc"
    assert encode_string(b"x" * 64) == b"\x40\x40" + b"x" * 64


def test_ziplist_example_from_redis_docs() -> None:
    # The worked example in Redis's ziplist.c: the integers 2 and 5, 15 bytes.
    assert encode_ziplist([2, 5]) == bytes.fromhex(
        "0f 00 00 00"  # zlbytes = 15 (little-endian)
        "0c 00 00 00"  # zltail = 12: offset of the last entry
        "02 00"  # zllen = 2 entries
        "00 f3"  # prevlen 0 (first entry), 1111|0011: immediate integer 3 - 1 = 2
        "02 f6"  # prevlen 2, 1111|0110: immediate integer 6 - 1 = 5
        "ff"  # end of ziplist
    )


def test_ziplist_member_and_zero_score() -> None:
    # A one-member sorted set as Redis keeps it: member "ab", then its score 0.
    assert encode_ziplist([b"ab", 0]) == bytes.fromhex(
        "11 00 00 00"  # zlbytes = 17
        "0e 00 00 00"  # zltail = 14 = 10 (header) + 4 (first entry)
        "02 00"  # zllen = 2
        "00 02 61 62"  # prevlen 0, 00|000010: string of 2 bytes, "ab"
        "04 f1"  # prevlen 4, 1111|0001: immediate integer 0
        "ff"  # end
    )


def test_empty_ziplist() -> None:
    # zlbytes 11, zltail 10 (the header size: no entries), zllen 0, end.
    assert encode_ziplist([]) == bytes.fromhex("0b000000 0a000000 0000 ff")


def test_ziplist_long_previous_entry() -> None:
    blob = encode_ziplist([b"x" * 300, 1])
    first = b"\x00" + b"\x41\x2c" + b"x" * 300  # prevlen 0, 14-bit string length 300
    second = b"\xfe" + (303).to_bytes(4, "little") + b"\xf2"  # prevlen 303: 0xFE + u32 LE
    assert blob == (
        (10 + 303 + 6 + 1).to_bytes(4, "little")  # zlbytes
        + (10 + 303).to_bytes(4, "little")  # zltail
        + b"\x02\x00"  # zllen
        + first
        + second
        + b"\xff"
    )


def test_ziplist_prevlen_boundary() -> None:
    # An entry of 253 bytes still fits a 1-byte prevlen; 254 needs the 5-byte form.
    for size, prevlen in [(253, b"\xfd"), (254, b"\xfe\xfe\x00\x00\x00")]:
        item = b"y" * (size - 3)  # prevlen 1 + 14-bit header 2 + data
        blob = encode_ziplist([item, 0])
        assert blob[10 + size :] == prevlen + b"\xf1\xff"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "f1"),  # 1111xxxx immediate, xxxx = value + 1
        (12, "fd"),
        (13, "fe 0d"),  # 11111110: int8
        (-1, "fe ff"),
        (127, "fe 7f"),
        (-128, "fe 80"),
        (128, "c0 80 00"),  # 11000000: int16 little-endian
        (-32768, "c0 00 80"),
        (32768, "f0 00 80 00"),  # 11110000: int24 little-endian
        (-(2**23), "f0 00 00 80"),
        (2**23, "d0 00 00 80 00"),  # 11010000: int32 little-endian
        (-(2**31), "d0 00 00 00 80"),
        (2**31, "e0 00 00 00 80 00 00 00 00"),  # 11100000: int64 little-endian
        (-(2**63), "e0 00 00 00 00 00 00 00 80"),
    ],
)
def test_ziplist_integers(value: int, encoded: str) -> None:
    entry = bytes.fromhex(encoded)
    size = 1 + len(entry)
    assert encode_ziplist([value]) == (
        (10 + size + 1).to_bytes(4, "little") + b"\x0a\x00\x00\x00\x01\x00\x00" + entry + b"\xff"
    )


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_ziplist_integer_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_ziplist([value])


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (63, "3f"),  # 00|pppppp
        (64, "40 40"),  # 01|pppppp qqqqqqqq, big-endian
        (16383, "7f ff"),
        (16384, "80 00 00 40 00"),  # 10000000 + u32 big-endian
    ],
)
def test_ziplist_string_headers(size: int, header: str) -> None:
    blob = encode_ziplist([b"s" * size])
    assert blob[10:] == b"\x00" + bytes.fromhex(header) + b"s" * size + b"\xff"


def test_ziplist_count_saturates() -> None:
    assert encode_ziplist([0] * 65534)[8:10] == b"\xfe\xff"
    assert encode_ziplist([0] * 65535)[8:10] == b"\xff\xff"
    assert encode_ziplist([0] * 70000)[8:10] == b"\xff\xff"  # "walk the list to count"


def test_string_record() -> None:
    assert string_record(b"key", b"\xff\x01") == bytes.fromhex(
        "00"  # type 0: string
        "03 6b 65 79"  # key "key"
        "02 ff 01"  # value: 2 bytes
    )


def test_small_sensor_record() -> None:
    m = member(1.0, 2)  # 3f f0 00 00 00 00 00 00 | ff 02
    assert sensor_record(b"s", [m]) == bytes.fromhex(
        "0c"  # type 12: sorted set as a ziplist
        "01 73"  # key "s"
        "19"  # the ziplist as a string of 25 bytes:
        "19 00 00 00"  # zlbytes 25
        "16 00 00 00"  # zltail 22 = 10 (header) + 12 (first entry)
        "02 00"  # zllen 2
        "00 0a 3ff0000000000000 ff02"  # prevlen 0, string of 10: the member
        "0c f1"  # prevlen 12, integer 0: the score
        "ff"  # end
    )


def test_small_hash_record() -> None:
    assert hash_record(b"h", {b"\xff\xa1a": b"\xff\x01"}) == bytes.fromhex(
        "0d"  # type 13: hash as a ziplist
        "01 68"  # key "h"
        "14"  # the ziplist as a string of 20 bytes:
        "14 00 00 00"  # zlbytes 20
        "0f 00 00 00"  # zltail 15 = 10 + 5
        "02 00"  # zllen 2
        "00 03 ffa161"  # prevlen 0, string of 3: the field
        "05 02 ff01"  # prevlen 5, string of 2: the value
        "ff"  # end
    )


def test_big_hash_record() -> None:
    value = b"v" * 65  # longer than a ziplist value may be
    assert hash_record(b"h", {b"f": value}) == (
        b"\x04"  # type 4: hash table
        + b"\x01h"  # key
        + b"\x01"  # one field
        + b"\x01f"  # field
        + b"\x40\x41"  # value: 65 bytes, 14-bit length
        + value
    )


def test_big_sensor_record() -> None:
    members = [bytes([i]) for i in range(129)]  # one more than a ziplist may hold
    record = sensor_record(b"s", members)
    assert record[:5] == bytes.fromhex(
        "05"  # type 5: sorted set, scores as binary doubles
        "01 73"  # key "s"
        "40 81"  # 129 members
    )
    assert record[5:15] == bytes.fromhex(
        "01 80"  # the greatest member first: 1 byte, 0x80
        "00 00 00 00 00 00 00 00"  # score 0.0, little-endian double
    )
    assert record == reference_big_zset(b"s", members)


def test_header() -> None:
    from telstate import __version__

    version = __version__.encode()
    assert RdbEncoder().header(ctime=1234567890) == (
        b"REDIS0009"  # magic and version
        + b"\xfa\x09redis-ver\x055.0.0"  # AUX: first Redis to write RDB 9
        + b"\xfa\x0aredis-bits\x0264"
        + b"\xfa\x05ctime\x0a1234567890"
        + b"\xfa\x08used-mem\x010"
        + b"\xfa\x10telstate-version"
        + encode_string(version)
    )
    assert RdbEncoder(version=8).header(ctime=0).startswith(b"REDIS0008\xfa\x09redis-ver\x054.0.0")
    extra = RdbEncoder().header(ctime=0, aux={b"origin": b"test"})
    assert extra.endswith(b"\xfa\x06origin\x04test")


def test_select_db() -> None:
    assert RdbEncoder().select_db() == b"\xfe\x00"  # SELECTDB 0
    assert RdbEncoder().select_db(1, keys=100) == b"\xfe\x01\xfb\x40\x64\x00"  # + RESIZEDB


def test_bad_version() -> None:
    with pytest.raises(ValueError):
        RdbEncoder(version=10)


def test_footer_and_running_crc() -> None:
    encoder = RdbEncoder()
    chunks = [
        encoder.header(ctime=1),
        encoder.select_db(0, keys=3),
        encoder.string(b"a", encode(1)),
        encoder.sensor(b"b", [member(1.0, 1.5), member(2.0, 2.5)]),
        encoder.hash(b"c", {encode("x"): encode(3)}),
    ]
    body = b"".join(chunks)
    assert encoder.crc == _crc64_reference(body)
    last = encoder.footer()
    data = body + last
    assert last[:1] == b"\xff"
    assert data[-8:] == _crc64_reference(data[:-8]).to_bytes(8, "little")
    assert footer(crc64(body)) == last
    assert encoder.size == len(data)
    with pytest.raises(RuntimeError):
        encoder.string(b"late", b"")


# --------------------------------------------------------------------------- sorted-set paths


def test_sensor_rejects_empty_unsorted_and_repeated() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sensor_record(b"s", [])
    small = [member(1.0, 1), member(2.0, 2)]
    fixed = [member(float(i), 1.5) for i in range(200)]
    variable = [member(float(i), "x" * (i % 5)) for i in range(200)]
    # Padding this one to its longest member would cost too much: the join path.
    huge = [member(0.0, "a"), member(1.0, "b" * 5_000_000), member(2.0, "c"), member(3.0, "d")]
    for members in (small, fixed, variable, huge):
        for bad in (members[::-1], [*members, members[-1]], [members[0], *members]):
            with pytest.raises(ValueError, match="sorted and unique"):
                sensor_record(b"s", bad)
    # Same 8-byte prefix: the order is decided by the rest of the member.
    tied = [b"t" * 8 + bytes([i]) * 3 for i in range(150)]
    sensor_record(b"s", tied)
    with pytest.raises(ValueError, match="sorted and unique"):
        sensor_record(b"s", [*tied[:75], tied[76], tied[75], *tied[77:]])
    with pytest.raises(ValueError, match="sorted and unique"):
        sensor_record(b"s", [b""] * 200)


def test_hash_rejects_empty() -> None:
    with pytest.raises(ValueError, match="at least one"):
        hash_record(b"h", {})


@pytest.mark.parametrize(
    ("members", "path"),
    [
        pytest.param([member(float(i), i * 0.25) for i in range(1000)], "fixed", id="fixed"),
        pytest.param(
            [member(float(i), "v" * (i % 70)) for i in range(1000)], "padded", id="variable"
        ),
        pytest.param([b"", *(b"m%04d" % i for i in range(300))], "padded", id="empty-member"),
        pytest.param(  # longer than the table of row layouts by length goes
            sorted([member(float(i), "w" * (i * 997 % 20000)) for i in range(130)]),
            "padded",
            id="long-members",
        ),
        pytest.param(
            [member(0.0, "a"), member(1.0, "b" * 3_000_000), member(2.0, "c")],
            "variable",
            id="unpadded",
        ),
        pytest.param([member(float(i), "z" * 100) for i in range(3)], "fixed", id="few-long"),
        pytest.param([bytes([i]) * 20000 for i in range(1, 200)], "fixed", id="fixed-16k"),
        pytest.param(
            sorted(b"abc"[: i % 4] + bytes([i]) for i in range(129)), "padded", id="short"
        ),
    ],
)
def test_big_sensor_paths_match_reference(
    members: list[bytes], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = []
    for name in ("fixed", "padded", "variable"):
        original = getattr(_writer, f"_{name}_rows")

        def spy(*args: Any, _name: str = name, _original: Any = original) -> bytes:
            used.append(_name)
            return bytes(_original(*args))

        monkeypatch.setattr(_writer, f"_{name}_rows", spy)
    assert sensor_record(b"key", members) == reference_big_zset(b"key", members)
    assert used == [path]


def test_zset_and_hash_encoding_limits() -> None:
    # Ziplists up to Redis's default limits, the plain types beyond them.
    at_limit = [bytes([i]) * 64 for i in range(128)]
    assert sensor_record(b"s", at_limit)[:1] == b"\x0c"
    assert sensor_record(b"s", [*at_limit, b"\xff"])[:1] == b"\x05"
    assert sensor_record(b"s", [b"a" * 65])[:1] == b"\x05"
    fields = {b"f%03d" % i: b"v" * 64 for i in range(512)}
    assert hash_record(b"h", fields)[:1] == b"\x0d"
    assert hash_record(b"h", {**fields, b"x": b""})[:1] == b"\x04"
    assert hash_record(b"h", {b"f" * 65: b""})[:1] == b"\x04"
    assert hash_record(b"h", {b"f": b"v" * 65})[:1] == b"\x04"


# --------------------------------------------------------------------------- whole files

STRINGS: dict[bytes, bytes] = {
    b"empty_string": b"",
    b"sub_band": encode("l"),
    b"m000_observer": encode("m000, -30:42:39.8, 21:26:38.0, 1035.0, 13.5"),
    # ff d9 <len> + data: the longest value with a 6-bit length, the shortest with 14 bits
    b"len63": encode("x" * 60),
    b"len64": encode("x" * 61),
    # ff da <len16> + data: the longest value with a 14-bit length, the shortest with 32 bits
    b"len16383": encode("y" * 16379),
    b"len16384": encode("y" * 16380),
    b"sdp_l0_int": encode(4096),
    b"big_value": encode(bytes(range(256)) * 1000),
    # A key that needs a 14-bit length itself.
    b"k" * 200: encode(["tuple", 1.5, None]),
}


def _sensor(n: int, value: Any = None, start: float = 1_556_012_345.0) -> list[bytes]:
    return [member(start + i * 0.5, i * 1.25 if value is None else value(i)) for i in range(n)]


SENSORS: dict[bytes, list[bytes]] = {
    b"one_sample": _sensor(1),
    b"ten_samples": _sensor(10),
    b"ziplist_limit": _sensor(128),
    b"ziplist_limit_plus_one": _sensor(129),
    b"pointing": _sensor(10_000),
    b"activity": _sensor(300, lambda i: ["slew", "track", "stop"][i % 3]),
    b"small_long_member": _sensor(3, lambda i: "z" * 70 * (i + 1)),
    b"array_samples": _sensor(3, lambda i: bytes(20_000 + i)),
    b"zero_ts": [member(0.0, 1), member(0.0, 2), member(5.0, 1)],
}

HASHES: dict[bytes, dict[bytes, bytes]] = {
    b"small_hash": {encode("a"): encode(1), encode(2): encode("two")},
    b"hash_512": {encode(i): encode(i * 0.5) for i in range(512)},
    b"hash_513": {encode(i): encode(i * 0.5) for i in range(513)},
    b"hash_long_value": {encode("a"): encode("v" * 100), encode("b"): encode(1)},
    b"hash_huge_value": {encode("big"): encode(b"q" * 100_000)},
}


def _write_file(path: Path) -> None:
    encoder = RdbEncoder()
    with path.open("wb") as f:
        f.write(encoder.header())
        f.write(encoder.select_db(0, keys=len(STRINGS) + len(SENSORS) + len(HASHES)))
        for key, value in STRINGS.items():
            f.write(encoder.string(key, value))
        for key, members in SENSORS.items():
            f.write(encoder.sensor(key, members))
        for key, fields in HASHES.items():
            f.write(encoder.hash(key, fields))
        f.write(encoder.footer())


@pytest.fixture(scope="module")
def rdb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rdb") / "telstate.rdb"
    _write_file(path)
    data = path.read_bytes()
    assert data[-8:] == crc64(data[:-8]).to_bytes(8, "little")
    return path


def _redis_server_version() -> tuple[int, ...]:
    output = subprocess.run(
        [server_executable(), "--version"], capture_output=True, text=True, check=True
    )
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output.stdout)
    assert match is not None, output.stdout
    return tuple(int(part) for part in match.groups())


def test_string_lengths_cover_every_length_form() -> None:
    assert [len(STRINGS[b"len%d" % n]) for n in (63, 64, 16383, 16384)] == [63, 64, 16383, 16384]


@pytest.fixture
def loaded_server(rdb_file: Path, tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that loaded (a copy of) `rdb_file` at startup."""
    shutil.copy(rdb_file, tmp_path / rdb_file.name)  # the server may save over its file
    # The second --dir wins over the one RedisServer passes.
    args = ["--dir", str(tmp_path), "--dbfilename", rdb_file.name]
    if _redis_server_version() >= (7, 0, 0):
        args += ["--enable-debug-command", "local"]  # for DEBUG RELOAD (allowed before 7)
    if _redis_server_version() >= (6, 2, 0):
        # Check every ziplist entry on load, as Redis does for RESTORE from strangers.
        args += ["--sanitize-dump-payload", "yes"]
    server = RedisServer(args=tuple(args))
    try:
        log = (server.dir / "redis.log").read_text(errors="replace")
        assert "DB loaded from disk" in log, log
        yield server
    finally:
        server.close()


def _check_contents(client: redis.Redis) -> None:
    assert client.dbsize() == len(STRINGS) + len(SENSORS) + len(HASHES)
    for key, value in STRINGS.items():
        assert client.type(key) == b"string"
        assert client.get(key) == value, key
    for key, members in SENSORS.items():
        assert client.type(key) == b"zset"
        assert client.zrange(key, 0, -1, withscores=True) == [(m, 0.0) for m in members], key
    for key, fields in HASHES.items():
        assert client.type(key) == b"hash"
        assert client.hgetall(key) == fields, key


def test_redis_server_loads_file(loaded_server: RedisServer) -> None:
    client = loaded_server.client()
    try:
        _check_contents(client)
        # The encodings are those Redis itself would have picked for the same data.
        compact = {b"ziplist", b"listpack"}
        for key in [b"one_sample", b"ten_samples", b"ziplist_limit", b"zero_ts", b"small_hash"]:
            assert client.object("encoding", key) in compact, key
        assert client.object("encoding", b"hash_512") in compact
        for key in [b"ziplist_limit_plus_one", b"pointing", b"small_long_member"]:
            assert client.object("encoding", key) == b"skiplist", key
        for key in [b"hash_513", b"hash_long_value"]:
            assert client.object("encoding", key) == b"hashtable", key
        # And the server can save and reload what it loaded.
        assert client.save()
        assert client.execute_command("DEBUG", "RELOAD")
        _check_contents(client)
    finally:
        client.close()


def test_redis_server_loads_version_8(tmp_path: Path) -> None:
    encoder = RdbEncoder(version=8)
    path = tmp_path / "v8.rdb"
    path.write_bytes(
        encoder.header()
        + encoder.select_db()
        + encoder.sensor(b"s", SENSORS[b"pointing"])
        + encoder.footer()
    )
    server = RedisServer(args=("--dir", str(tmp_path), "--dbfilename", path.name))
    try:
        client = server.client()
        assert client.zrange(b"s", 0, -1) == SENSORS[b"pointing"]
        client.close()
    finally:
        server.close()


def test_katsdptelstate_loads_file(rdb_file: Path) -> None:
    import katsdptelstate  # a test dependency, with rdbtools (its RDB reader): never skipped

    ts = katsdptelstate.TelescopeState()
    assert ts.load_from_file(str(rdb_file)) == len(STRINGS) + len(SENSORS) + len(HASHES)
    assert set(ts.keys()) == {k.decode() for k in [*STRINGS, *SENSORS, *HASHES]}
    for key, value in STRINGS.items():
        name = key.decode()
        assert ts.key_type(name) == katsdptelstate.KeyType.IMMUTABLE
        if value:  # b"" is not a telstate value: katsdptelstate cannot decode it
            assert ts.get(name) == decode(value), name
    for key, members in SENSORS.items():
        name = key.decode()
        assert ts.key_type(name) == katsdptelstate.KeyType.MUTABLE
        expected = [(decode(m[8:]), struct.unpack(">d", m[:8])[0]) for m in members]
        assert ts.get_range(name, st=0) == expected, name
    for key, fields in HASHES.items():
        name = key.decode()
        assert ts.key_type(name) == katsdptelstate.KeyType.INDEXED
        for field, value in fields.items():
            assert ts.get_indexed(name, decode(field)) == decode(value), (name, field)
