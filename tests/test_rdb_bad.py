"""Bad RDB files: only RdbParseError comes out, quickly, and nothing is written.

The fuzz test mutates real files (written by Redis 6.2, 7.0 and Valkey 8.1) in
many ways.  CI runs a few hundred mutations; set TELSTATE_FUZZ_EXAMPLES for a
longer run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import telstate
from telstate import DecodeError, RdbParseError, TelescopeState
from telstate.rdb._reader import RdbIndex

FIXTURES = Path(__file__).parent / "fixtures" / "rdb"
FILES = {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.rdb"))}
EXAMPLES = int(os.environ.get("TELSTATE_FUZZ_EXAMPLES", "300"))


def test_not_an_rdb_file(tmp_path: Path) -> None:
    for content in (b"", b"hello world", b"REDIS", b"REDISxxxx", b"REDIS0099" + b"\xff" * 8):
        path = tmp_path / "bad.rdb"
        path.write_bytes(content)
        with pytest.raises(RdbParseError) as info:
            TelescopeState().load_from_file(path)
        assert "bad.rdb" in str(info.value)
    with pytest.raises(RdbParseError, match="not an RDB file"):
        TelescopeState.open(b"PK\x03\x04 a zip file")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TelescopeState().load_from_file(tmp_path / "missing.rdb")
    with pytest.raises(FileNotFoundError):
        TelescopeState.open(tmp_path / "missing.rdb")


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_truncation_is_reported(name: str) -> None:
    data = FILES[name]
    for end in range(0, len(data) - 1, max(1, len(data) // 400)):
        with pytest.raises(RdbParseError) as info:
            RdbIndex(data[:end], name)
        assert name in str(info.value)
        if end >= 9:
            assert info.value.offset is not None


@pytest.mark.parametrize("name", sorted(FILES))
def test_wrong_checksum(name: str) -> None:
    data = bytearray(FILES[name])
    data[-1] ^= 0x01
    with pytest.raises(RdbParseError, match="checksum"):
        RdbIndex(bytes(data), name)
    # The lazy open does not read everything, so it checks only when asked
    ts = TelescopeState.open(bytes(data))
    with pytest.raises(RdbParseError, match="checksum"):
        ts.backend.verify()  # type: ignore[attr-defined]


def test_zero_checksum_means_unchecked() -> None:
    data = bytearray(FILES["redis-7.0.rdb"])
    data[-8:] = bytes(8)
    assert len(RdbIndex(bytes(data))) > 0


def test_failed_load_writes_nothing(ts: TelescopeState) -> None:
    ts["existing"] = 1
    data = bytearray(FILES["redis-7.0.rdb"])
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(RdbParseError):
        ts.load_from_file(bytes(data))
    assert ts.keys() == ["existing"]


def test_forged_lengths_do_not_allocate() -> None:
    header = b"REDIS0009\xfe\x00"
    for body in (
        b"\x00\x01k\x80\xff\xff\xff\xff",  # a 4 GiB string
        b"\x00\x01k\x81\xff\xff\xff\xff\xff\xff\xff\xff",  # a 2**64 string
        b"\x00\x01k\xc3\x02\x81\x00\x00\x00\xff\xff\xff\xff\xffab",  # LZF claiming 1 TiB
        b"\x05\x01k\x80\x7f\xff\xff\xff",  # a sorted set of 2**31 members
        b"\x04\x01k\x80\x7f\xff\xff\xff",  # a hash of 2**31 fields
    ):
        with pytest.raises(RdbParseError, match=r"claims|needs"):
            index = RdbIndex(header + body + b"\xff" + bytes(8))
            index.read(b"k")  # the LZF string is only expanded when read


Mutation = tuple[str, int, int, bytes]  # kind, position (fraction of 1e6), size, bytes

mutations = st.tuples(
    st.sampled_from(["flip", "byte", "truncate", "insert", "delete", "splat"]),
    st.integers(0, 999_999),
    st.integers(0, 63),
    st.binary(min_size=1, max_size=32),
)


def _mutate(data: bytes, changes: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, where, size, blob in changes:
        pos = where * len(out) // 1_000_000
        if kind == "flip" and out:
            out[pos] ^= 1 << (size % 8)
        elif kind == "byte" and out:
            out[pos] = (0x00, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xC3, 0xFF)[size % 9]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = blob[: 1 + size % 8]
        elif kind == "delete":
            del out[pos : pos + 1 + size % 16]
        else:
            out[pos : pos + len(blob)] = blob
    return bytes(out)


@settings(
    max_examples=EXAMPLES,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(name=st.sampled_from(sorted(FILES)), changes=st.lists(mutations, min_size=1, max_size=4))
def test_fuzzed_files_give_only_rdb_parse_errors(name: str, changes: list[Mutation]) -> None:
    data = _mutate(FILES[name], changes)
    # Without the checksum the parser itself must catch the damage (or read valid data)
    try:
        index = RdbIndex(data, name, verify_checksum=False)
    except RdbParseError as exc:
        assert name in str(exc)
        return
    for key in index.entries:
        try:
            index.read(key)
            if index.key_type(index.entries[key]) is telstate.KeyType.MUTABLE:
                index.read_samples(key)
        except RdbParseError:
            pass
    ts = TelescopeState.open(data)
    for key in ts.keys():
        try:
            if ts.key_type(key) is telstate.KeyType.MUTABLE:
                ts.get_range(key, st=0)
            else:
                ts.get(key)
        except (RdbParseError, DecodeError):
            pass
