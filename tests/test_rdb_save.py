"""Writing RDB files from every backend; the files load into katsdptelstate and redis-server."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import katsdptelstate
import pytest
import redis

import telstate
import telstate.aio
from telstate import KeyType, TelescopeState
from telstate.backends.redis import RedisBackend
from telstate.rdb import RDBWriter
from telstate.rdb._reader import RdbIndex

from .rdb_data import fill
from .servers import RedisServer

PORTABLE_TYPES = {0, 3, 4, 5, 12, 13}


def _contents(ts: Any) -> dict[str, Any]:
    """Every key's encoded content, read through a telstate or katsdptelstate object."""
    out: dict[str, Any] = {}
    for key in ts.keys():
        kind = ts.key_type(key)
        if kind is None:
            continue
        if kind.value == KeyType.MUTABLE.value:
            out[key] = ts.get_range(key, st=0, return_encoded=True)
        else:
            out[key] = ts.get(key, return_encoded=True)
    return out


@pytest.fixture
def source(sync_ts: TelescopeState) -> TelescopeState:
    fill(sync_ts)
    return sync_ts


def test_saved_file_loads_into_katsdptelstate_and_telstate(
    source: TelescopeState, tmp_path: Path
) -> None:
    expected = _contents(source)
    path = tmp_path / "saved.rdb"
    assert source.save_to_file(path) == len(expected)
    data = path.read_bytes()
    assert data[:9] == b"REDIS0009"
    index = RdbIndex(data, str(path))  # checksum verified
    assert {entry.rdb_type for entry in index.entries.values()} <= PORTABLE_TYPES
    ref = katsdptelstate.TelescopeState()
    assert ref.load_from_file(path) == len(expected)
    assert _contents(ref) == expected
    assert _contents(TelescopeState.open(path)) == expected


def test_saved_file_loads_into_redis_server(source: TelescopeState, tmp_path: Path) -> None:
    expected = _contents(source)
    path = tmp_path / "saved.rdb"
    source.save_to_file(path)
    server = RedisServer(args=("--dbfilename", "saved.rdb"), preload=path)
    try:
        loaded = TelescopeState(RedisBackend(server.client()))
        assert _contents(loaded) == expected
        loaded.backend.close()
    finally:
        server.close()


def test_save_from_redis_7_reencodes_listpacks(redis_client: redis.Redis, tmp_path: Path) -> None:
    ts = TelescopeState(RedisBackend(redis_client))
    fill(ts)
    assert redis_client.object("encoding", "sensor_small") == b"listpack"
    expected = _contents(ts)
    path = tmp_path / "from_redis.rdb"
    with RDBWriter(path) as writer:
        writer.save(redis_client)  # a plain redis client works too
    assert (writer.keys_written, writer.keys_failed) == (len(expected), 0)
    index = RdbIndex(path.read_bytes())
    assert {entry.rdb_type for entry in index.entries.values()} <= PORTABLE_TYPES
    ref = katsdptelstate.TelescopeState()
    ref.load_from_file(path)
    assert _contents(ref) == expected


def test_rdb_to_rdb(source: TelescopeState, tmp_path: Path) -> None:
    first, second = tmp_path / "a.rdb", tmp_path / "b.rdb"
    source.save_to_file(first)
    TelescopeState.open(first).save_to_file(second)
    assert _contents(TelescopeState.open(second)) == _contents(source)


def test_subset_missing_keys_and_empty_files(
    source: TelescopeState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "subset.rdb"
    with caplog.at_level(logging.ERROR), RDBWriter(path) as writer:
        writer.save(source, ["small_int", b"sensor_big", "no_such_key"])
    assert (writer.keys_written, writer.keys_failed) == (2, 1)
    assert "no_such_key" in caplog.text
    assert sorted(TelescopeState.open(path).keys()) == ["sensor_big", "small_int"]
    empty = tmp_path / "empty.rdb"
    with RDBWriter(empty) as writer:
        writer.save(source, ["no_such_key"])
    assert not empty.exists()  # as katsdptelstate: a file without keys is removed


def test_version_8_for_redis_4(source: TelescopeState, tmp_path: Path) -> None:
    path = tmp_path / "v8.rdb"
    with RDBWriter(path, version=8) as writer:
        writer.save(source)
    assert path.read_bytes()[:9] == b"REDIS0008"
    assert _contents(TelescopeState.open(path)) == _contents(source)


def test_async_writer(tmp_path: Path, redis_server: RedisServer) -> None:
    async def main() -> dict[str, Any]:
        ts = telstate.aio.TelescopeState()
        sync = TelescopeState(ts.backend.to_sync())  # type: ignore[attr-defined]
        fill(sync)
        path = tmp_path / "async.rdb"
        assert await ts.save_to_file(path) == len(sync.keys())
        async with telstate.aio.RDBWriter(tmp_path / "async2.rdb") as writer:
            await writer.save(ts, ["small_int"])
        assert writer.keys_written == 1
        return _contents(sync)

    expected = asyncio.run(main())
    assert _contents(TelescopeState.open(tmp_path / "async.rdb")) == expected
    shutil.rmtree(tmp_path)
