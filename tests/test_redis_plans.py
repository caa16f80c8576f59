"""telstate.backends._redis_protocol: backend operations as plans, with scripted replies."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest

from telstate._errors import ImmutableKeyError, TelstateError
from telstate._keys import KeyType
from telstate._ranges import pack_timestamp, resolve_range
from telstate._redis.resp import Reader, ReplyError
from telstate._redis.session import Script
from telstate._updates import KeyUpdate, Recheck
from telstate.backends import _redis_protocol as proto
from telstate.backends._redis_protocol import Batch
from telstate.backends.base import ALL_SAMPLES, KeyStats, Write


def err(text: str) -> Any:
    reader = Reader()
    reader.feed(b"-" + text.encode() + b"\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError)
    return error


def drive(plan: Generator[Batch, list[Any], Any], *replies: list[Any]) -> tuple[Any, list[Batch]]:
    """Run `plan`, answering its batches with `replies` in order (all must be used)."""
    batches: list[Batch] = []
    pending = list(replies)
    value: Any = None
    while True:
        try:
            batch = plan.send(value)
        except StopIteration as stop:
            assert not pending, f"{len(pending)} replies left over"
            return stop.value, batches
        assert isinstance(batch, Batch)
        batches.append(batch)
        assert pending, f"unexpected batch {batch.commands}"
        value = pending.pop(0)
        assert len(value) == len(batch.commands), (value, batch.commands)


def member(ts: float, value: bytes) -> bytes:
    return pack_timestamp(ts) + value


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


# ------------------------------------------------------------------------ reads


def test_get_plan_found_each_type() -> None:
    found, (batch,) = drive(proto.get_plan([b"a", b"b"]), [[1, 1, b"imm"]])
    assert list(batch.commands) == [Script("get", [b"a", b"b"])]
    assert not batch.writes
    assert found == (1, KeyType.IMMUTABLE, b"imm", None)
    found, _ = drive(proto.get_plan([b"s"]), [[0, 2, member(12.5, b"v")]])
    assert found == (0, KeyType.MUTABLE, b"v", 12.5)
    found, _ = drive(proto.get_plan([b"i"]), [[0, 3, [b"f1", b"v1", b"f2", b"v2"]]])
    assert found == (0, KeyType.INDEXED, {b"f1": b"v1", b"f2": b"v2"}, None)


def test_get_plan_absent() -> None:
    assert drive(proto.get_plan([b"a"]), [None])[0] is None


def test_get_plan_errors() -> None:
    with pytest.raises(ImmutableKeyError, match="b'a'"):
        drive(proto.get_plan([b"a", b"b"]), [err(WRONGTYPE)])
    with pytest.raises(TelstateError, match="refused access: NOPERM"):
        drive(proto.get_plan([b"a"]), [err("NOPERM this user has no permissions")])
    with pytest.raises(TelstateError, match="answered: ERR boom"):
        drive(proto.get_plan([b"a"]), [err("ERR boom")])


def test_get_indexed_plan() -> None:
    result, (batch,) = drive(proto.get_indexed_plan([b"a", b"b"], b"sub"), [[1, b"v"]])
    assert list(batch.commands) == [Script("get_indexed", [b"a", b"b"], [b"sub"])]
    assert result == (1, b"v")
    assert drive(proto.get_indexed_plan([b"a"], b"sub"), [[0, None]])[0] == (0, None)
    assert drive(proto.get_indexed_plan([b"a"], b"sub"), [None])[0] is None


def test_key_type_plan() -> None:
    result, (batch,) = drive(proto.key_type_plan([b"a", b"b", b"c"]), [b"none", b"zset", b"hash"])
    assert list(batch.commands) == [("TYPE", b"a"), ("TYPE", b"b"), ("TYPE", b"c")]
    assert result is KeyType.MUTABLE
    assert drive(proto.key_type_plan([b"a"]), [b"string"])[0] is KeyType.IMMUTABLE
    assert drive(proto.key_type_plan([b"a", b"b"]), [b"none", b"none"])[0] is None
    with pytest.raises(TelstateError):
        drive(proto.key_type_plan([b"a"]), [err("NOPERM no")])


def test_exists_plan() -> None:
    result, (batch,) = drive(proto.exists_plan([b"a", b"b"]), [1])
    assert list(batch.commands) == [("EXISTS", b"a", b"b")]
    assert result is True
    assert drive(proto.exists_plan([b"a"]), [0])[0] is False


def test_keys_plan_over_several_scan_pages() -> None:
    result, batches = drive(
        proto.keys_plan(b"sensor*"),
        [[b"17", [b"sensor1", b"sensor2"]]],
        [[b"42", []]],
        [[b"0", [b"sensor2", b"sensor3"]]],
    )
    assert sorted(result) == [b"sensor1", b"sensor2", b"sensor3"]
    cursors = [batch.commands[0][1] for batch in batches]
    assert cursors == [b"0", b"17", b"42"]
    for batch in batches:
        (command,) = batch.commands
        assert list(command) == ["SCAN", command[1], "MATCH", b"sensor*", "COUNT", proto.SCAN_COUNT]
        assert not batch.writes


def test_keys_plan_integer_cursor_ends() -> None:
    result, batches = drive(proto.keys_plan(b"*"), [[0, [b"a"]]])
    assert result == [b"a"] and len(batches) == 1


def test_keys_plan_error() -> None:
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.keys_plan(b"*"), [err("NOPERM this user has no permissions to run 'scan'")])


def test_get_range_plan() -> None:
    keys = [b"a", b"b"]
    plan = proto.get_range_plan(keys, ALL_SAMPLES)
    members = [member(1.0, b"x"), member(2.0, b"yy")]
    exec_reply = [b"none", [], b"zset", members]
    result, (batch,) = drive(plan, [b"OK", b"QUEUED", b"QUEUED", b"QUEUED", b"QUEUED", exec_reply])
    commands = list(batch.commands)
    assert commands[0] == ("MULTI",) and commands[-1] == ("EXEC",)
    assert [command[0] for command in commands[1:-1]] == ["TYPE", "ZRANGEBYLEX"] * 2
    assert result is not None
    assert result.encoded() == [(b"x", 1.0), (b"yy", 2.0)]


def test_get_range_plan_no_key() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    assert drive(plan, [b"OK", b"QUEUED", b"QUEUED", [b"none", []]])[0] is None


def test_get_range_plan_with_previous() -> None:
    query = resolve_range(5.0, 10.0, True, False)
    assert query.previous and query.scan
    plan = proto.get_range_plan([b"s"], query)
    reply = [b"zset", [member(4.0, b"p")], [member(5.0, b"a"), member(6.0, b"b")]]
    result, (batch,) = drive(plan, [b"OK", b"QUEUED", b"QUEUED", b"QUEUED", reply])
    assert [command[0] for command in batch.commands] == [
        "MULTI",
        "TYPE",
        "ZREVRANGEBYLEX",
        "ZRANGEBYLEX",
        "EXEC",
    ]
    assert result.encoded() == [(b"p", 4.0), (b"a", 5.0), (b"b", 6.0)]


def test_get_range_plan_wrong_type() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    with pytest.raises(ImmutableKeyError):
        drive(plan, [b"OK", b"QUEUED", b"QUEUED", [b"string", err(WRONGTYPE)]])


def test_get_range_plan_queued_error_aborts() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    noperm = err("NOPERM this user has no permissions to run the 'zrangebylex' command")
    execabort = err("EXECABORT Transaction discarded because of previous errors.")
    with pytest.raises(TelstateError, match="refused access: NOPERM"):
        drive(plan, [b"OK", b"QUEUED", noperm, execabort])


def test_get_range_plan_exec_error() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    with pytest.raises(TelstateError, match="EXECABORT"):
        drive(plan, [b"OK", b"QUEUED", b"QUEUED", err("EXECABORT discarded")])


def test_snapshot_plan() -> None:
    result, batches = drive(
        proto.snapshot_plan([b"i", b"s", b"gone"]),
        [[0, 1, b"imm"]],
        [[0, 2, member(3.0, b"z")]],
        [b"OK", b"QUEUED", b"QUEUED", [b"zset", [member(1.0, b"y"), member(3.0, b"z")]]],
        [None],
    )
    assert len(batches) == 4
    assert result[0] == (KeyType.IMMUTABLE, b"imm")
    assert result[1][0] is KeyType.MUTABLE
    assert result[1][1].encoded() == [(b"y", 1.0), (b"z", 3.0)]
    assert result[2] is None


def test_dumps_plan() -> None:
    result, (batch,) = drive(proto.dumps_plan([b"a", b"b"]), [b"\x00dump", None])
    assert list(batch.commands) == [("DUMP", b"a"), ("DUMP", b"b")]
    assert result == [b"\x00dump", None]


# ------------------------------------------------------------------------ writes


def test_single_write_plans() -> None:
    result, (batch,) = drive(proto.set_immutable_plan(b"k", b"v"), [None])
    assert batch.writes and list(batch.commands) == [Script("set_immutable", [b"k"], [b"v"])]
    assert result is None
    assert drive(proto.set_immutable_plan(b"k", b"v"), [b"old"])[0] == b"old"
    with pytest.raises(ImmutableKeyError):
        drive(proto.set_immutable_plan(b"k", b"v"), [err(WRONGTYPE)])
    _, (batch,) = drive(proto.add_mutable_plan(b"s", b"v", 2.0), [1])
    assert batch.writes
    assert list(batch.commands) == [Script("add_mutable", [b"s"], [member(2.0, b"v")])]
    result, (batch,) = drive(proto.set_indexed_plan(b"i", b"f", b"v"), [None])
    assert batch.writes and list(batch.commands) == [Script("set_indexed", [b"i"], [b"f", b"v"])]
    assert result is None


def test_write_batch_plan_groups_and_parses() -> None:
    writes = [
        Write(KeyType.IMMUTABLE, b"a", b"1"),
        Write(KeyType.IMMUTABLE, b"b", b"2"),
        Write(KeyType.MUTABLE, b"s", b"x", timestamp=1.0),
        Write(KeyType.MUTABLE, b"s", b"y", timestamp=2.0),
        Write(KeyType.INDEXED, b"i", b"v", sub_key=b"f"),
        Write(KeyType.IMMUTABLE, b"c", b"3"),
    ]
    result, (batch,) = drive(
        proto.write_batch_plan(writes),
        [[None, b"other"], 2, [None], [err(WRONGTYPE)]],
    )
    assert batch.writes
    assert list(batch.commands) == [
        Script("set_immutable_many", [b"a", b"b"], [b"1", b"2"]),
        Script("add_mutable_many", [b"s"], [member(1.0, b"x"), member(2.0, b"y")]),
        Script("set_indexed_many", [b"i"], [b"f", b"v"]),
        Script("set_immutable_many", [b"c"], [b"3"]),
    ]
    assert result[:5] == [None, b"other", None, None, None]
    assert isinstance(result[5], ImmutableKeyError)


def test_write_batch_plan_whole_call_wrongtype() -> None:
    writes = [Write(KeyType.MUTABLE, b"s", b"x", timestamp=1.0)]
    result, _ = drive(proto.write_batch_plan(writes), [err(WRONGTYPE)])
    assert isinstance(result[0], ImmutableKeyError)
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.write_batch_plan(writes), [err("NOPERM may not publish")])


def test_delete_clear_restore_ping() -> None:
    _, (batch,) = drive(proto.delete_plan([b"a", b"b"]), [2])
    assert batch.writes and list(batch.commands) == [("UNLINK", b"a", b"b")]
    _, (batch,) = drive(proto.clear_plan(), [b"OK"])
    assert batch.writes and list(batch.commands) == [("FLUSHDB", "ASYNC")]
    result, (batch,) = drive(
        proto.restore_plan([(b"a", b"p1"), (b"b", b"p2"), (b"c", b"p3")]),
        [b"OK", err("BUSYKEY Target key name already exists."), True],
    )
    assert batch.writes
    assert batch.commands[0] == ("RESTORE", b"a", 0, b"p1")
    assert result == [b"b"]
    _, (batch,) = drive(proto.ping_plan(), [b"PONG"])
    assert list(batch.commands) == [("PING",)]
    with pytest.raises(TelstateError):
        drive(proto.ping_plan(), [err("NOAUTH Authentication required.")])


# ------------------------------------------------------------------------ stats


def test_stats_plan() -> None:
    keys = [b"imm", b"sensor", b"idx", b"gone", b"list"]
    first = [b"string", 60, b"zset", 200, b"hash", 120, b"none", None, b"list", 80]
    second = [
        *(5, b"PONG", b"PONG"),
        *(2, [member(1.5, b"a")], [member(9.5, b"b")]),
        *(3, b"PONG", b"PONG"),
        *(b"PONG", b"PONG", b"PONG"),
        *(b"PONG", b"PONG", b"PONG"),
    ]
    result, (batch1, batch2) = drive(proto.stats_plan(keys), first, second)
    assert list(batch1.commands)[:2] == [("TYPE", b"imm"), ("MEMORY", "USAGE", b"imm")]
    assert list(batch2.commands)[:6] == [
        ("STRLEN", b"imm"),
        ("PING",),
        ("PING",),
        ("ZCARD", b"sensor"),
        ("ZRANGE", b"sensor", 0, 0),
        ("ZRANGE", b"sensor", -1, -1),
    ]
    assert result == [
        KeyStats(KeyType.IMMUTABLE, 1, 60),
        KeyStats(KeyType.MUTABLE, 2, 200, 1.5, 9.5),
        KeyStats(KeyType.INDEXED, 3, 120),
        None,
        None,
    ]


def test_stats_plan_without_memory_usage() -> None:
    unknown = err("ERR unknown command 'MEMORY'")
    result, _ = drive(
        proto.stats_plan([b"imm", b"sensor"]),
        [b"string", unknown, b"zset", unknown],
        [7, b"PONG", b"PONG", 0, [], []],
    )
    assert result == [
        KeyStats(KeyType.IMMUTABLE, 1, 7),  # the string's length
        KeyStats(KeyType.MUTABLE, 0, 0, None, None),
    ]


def test_stats_plan_type_refused() -> None:
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.stats_plan([b"a"]), [err("NOPERM no"), 1])


# ------------------------------------------------------------------------ updates


def test_update_plan_with_type_byte_needs_no_batch() -> None:
    types: dict[bytes, KeyType | None] = {}
    result, batches = drive(proto.update_plan(b"k", b"\x01value", types))
    assert batches == []
    assert result == KeyUpdate(b"k", KeyType.IMMUTABLE, b"value")
    result, batches = drive(proto.update_plan(b"i", b"\x033\nsubvalue", types))
    assert batches == []
    assert result == KeyUpdate(b"i", KeyType.INDEXED, b"value", sub_key=b"sub")
    result, batches = drive(proto.update_plan(b"k", b"\xff\x81\xa1a\x01", types))
    assert batches == [] and result.key_type is KeyType.IMMUTABLE
    assert types == {}


def test_update_plan_asks_for_the_type_once() -> None:
    types: dict[bytes, KeyType | None] = {}
    payload = member(3.0, b"v")
    result, (batch,) = drive(proto.update_plan(b"s", payload, types), [b"zset"])
    assert list(batch.commands) == [("TYPE", b"s")]
    assert result == KeyUpdate(b"s", KeyType.MUTABLE, b"v", timestamp=3.0)
    assert types == {b"s": KeyType.MUTABLE}
    result, batches = drive(proto.update_plan(b"s", member(4.0, b"w"), types))
    assert batches == []
    assert result == KeyUpdate(b"s", KeyType.MUTABLE, b"w", timestamp=4.0)


def test_update_plan_key_gone_or_malformed() -> None:
    types: dict[bytes, KeyType | None] = {}
    result, _ = drive(proto.update_plan(b"s", member(3.0, b"v"), types), [b"none"])
    assert result == Recheck()
    assert types == {b"s": None}
    result, _ = drive(proto.update_plan(b"s", b"short", {b"s": KeyType.MUTABLE}))
    assert result == Recheck()
    result, _ = drive(proto.update_plan(b"i", b"\x03x\nbad", {}))
    assert result == Recheck()


def test_needs_type() -> None:
    assert not proto.needs_type(b"\x01v")
    assert not proto.needs_type(b"\x02" + member(1.0, b"v"))
    assert not proto.needs_type(b"\x03")
    assert not proto.needs_type(b"\xff")
    assert proto.needs_type(member(1.0, b"v"))
    assert proto.needs_type(b"\x80\x04pickle")
    assert proto.needs_type(b"")


# ------------------------------------------------------------------------ server info


INFO_SERVER = b"# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\nos:Linux\r\n\r\n"
INFO_MEMORY = b"# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\n"


def test_parse_info() -> None:
    fields = proto.parse_info(INFO_SERVER + b"# Other\r\nweird line\r\nempty:\r\n a : b \r\n")
    assert fields["redis_version"] == "7.2.4"
    assert fields["os"] == "Linux"
    assert fields["empty"] == ""
    assert fields["a"] == "b"
    assert "# Server" not in fields and "weird line" not in fields
    assert proto.parse_info(b"") == {}
    assert proto.parse_info(b"bad:\xff\r\n") == {"bad": "\ufffd"}


def test_server_info_plan() -> None:
    result, (batch,) = drive(proto.server_info_plan(3), [INFO_SERVER, INFO_MEMORY, 42])
    assert list(batch.commands) == [("INFO", "server"), ("INFO", "memory"), ("DBSIZE",)]
    assert result == {
        "product": "Redis",
        "version": "7.2.4",
        "used_memory": "1000B",
        "db": "3",
        "keys": "42",
    }


def test_server_info_plan_valkey() -> None:
    server = b"# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n"
    result, _ = drive(proto.server_info_plan(0), [server, b"", 0])
    assert (result["product"], result["version"], result["used_memory"]) == ("Valkey", "8.0.1", "?")


def test_server_info_plan_refused() -> None:
    noperm = err("NOPERM this user has no permissions to run the 'info' command")
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.server_info_plan(0), [noperm, noperm, 0])


# ------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("reply", "expected"),
    [(b"OK", True), (True, True), (b"ERR", False), (False, False), (None, False)],
)
def test_restored(reply: Any, expected: bool) -> None:
    assert proto.restored(reply) is expected


def test_batch_calls_chunking() -> None:
    writes: Sequence[Write] = [
        Write(KeyType.MUTABLE, b"s", b"v", timestamp=float(i)) for i in range(proto.BATCH_CHUNK + 1)
    ]
    calls = proto.batch_calls(writes)
    assert [len(indices) for _, _, _, indices in calls] == [proto.BATCH_CHUNK, 1]
    # samples of different keys do not share a call
    calls = proto.batch_calls(
        [
            Write(KeyType.MUTABLE, b"s1", b"v", timestamp=1.0),
            Write(KeyType.MUTABLE, b"s2", b"v", timestamp=1.0),
        ]
    )
    assert [keys for _, keys, _, _ in calls] == [[b"s1"], [b"s2"]]
