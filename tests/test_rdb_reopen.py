"""The behaviour suite's RDB backends (tests/rdb_reopen.py) really read from a file.

Writes that bypass them (straight into their memory backend) stay invisible until the next
write through them saves the state again: so every read the suite makes on ``rdb`` and
``aio-rdb`` is the opened RDB backend's answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import telstate
import telstate.aio
from telstate import ImmutableKeyError, KeyType
from telstate.aio.rdb import RdbBackend as AioRdbBackend
from telstate.backends.rdb import RdbBackend

from .rdb_reopen import AioReopenedRdbBackend, ReopenedRdbBackend, empty_rdb


def test_empty_rdb_is_a_valid_file_without_keys() -> None:
    backend = RdbBackend(empty_rdb(), verify_checksum=True)
    assert backend.keys(b"*") == []
    assert backend.get([b"x"]) is None


def test_reads_come_from_the_reopened_file(tmp_path: Path) -> None:
    backend = ReopenedRdbBackend(tmp_path)
    ts = telstate.TelescopeState(backend)
    assert ts.keys() == []  # an empty state is a file without keys
    assert backend.saves == 1
    ts["x"] = 1
    ts.add("s", 2.0, ts=2.0)
    assert ts["x"] == 1
    assert ts.get_range("s", st=0) == [(2.0, 2.0)]
    assert backend.saves == 2  # one save for both writes, one for both reads
    opened = backend.opened()
    assert isinstance(opened, RdbBackend)
    assert Path(opened.name).parent == tmp_path
    assert sorted(opened.index.entries) == [b"s", b"x"]
    # Data the file lacks is not seen, however the memory backend changes ...
    backend.memory.set_immutable(b"hidden", telstate.encode_value(3))
    assert "hidden" not in ts
    assert ts.keys() == ["s", "x"]
    # ... until a write through the backend makes the next read save anew.
    ts.set_indexed("idx", "a", 1)
    assert ts.keys() == ["hidden", "idx", "s", "x"]
    assert ts.key_type("idx") == KeyType.INDEXED
    assert backend.saves == 3
    assert backend.opened().name != opened.name  # a new file: the old one is still mapped
    backend.close()


def test_write_errors_are_the_memory_backends(tmp_path: Path) -> None:
    backend = ReopenedRdbBackend(tmp_path)
    ts = telstate.TelescopeState(backend)
    ts["x"] = 1
    assert ts["x"] == 1
    with pytest.raises(ImmutableKeyError, match="'x'") as refused:
        ts["x"] = 2
    assert "read-only" not in str(refused.value)
    assert ts["x"] == 1
    backend.close()


def test_aio_reads_come_from_the_reopened_file(tmp_path: Path) -> None:
    async def main() -> None:
        backend = AioReopenedRdbBackend(tmp_path)
        ts = telstate.aio.TelescopeState(backend)
        assert await ts.keys() == []
        await ts.set("x", 1)
        await ts.add("s", 2.0, ts=2.0)
        assert await ts.get("x") == 1
        assert await ts.get_range("s", st=0) == [(2.0, 2.0)]
        assert backend.saves == 2
        opened = await backend.opened()
        assert isinstance(opened, AioRdbBackend)
        assert opened.sync.name == "bytes"  # opened from the file's bytes
        await backend.memory.set_immutable(b"hidden", telstate.encode_value(3))
        assert not await ts.exists("hidden")
        with pytest.raises(ImmutableKeyError, match="'x'"):
            await ts.set("x", 2)
        assert await ts.keys() == ["hidden", "s", "x"]
        assert backend.saves == 3
        await backend.__aexit__(None, None, None)

    asyncio.run(main())
