"""CRC-64 and LZF for RDB files: against slow references and against a real redis-server.

* ``crc64`` is checked against a bit-by-bit implementation of the definition (and, for
  inputs of megabytes, a byte-table implementation derived from it here), on lengths
  around every boundary of the lane layout, on every input type, with chaining, and
  against the checksums redis-server itself writes at the end of ``dump.rdb`` and of
  ``DUMP`` payloads.
* ``lzf_decompress`` decodes what redis-server's compressor produced (from ``DUMP``),
  and redis-server accepts (``RESTORE``) what ``lzf_compress`` produces.  Corrupt input
  of any kind gives ``ValueError``.
"""

from __future__ import annotations

import mmap
import random
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate.rdb import _crc64
from telstate.rdb._crc64 import crc64
from telstate.rdb._lzf import lzf_decompress

from .lzf_encoder import lzf_compress
from .servers import RedisServer

POLY_REFLECTED = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 bit-reversed


# --------------------------------------------------------------------------- references


def crc64_bitwise(data: bytes, crc: int = 0) -> int:
    """The definition: reflected CRC-64/Jones, one bit at a time."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (POLY_REFLECTED if crc & 1 else 0)
    return crc


_REF_TABLE = [crc64_bitwise(bytes([byte])) for byte in range(256)]


def crc64_bytewise(data: bytes, crc: int = 0) -> int:
    """Same as crc64_bitwise (tested below), fast enough for a few megabytes."""
    table = _REF_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# --------------------------------------------------------------------------- crc64


def test_check_value() -> None:
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64_bitwise(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64(b"") == 0
    assert crc64(b"", 12345) == 12345
    assert crc64(b"\0" * 100_000) == 0  # leading zero bytes do not change a zero register


def test_bytewise_reference_is_bitwise() -> None:
    data = random_bytes(3000, 1)
    for n in (0, 1, 5, 100, 3000):
        assert crc64_bytewise(data[:n], 77) == crc64_bitwise(data[:n], 77)


def _boundary_lengths() -> list[int]:
    """Lengths at the edges of the Python path and of every lane layout up to 2**12 lanes."""
    small = _crc64._PYTHON_MAX
    lengths = {0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 257, small - 1, small}
    lengths |= {small + 1, small + 7, small + 8, small + 9}
    for log_lanes in range(2, 10):
        # this many lanes are used from n = 8 * rows * lanes on
        start = 8 * _crc64._MIN_ROWS << log_lanes
        row = 8 << log_lanes
        for n in (start - 1, start, start + 1, start + row - 1, start + row, start + row + 1):
            if n >= small:
                lengths.add(n)
    return sorted(lengths)


@pytest.mark.parametrize("n", _boundary_lengths())
def test_matches_bitwise_reference(n: int) -> None:
    data = random_bytes(n, n)
    assert crc64(data) == crc64_bitwise(data)


@pytest.mark.parametrize(
    "n",
    [
        65_535,
        65_536,
        65_537,
        # the widest layout (2**13 lanes, 64 KiB rows) starts at 1 MiB
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        (1 << 20) + (1 << 16) + 3,
        3_000_017,
    ],
)
def test_matches_reference_megabytes(n: int) -> None:
    data = random_bytes(n, n)
    assert crc64(data) == crc64_bytewise(data)


@pytest.mark.parametrize("n", [0, 1, 9, 4095, 4097, 20_000, 300_001, 2_500_000])
def test_chaining(n: int) -> None:
    data = random_bytes(n, 1000 + n)
    whole = crc64(data)
    rng = random.Random(n)
    for split in {0, n, n // 2, rng.randrange(n + 1), rng.randrange(n + 1)}:
        assert crc64(data[split:], crc64(data[:split])) == whole
    start = rng.getrandbits(64)
    small = data[: min(n, 3000)]
    assert crc64(small, start) == crc64_bitwise(small, start)
    # three pieces, a large one in the middle
    a, b = sorted((rng.randrange(n + 1), rng.randrange(n + 1)))
    assert crc64(data[b:], crc64(data[a:b], crc64(data[:a]))) == whole


def test_crc_argument_range() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        crc64(b"abc", -1)
    with pytest.raises(ValueError, match="64-bit"):
        crc64(b"abc", 1 << 64)


@pytest.mark.parametrize("n", [100, 200_001])
def test_buffer_types(n: int, tmp_path: Path) -> None:
    data = random_bytes(n, 7)
    expected = crc64_bytewise(data)
    assert crc64(bytearray(data)) == expected
    assert crc64(memoryview(data)) == expected
    assert crc64(memoryview(b"xx" + data + b"yy")[2:-2]) == expected
    words = data[: n // 8 * 8]
    assert crc64(memoryview(words).cast("Q")) == crc64_bytewise(words)
    assert crc64(np.frombuffer(words, ">u8").data) == crc64_bytewise(words)  # raw bytes
    assert crc64(np.frombuffer(words, np.uint8).reshape(-1, 4).data) == crc64_bytewise(words)
    assert crc64(np.frombuffer(data, np.uint8).data) == expected
    # not contiguous: read through a copy
    spread = bytes(2 * n)
    spread_view = memoryview(bytearray(spread))
    spread_view[::2] = data
    assert crc64(spread_view[::2]) == expected
    path = tmp_path / "data"
    path.write_bytes(data)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        assert crc64(view) == expected
        assert crc64(view[1:], crc64(view[:1])) == expected
        view.release()


def _fill_server(client: redis.Redis) -> None:
    rng = random.Random(42)
    client.set("small", b"hello")
    client.set("int", 12345)
    client.set("compressible", b"abc" * 10_000)
    client.set("big", random_bytes(1_500_000, 9))  # the file goes through the widest layout
    client.hset("hash", mapping={f"field{i}": rng.randbytes(rng.randrange(100)) for i in range(50)})
    client.rpush("list", *[rng.randbytes(20) for _ in range(100)])
    client.zadd("zset", {f"member{i}": rng.random() for i in range(100)})


def test_matches_redis_rdb_file(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    _fill_server(redis_client)
    redis_client.save()
    path = redis_server.dir / "dump.rdb"
    data = path.read_bytes()
    path.unlink()
    assert data.startswith(b"REDIS")
    stored = int.from_bytes(data[-8:], "little")
    assert stored != 0
    assert crc64(data[:-8]) == stored
    assert crc64(memoryview(data)[:-8]) == stored


def test_matches_redis_dump_payload(redis_client: redis.Redis) -> None:
    _fill_server(redis_client)
    for key in (b"small", b"int", b"compressible", b"big", b"hash", b"list", b"zset"):
        payload = redis_client.dump(key)
        assert isinstance(payload, bytes)
        # payload: object, 2-byte RDB version, CRC-64 of all that
        assert crc64(payload[:-8]) == int.from_bytes(payload[-8:], "little")


# --------------------------------------------------------------------------- lzf

RDB_ENC_LZF = 0xC3


def rdb_length(value: int) -> bytes:
    if value < 1 << 6:
        return bytes([value])
    if value < 1 << 14:
        return bytes([0x40 | value >> 8, value & 0xFF])
    if value < 1 << 32:
        return b"\x80" + value.to_bytes(4, "big")
    return b"\x81" + value.to_bytes(8, "big")


def parse_rdb_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, pos + 1
    if kind == 1:
        return (first & 0x3F) << 8 | data[pos + 1], pos + 2
    if first == 0x80:
        return int.from_bytes(data[pos + 1 : pos + 5], "big"), pos + 5
    if first == 0x81:
        return int.from_bytes(data[pos + 1 : pos + 9], "big"), pos + 9
    raise AssertionError(f"not a length: 0x{first:02x}")


def test_rdb_length_helpers() -> None:
    for value in (0, 63, 64, 16383, 16384, (1 << 32) - 1, 1 << 32):
        encoded = rdb_length(value)
        assert parse_rdb_length(encoded + b"tail", 0) == (value, len(encoded))


def redis_lzf_strings() -> list[bytes]:
    rng = random.Random(3)
    return [
        b"abc" * 1000 + rng.randbytes(100),
        b"x" * 100_000,
        b"".join(
            rng.choice([b"alpha ", b"beta ", b"gamma ", rng.randbytes(3)]) for _ in range(5000)
        ),
        bytes(range(256)) * 200,
    ]


@pytest.mark.parametrize("value", redis_lzf_strings(), ids=["abc", "run", "words", "ramp"])
def test_decompress_redis_dump(redis_client: redis.Redis, value: bytes) -> None:
    redis_client.set("key", value)
    payload = redis_client.dump("key")
    assert isinstance(payload, bytes)
    assert payload[0] == 0  # string object
    assert payload[1] == RDB_ENC_LZF, "redis-server did not compress the value"
    compressed_length, pos = parse_rdb_length(payload, 2)
    length, pos = parse_rdb_length(payload, pos)
    assert length == len(value)
    assert pos + compressed_length == len(payload) - 10  # then RDB version and CRC
    compressed = payload[pos : pos + compressed_length]
    assert lzf_decompress(compressed, length) == value
    assert lzf_decompress(memoryview(payload)[pos : pos + compressed_length], length) == value


@pytest.mark.parametrize("value", redis_lzf_strings(), ids=["abc", "run", "words", "ramp"])
def test_redis_restores_our_lzf(redis_client: redis.Redis, value: bytes) -> None:
    compressed = lzf_compress(value)
    assert len(compressed) < len(value)
    body = (
        b"\x00"  # string object
        + bytes([RDB_ENC_LZF])
        + rdb_length(len(compressed))
        + rdb_length(len(value))
        + compressed
        + (9).to_bytes(2, "little")  # RDB version 9: Redis 5 onwards
    )
    payload = body + crc64(body).to_bytes(8, "little")
    redis_client.restore("restored", 0, payload)
    assert redis_client.get("restored") == value
    # Redis re-compresses it in its own way; both decode to the same value
    again = redis_client.dump("restored")
    assert isinstance(again, bytes)
    assert crc64(again[:-8]) == int.from_bytes(again[-8:], "little")


ROUND_TRIPS = [
    b"",
    b"a",
    b"ab",
    b"abc",
    b"aaaa",
    b"abcabcabc",
    b"a" * 264,
    b"a" * 265,
    b"a" * 100_000,
    bytes(range(256)) * 40,
    random_bytes(10_000, 11),
    random_bytes(500, 12) * 30,
    (random_bytes(9000, 13) + b"z" * 300) * 3,  # references up to 8 KiB back and further
]


@pytest.mark.parametrize("data", ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
def test_round_trip(data: bytes) -> None:
    compressed = lzf_compress(data)
    assert lzf_decompress(compressed, len(data)) == data
    assert lzf_decompress(bytearray(compressed), len(data)) == data
    assert lzf_decompress(memoryview(compressed), len(data)) == data


def test_compression_ratio() -> None:
    assert len(lzf_compress(b"a" * 100_000)) < 100_000 // 80  # 3 bytes per 264
    assert len(lzf_compress(b"abc" * 1000)) <= 4 + 3 * (3000 // 264 + 1)
    noise = random_bytes(10_000, 14)
    assert len(lzf_compress(noise)) <= len(noise) * 33 // 32 + 1


def test_overlapping_references() -> None:
    # one literal 'ab', then 7 + 2 bytes from 2 back (period 2), then 5 + 2 from 1 back
    data = bytes([1]) + b"ab" + bytes([0xE0, 0, 1]) + bytes([0xA0, 0])
    assert lzf_decompress(data, 2 + 9 + 7) == b"ab" + b"ababababa" + b"aaaaaaa"
    # longest reference: 7 + 255 + 2 bytes
    data = bytes([0]) + b"q" + bytes([0xE0, 255, 0])
    assert lzf_decompress(data, 265) == b"q" * 265
    # 8 KiB back, the farthest
    head = random_bytes(8192, 15)
    data = lzf_compress(head) + bytes([0x3F, 0xFF])
    assert lzf_decompress(data, 8192 + 3) == head + head[:3]


@pytest.mark.parametrize(
    ("data", "expected_length", "message"),
    [
        (b"\x20\x00", 3, "before the start"),  # reference with no output yet
        (b"\x00a\x20\x01", 4, "before the start"),  # 2 back with 1 byte of output
        (b"\x00a\x3f\xff", 4, "before the start"),
        (b"\x05ab", 6, "truncated"),  # literal cut short
        (b"\x1f", 32, "truncated"),
        (b"\x00a\x20", 4, "truncated"),  # reference cut short
        (b"\x00a\xe0", 20, "truncated"),
        (b"\x00a\xe0\x05", 20, "truncated"),
        (b"\x02abc", 2, "longer"),
        (b"\x00a\x20\x00", 3, "longer"),
        (b"\x00a\xe0\xff\x00", 100, "longer"),
        (b"\x02abc", 4, "not the expected"),
        (b"", 1, "not the expected"),
        (b"\x00a", 10**15, "not the expected"),  # nothing allocated up front
        (b"", -1, "negative"),
    ],
)
def test_corrupt(data: bytes, expected_length: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lzf_decompress(data, expected_length)


def test_empty() -> None:
    assert lzf_compress(b"") == b""
    assert lzf_decompress(b"", 0) == b""


def _check_decompress(data: bytes, expected_length: int) -> bytes | None:
    try:
        out = lzf_decompress(data, expected_length)
    except ValueError:
        return None
    assert isinstance(out, bytes)
    assert len(out) == expected_length
    return out


compressible = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([b"abc", b"xxxxxxxx", b"hello world"])),
    max_size=60,
).map(lambda parts: b"".join(parts * 2))


@settings(max_examples=300, deadline=None)
@given(compressible)
def test_round_trip_fuzz(data: bytes) -> None:
    assert lzf_decompress(lzf_compress(data), len(data)) == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 5000))
def test_random_input_fuzz(data: bytes, expected_length: int) -> None:
    _check_decompress(data, expected_length)


@settings(max_examples=300, deadline=None)
@given(
    compressible,
    st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]), st.integers(0), st.integers(0, 255)
        ),
        max_size=4,
    ),
    st.integers(0, 300),
    st.integers(-3, 3),
)
def test_mutated_input_fuzz(
    data: bytes, edits: list[tuple[str, int, int]], truncate: int, length_delta: int
) -> None:
    compressed = bytearray(lzf_compress(data))
    for kind, where, value in edits:
        if not compressed:
            break
        where %= len(compressed)
        if kind == "set":
            compressed[where] = value
        elif kind == "insert":
            compressed.insert(where, value)
        else:
            del compressed[where]
    if truncate and compressed:
        del compressed[-(truncate % len(compressed) or 1) :]
    expected_length = max(0, len(data) + length_delta)
    out = _check_decompress(bytes(compressed), expected_length)
    if not edits and not truncate and length_delta == 0:
        assert out == data
