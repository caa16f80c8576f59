"""Writing RDB files from every backend; the files load into katsdptelstate and redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import katsdptelstate
import numpy as np
import pytest
import redis
import redis.asyncio

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


# -------------------------------------------------- finishing the file, or not at all


def _memory_state() -> TelescopeState:
    ts = TelescopeState()
    fill(ts)
    return ts


def test_writer_block_that_raises_still_finishes_the_file(tmp_path: Path) -> None:
    """As katsdptelstate's: leaving the block completes the file with the keys saved so far."""
    source = _memory_state()
    path = tmp_path / "partial.rdb"
    with pytest.raises(RuntimeError, match="stop"), RDBWriter(path) as writer:
        writer.save(source, ["small_int", "sensor_big"])
        raise RuntimeError("stop")
    assert writer.filename == path
    assert (writer.keys_written, writer.keys_failed) == (2, 0)
    ref = katsdptelstate.TelescopeState()
    assert ref.load_from_file(path) == 2  # valid: end marker (and checksum) present
    assert _contents(TelescopeState.open(path, verify_checksum=True)) == _contents(ref)
    writer.close()  # closing again does nothing
    assert path.exists()
    writer.abandon()  # ... but abandoning removes even a finished file
    assert not path.exists()


class _FailingBackend(telstate.MemoryBackend):
    """A memory backend whose reads fail after the first chunk of a save."""

    reads = 0

    def snapshot(self, keys: Any) -> Any:
        self.reads += 1
        if self.reads > 1:
            raise OSError("the disk holding the data went away")
        return super().snapshot(keys)


def test_failed_save_to_file_leaves_no_file(tmp_path: Path) -> None:
    backend = _FailingBackend()
    ts = TelescopeState(backend)
    with ts.pipeline() as batch:
        for i in range(600):  # three chunks of keys
            batch.set(f"key{i:03d}", i)
    path = tmp_path / "failed.rdb"
    with pytest.raises(OSError, match="went away"):
        ts.save_to_file(path)
    assert backend.reads == 2 and not path.exists()

    class AioFailing(telstate.aio.MemoryBackend):
        reads = 0

        async def snapshot(self, keys: Any) -> Any:
            self.reads += 1
            if self.reads > 1:
                raise OSError("the disk holding the data went away")
            return await super().snapshot(keys)

    async def main() -> int:
        aio_backend = AioFailing(telstate.MemoryBackend())
        aio_ts = telstate.aio.TelescopeState(aio_backend)
        for i in range(600):
            await aio_ts.set(f"key{i:03d}", i)
        with pytest.raises(OSError, match="went away"):
            await aio_ts.save_to_file(path)
        return aio_backend.reads

    assert asyncio.run(main()) == 2 and not path.exists()


def test_async_writer_used_as_katsdptelstate_uses_it(
    tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """``with RDBWriter(path) as w: await w.save(ts, keys)``, a sync close(), async with."""
    sync = _memory_state()
    expected = _contents(sync)

    async def main() -> list[tuple[int, int]]:
        ts = telstate.aio.TelescopeState(telstate.aio.MemoryBackend(sync.backend))
        counts = []
        with telstate.aio.RDBWriter(tmp_path / "with.rdb") as writer:
            await writer.save(ts)
        counts.append((writer.keys_written, writer.keys_failed))
        writer = telstate.aio.RDBWriter(tmp_path / "close.rdb")
        await writer.save(ts.backend, ["small_int", "no_such_key"])
        writer.close()
        counts.append((writer.keys_written, writer.keys_failed))
        # An exception in either kind of block: the file holds what was saved
        with pytest.raises(RuntimeError), telstate.aio.RDBWriter(tmp_path / "e1.rdb") as writer:
            await writer.save(ts, ["text"])
            raise RuntimeError
        with pytest.raises(RuntimeError):
            async with telstate.aio.RDBWriter(tmp_path / "e2.rdb") as writer:
                await writer.save(ts, ["text"])
                raise RuntimeError
        assert writer.filename == tmp_path / "e2.rdb"
        # A redis.asyncio client, as katsdptelstate's writer takes
        TelescopeState(RedisBackend(redis_client)).load_from_file(tmp_path / "with.rdb")
        client = redis.asyncio.Redis(unix_socket_path=redis_server.socket_path)
        async with telstate.aio.RDBWriter(tmp_path / "redis.rdb") as writer:
            await writer.save(client)
        await client.aclose()
        counts.append((writer.keys_written, writer.keys_failed))
        return counts

    assert asyncio.run(main()) == [(len(expected), 0), (1, 1), (len(expected), 0)]
    for name in ("with.rdb", "redis.rdb"):
        ref = katsdptelstate.TelescopeState()
        ref.load_from_file(tmp_path / name)
        assert _contents(ref) == expected
    assert _contents(TelescopeState.open(tmp_path / "close.rdb")) == {"small_int": b"\xff\x01"}
    for name in ("e1.rdb", "e2.rdb"):
        assert list(TelescopeState.open(tmp_path / name, verify_checksum=True).keys()) == ["text"]


def test_cancelled_async_save_still_finishes_the_file(tmp_path: Path) -> None:
    """A save cancelled while a worker thread writes: the block waits for it, then finishes."""
    sync = TelescopeState()
    with sync.pipeline() as batch:
        for i in range(2000):
            batch.set(f"key{i:04d}", np.full(64, i))
    path = tmp_path / "cancelled.rdb"

    async def main() -> int:
        ts = telstate.aio.TelescopeState(telstate.aio.MemoryBackend(sync.backend))
        with telstate.aio.RDBWriter(path) as writer:
            task = asyncio.create_task(writer.save(ts))
            for _ in range(10_000):  # until the first chunk is being written
                await asyncio.sleep(0)
                if path.stat().st_size > 1000 or task.done():
                    break
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return writer.keys_written

    written = asyncio.run(main())
    assert written > 0
    assert len(TelescopeState.open(path, verify_checksum=True).keys()) == written
