"""Reading RDB files: real dumps, katsdptelstate's files, fixtures of other servers, bad files."""

from __future__ import annotations

import io
import json
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import katsdptelstate
import katsdptelstate.rdb_writer
import pytest
import redis

import telstate
from telstate import ImmutableKeyError, KeyType, TelescopeState
from telstate.backends.rdb import RdbBackend, RdbFileInfo
from telstate.backends.redis import RedisBackend
from telstate.rdb._reader import RdbIndex

from .rdb_data import fill
from .servers import RedisServer
from .snapshots import contents as _snapshot


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A dump written by the machine's real redis-server, and what it held."""
    server = RedisServer()
    try:
        client = server.client()
        ts = TelescopeState(RedisBackend(client))
        fill(ts)
        client.set("int_encoded", 12345)  # not a telstate value, but a real encoding
        client.rpush("a_list", 1, 2, 3)
        client.sadd("an_intset", 1, 2, 3)
        client.sadd("a_set", "x", "y")
        client.xadd("a_stream", {"f": "v"})
        client.expireat("text", 4102444800)  # year 2100
        other_db = server.client(db=3)
        other_db.set("in_db3", telstate.encode_value("three"))
        expected = _snapshot(ts)
        expected["in_db3"] = (KeyType.IMMUTABLE, telstate.encode_value("three"))
        client.save()
        path = tmp_path_factory.mktemp("dump") / "redis7.rdb"
        shutil.copy(server.dir / "dump.rdb", path)
        client.close()
        other_db.close()
    finally:
        server.close()
    return path, expected


def test_index_of_a_real_dump(dump: tuple[Path, dict[str, Any]]) -> None:
    path, expected = dump
    index = RdbIndex(path.read_bytes(), str(path))
    assert index.magic == "REDIS" and index.version >= 10
    assert sorted(key.decode() for key in index.entries) == sorted(expected)
    assert index.skipped == {"list": 1, "set": 2, "stream": 1}
    assert index.databases == {0, 3}
    assert index.aux[b"redis-ver"].startswith(b"7.")


@pytest.mark.parametrize("form", ["path", "str", "bytes", "file"])
def test_load_from_file_forms(dump: tuple[Path, dict[str, Any]], form: str) -> None:
    path, expected = dump
    source: Any = {
        "path": path,
        "str": str(path),
        "bytes": path.read_bytes(),
        "file": io.BytesIO(path.read_bytes()),
    }[form]
    ts = TelescopeState()
    assert ts.load_from_file(source) == len(expected)
    assert _snapshot(ts) == expected
    assert ts.get("int_encoded", return_encoded=True) == b"12345"


def test_load_into_every_backend(ts: TelescopeState, dump: tuple[Path, dict[str, Any]]) -> None:
    path, expected = dump
    assert ts.load_from_file(path) == len(expected)
    assert _snapshot(ts) == expected
    # Loading again merges: equal values, nothing changes
    assert ts.load_from_file(path) == len(expected)
    assert _snapshot(ts) == expected


def test_load_merges_with_existing_keys(
    ts: TelescopeState, dump: tuple[Path, dict[str, Any]]
) -> None:
    path, expected = dump
    ts.add("sensor_big", -1.0, ts=1.0)  # an extra sample, kept
    ts.set_indexed("idx_small", "extra", 1)
    ts["small_int"] = 2  # conflicts with the file's 1
    with pytest.raises(ImmutableKeyError, match="small_int"):
        ts.load_from_file(path)
    assert ts["small_int"] == 2
    samples = ts.get_range("sensor_big", st=0, return_encoded=True)
    assert samples[0] == (telstate.encode_value(-1.0), 1.0)
    assert samples[1:] == expected["sensor_big"][1]
    assert ts.get_indexed("idx_small", "extra") == 1
    assert ts.get_indexed("idx_small", ("m001", "h")) == complex(1, -1)
    assert ts.get("text", return_encoded=True) == expected["text"][1]


def test_load_into_redis_uses_restore(redis_client: redis.Redis, dump: tuple[Path, Any]) -> None:
    path, _ = dump
    ts = TelescopeState(RedisBackend(redis_client))
    redis_client.config_resetstat()
    ts.load_from_file(path)
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_restore"]["calls"] == len(RdbIndex(path.read_bytes()).entries)
    assert stats["cmdstat_restore"]["failed_calls"] == 0
    assert not {"cmdstat_zadd", "cmdstat_set", "cmdstat_hset", "cmdstat_evalsha"} & set(stats)


def test_lazy_open(dump: tuple[Path, dict[str, Any]]) -> None:
    path, expected = dump
    for source in (path, path.read_bytes()):
        ts = TelescopeState.open(source)
        assert isinstance(ts.backend, RdbBackend)
        assert _snapshot(ts) == expected
        view = ts.view("1556012345")
        assert view["obs_params"] == {"observer": "ghost", "n": 3}
        assert view.get_range("sensor_big", st=1e9 + 10, et=1e9 + 12) == [
            (5.0, 1e9 + 10),
            (5.5, 1e9 + 11),
        ]
        assert ts.get_range("sensor_big", et=1e9 + 1.5) == [(0.5, 1e9 + 1)]
        assert ts.key_type("idx_big") is KeyType.INDEXED
        assert ts.keys("sensor_*") == ["sensor_big", "sensor_small"]
        with pytest.raises(ImmutableKeyError):
            ts["new"] = 1
        with pytest.raises(ImmutableKeyError):
            ts.add("sensor_big", 1.0)
        with pytest.raises(ImmutableKeyError):
            ts.get_range("text")
        with pytest.raises(telstate.TimeoutError):
            ts.wait_key("never", timeout=0.01)
        ts.backend.verify()


def test_lazy_open_decodes_only_what_is_read(dump: tuple[Path, dict[str, Any]]) -> None:
    path, _ = dump
    backend = RdbBackend(path)
    ts = TelescopeState(backend)
    assert ts["small_int"] == 1
    assert set(backend._cache) == {b"small_int"}


# --------------------------------------------------------------------------- other writers


def test_katsdptelstate_file_from_its_memory_backend(tmp_path: Path) -> None:
    ref = katsdptelstate.TelescopeState()
    for i in range(300):
        ref.add("sensor", float(i), ts=1e9 + i)
    for i in range(5):
        ref.add("small", i, ts=float(i))
    ref["attr"] = {"a": 1}
    ref.set_indexed("idx", "k", (1, 2))
    for i in range(600):
        ref.set_indexed("big_idx", i, i)
    path = tmp_path / "kat.rdb"
    with katsdptelstate.rdb_writer.RDBWriter(path) as writer:
        writer.save(ref)
    ts = TelescopeState()
    assert ts.load_from_file(path) == 5
    assert ts.get_range("sensor", st=0) == ref.get_range("sensor", st=0)
    assert ts.get_range("small", st=0) == ref.get_range("small", st=0)
    assert ts["attr"] == {"a": 1}
    assert ts["idx"] == {"k": (1, 2)}
    assert ts["big_idx"] == ref["big_idx"]


def test_katsdptelstate_file_from_redis_7(redis_client: redis.Redis, tmp_path: Path) -> None:
    """katsdptelstate writes Redis 7's DUMP payloads (listpacks) under a REDIS0006 label."""
    ts = TelescopeState(RedisBackend(redis_client))
    fill(ts)
    expected = _snapshot(ts)
    path = tmp_path / "kat7.rdb"
    with katsdptelstate.rdb_writer.RDBWriter(path) as writer:
        writer.save(redis_client)
    assert path.read_bytes()[:9] == b"REDIS0006"
    index = RdbIndex(path.read_bytes())
    assert {entry.rdb_type for entry in index.entries.values()} >= {16, 17}  # listpacks
    loaded = TelescopeState()
    loaded.load_from_file(path)
    assert _snapshot(loaded) == expected
    assert _snapshot(TelescopeState.open(path)) == expected


# --------------------------------------------------------------------------- other servers

FIXTURES = Path(__file__).parent / "fixtures" / "rdb"
FIXTURE_FILES = json.loads((FIXTURES / "expected.json").read_text())["files"]


@pytest.mark.parametrize("name", sorted(FIXTURE_FILES))
def test_files_written_by_other_servers(name: str) -> None:
    """Redis 6.2, Redis 7.0 and Valkey 8.1 dumps: every value as the server held it."""
    expected = FIXTURE_FILES[name]
    data = (FIXTURES / name).read_bytes()
    assert data[:9] == expected["rdb_magic"].encode()
    checked = 0
    for db_text, keys in expected["databases"].items():
        index = RdbIndex(data, name, db=int(db_text))
        others = Counter(entry["type"] for entry in keys.values())
        assert index.skipped == {
            kind: others[kind] for kind in ("list", "set", "stream") if others[kind]
        }
        for key_hex, entry in keys.items():
            key = bytes.fromhex(key_hex)
            if entry["type"] == "string":
                assert index.read(key) == bytes.fromhex(entry["value"]), key
            elif entry["type"] == "zset":
                members = [bytes.fromhex(member) for member, _ in entry["members"]]
                assert index.read(key) == members, key
                if all(float(score) == 0 for _, score in entry["members"]) and all(
                    len(m) > 8 for m in members
                ):
                    samples = index.read_samples(key).encoded()
                    assert [struct.pack(">d", ts) + value for value, ts in samples] == members
            elif entry["type"] == "hash":
                fields = {bytes.fromhex(f): bytes.fromhex(v) for f, v in entry["fields"].items()}
                assert index.read(key) == fields, key
            else:
                assert key not in index.entries
                continue
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("name", sorted(FIXTURE_FILES))
def test_file_info(name: str) -> None:
    """What an opened file says of itself, through the backend's public surface."""
    expected = FIXTURE_FILES[name]
    backend = RdbBackend(FIXTURES / name)
    info = backend.file_info
    assert info.format == expected["rdb_magic"]
    assert (info.magic, info.version) == ("REDIS", int(expected["rdb_magic"][5:]))
    assert b"ctime" in info.aux and (b"redis-ver" in info.aux or b"valkey-ver" in info.aux)
    others = Counter(
        entry["type"] for keys in expected["databases"].values() for entry in keys.values()
    )
    skipped = {kind: others[kind] for kind in ("list", "set", "stream") if others[kind]}
    assert info.skipped == skipped
    info.skipped.clear()  # a copy: the backend's own counts stay
    assert backend.file_info.skipped == skipped


def test_file_info_format_of_valkey_9() -> None:
    assert RdbFileInfo("VALKEY", 80, {}, {}).format == "VALKEY080"
    assert RdbFileInfo("REDIS", 9, {}, {}).format == "REDIS0009"


def test_lazy_stats_without_decoding(dump: tuple[Path, dict[str, Any]]) -> None:
    path, expected = dump
    backend = RdbBackend(path)
    (stats,) = backend.stats([b"sensor_big"])
    assert stats is not None
    samples = expected["sensor_big"][1]
    assert (stats.count, stats.first, stats.last) == (len(samples), samples[0][1], samples[-1][1])
    assert b"sensor_big" not in backend._cache
