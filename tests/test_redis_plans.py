"""telstate.backends._redis_protocol: backend operations as plans, with scripted replies."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest

from telstate._errors import ImmutableKeyError, TelstateError
from telstate._keys import KeyType
from telstate._ranges import pack_timestamp, resolve_range
from telstate._redis.cluster import Each, key_slot
from telstate._redis.resp import BULK, pack
from telstate._redis.session import Script, Scripts, Targeted, Transaction
from telstate._updates import KeyUpdate, Recheck
from telstate.backends import _redis_protocol as proto
from telstate.backends._redis_protocol import Batch
from telstate.backends.base import ALL_SAMPLES, KeyStats, Write

from .test_transport_session import err


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

#: The one server of a deployment that is not a cluster: `Each` replies are keyed by it.
H = ("h", 6379)


def scan(cursor: Any, pattern: bytes) -> tuple[Any, ...]:
    return ("SCAN", cursor, "MATCH", pattern, "COUNT", proto.SCAN_COUNT)


# ------------------------------------------------------------------------ reads


def test_get_plan_found_each_type() -> None:
    found, (batch,) = drive(proto.get_plan([b"a", b"b"]), [[1, 1, b"imm"]])
    assert list(batch.commands) == [Script("get", [b"a", b"b"])]
    assert not batch.writes
    assert found == (KeyType.IMMUTABLE, b"imm", None)
    found, _ = drive(proto.get_plan([b"s"]), [[0, 2, member(12.5, b"v")]])
    assert found == (KeyType.MUTABLE, b"v", 12.5)
    found, _ = drive(proto.get_plan([b"i"]), [[0, 3, [b"f1", b"v1", b"f2", b"v2"]]])
    assert found == (KeyType.INDEXED, {b"f1": b"v1", b"f2": b"v2"}, None)


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
        [{H: [b"17", [b"sensor1", b"sensor2"]]}],
        [[b"42", []]],
        [[b"0", [b"sensor2", b"sensor3"]]],
    )
    assert sorted(result) == [b"sensor1", b"sensor2", b"sensor3"]
    assert [list(batch.commands) for batch in batches] == [
        [Each(scan(0, b"sensor*"))],  # the first page from every node (the one server here)
        [Targeted(H, scan(b"17", b"sensor*"))],  # then the next pages from that node
        [Targeted(H, scan(b"42", b"sensor*"))],
    ]
    assert not any(batch.writes for batch in batches)


def test_keys_plan_integer_cursor_ends() -> None:
    result, batches = drive(proto.keys_plan(b"*"), [{H: [0, [b"a"]]}])
    assert result == [b"a"] and len(batches) == 1


def test_keys_plan_error() -> None:
    noperm = err("NOPERM this user has no permissions to run 'scan'")
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.keys_plan(b"*"), [{H: noperm}])
    with pytest.raises(TelstateError, match="refused access"):  # on a later page
        drive(proto.keys_plan(b"*"), [{H: [b"3", [b"a"]]}], [noperm])


def test_get_range_plan() -> None:
    keys = [b"a", b"b"]
    plan = proto.get_range_plan(keys, ALL_SAMPLES)
    members = [member(1.0, b"x"), member(2.0, b"yy")]
    exec_reply = [b"none", [], b"zset", members]
    result, (batch,) = drive(plan, [exec_reply])  # a transaction's reply: EXEC's
    (transaction,) = batch.commands
    assert isinstance(transaction, Transaction)
    assert list(transaction.commands) == proto.range_commands(keys, ALL_SAMPLES)
    assert [command[0] for command in transaction.commands] == ["TYPE", "ZRANGEBYLEX"] * 2
    assert [command[1] for command in transaction.commands] == [b"a", b"a", b"b", b"b"]
    assert not batch.writes
    assert result is not None
    assert result.encoded() == [(b"x", 1.0), (b"yy", 2.0)]


def test_get_range_plan_no_key() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    assert drive(plan, [[b"none", []]])[0] is None


def test_get_range_plan_with_previous() -> None:
    query = resolve_range(5.0, 10.0, True, False)
    assert query.previous and query.scan
    plan = proto.get_range_plan([b"s"], query)
    reply = [b"zset", [member(4.0, b"p")], [member(5.0, b"a"), member(6.0, b"b")]]
    result, (batch,) = drive(plan, [reply])
    (transaction,) = batch.commands
    assert isinstance(transaction, Transaction)
    assert [command[0] for command in transaction.commands] == [
        "TYPE",
        "ZREVRANGEBYLEX",
        "ZRANGEBYLEX",
    ]
    assert result.encoded() == [(b"p", 4.0), (b"a", 5.0), (b"b", 6.0)]


def test_get_range_plan_wrong_type() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    with pytest.raises(ImmutableKeyError):
        drive(plan, [[b"string", err(WRONGTYPE)]])


def test_get_range_plan_queued_error_aborts() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    noperm = err("NOPERM this user has no permissions to run the 'zrangebylex' command")
    # the transport gives a transaction the first error met while queueing, not EXECABORT
    with pytest.raises(TelstateError, match="refused access: NOPERM"):
        drive(plan, [noperm])


def test_get_range_plan_exec_error() -> None:
    plan = proto.get_range_plan([b"a"], ALL_SAMPLES)
    with pytest.raises(TelstateError, match="EXECABORT"):
        drive(plan, [err("EXECABORT discarded")])


def test_snapshot_plan() -> None:
    result, batches = drive(
        proto.snapshot_plan([b"i", b"s", b"gone"]),
        [[0, 1, b"imm"]],
        [[0, 2, member(3.0, b"z")]],
        [[b"zset", [member(1.0, b"y"), member(3.0, b"z")]]],
        [None],
    )
    assert len(batches) == 4
    assert isinstance(batches[2].commands[0], Transaction)
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


def test_delete_clear_restore() -> None:
    _, (batch,) = drive(proto.delete_plan([b"a", b"b"]), [2])
    assert batch.writes and list(batch.commands) == [("UNLINK", b"a", b"b")]
    _, (batch,) = drive(proto.clear_plan(), [{H: b"OK"}])
    assert batch.writes and list(batch.commands) == [Each(("FLUSHDB", "ASYNC"))]
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.clear_plan(), [{H: err("NOPERM this user has no permissions")}])
    result, (batch,) = drive(
        proto.restore_plan([(b"a", b"p1"), (b"b", b"p2"), (b"c", b"p3")]),
        [b"OK", err("BUSYKEY Target key name already exists."), True],
    )
    assert batch.writes
    assert batch.commands[0] == ("RESTORE", b"a", 0, b"p1")
    assert result == [b"b"]


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
    result, (batch,) = drive(
        proto.server_info_plan(3), [{H: INFO_SERVER}, {H: INFO_MEMORY}, {H: 42}]
    )
    assert list(batch.commands) == [
        Each(("INFO", "server")),
        Each(("INFO", "memory")),
        Each(("DBSIZE",)),
    ]
    assert result == {
        "product": "Redis",
        "version": "7.2.4",
        "used_memory": "1000B",
        "db": "3",
        "keys": "42",
    }


def test_server_info_plan_valkey() -> None:
    server = b"# Server\r\nredis_version:7.2.4\r\nvalkey_version:8.0.1\r\n"
    result, _ = drive(proto.server_info_plan(0), [{H: server}, {H: b""}, {H: 0}])
    assert (result["product"], result["version"], result["used_memory"]) == ("Valkey", "8.0.1", "?")


def test_server_info_plan_refused() -> None:
    noperm = err("NOPERM this user has no permissions to run the 'info' command")
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.server_info_plan(0), [{H: noperm}, {H: noperm}, {H: 0}])


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


# ------------------------------------------------------------------------ on a cluster
#
# Real key names (no hash tags, as telstate's), whose slots are checked below: two share
# a slot, the others are each in a slot of their own.

SAME_1 = b"cb1817_target"
SAME_2 = b"cb2200_target"  # the slot of SAME_1
K1 = b"cb1_target"
K2 = b"cb2_target"
TARGET = b"target"


def test_cluster_keys_have_the_slots_the_tests_assume() -> None:
    assert key_slot(SAME_1) == key_slot(SAME_2) == 14536
    slots = [key_slot(key) for key in (SAME_1, K1, K2, TARGET)]
    assert slots == [14536, 11889, 9732, 2970]


def get(key: bytes) -> Script:
    return Script("get", [key])


def test_cluster_get_one_command_per_candidate_lowest_priority_first() -> None:
    keys = [K1, K2, TARGET]
    result, batches = drive(
        proto.get_plan(keys, cluster=True),
        [[0, 1, b"t"], None, None],  # TARGET found, K2 and K1 absent
        [0, 0],  # K1 and K2 still absent
    )
    read, recheck = batches
    assert list(read.commands) == [get(TARGET), get(K2), get(K1)]
    # the higher-priority candidates, each in a slot of its own: one EXISTS per slot
    assert list(recheck.commands) == [("EXISTS", K1), ("EXISTS", K2)]
    assert not read.writes and not recheck.writes
    assert result == (KeyType.IMMUTABLE, b"t", None)


def test_cluster_get_highest_priority_hit_wins() -> None:
    keys = [K1, K2, TARGET]
    result, batches = drive(
        proto.get_plan(keys, cluster=True),
        [[0, 2, member(5.0, b"low")], [0, 3, [b"f", b"v"]], None],
        [0],
    )
    assert result == (KeyType.INDEXED, {b"f": b"v"}, None)
    assert list(batches[1].commands) == [("EXISTS", K1)]  # only what comes before the winner


def test_cluster_get_no_recheck_when_the_winner_is_the_first_candidate() -> None:
    result, (batch,) = drive(
        proto.get_plan([K1, TARGET], cluster=True), [[0, 1, b"low"], [0, 2, member(1.0, b"hi")]]
    )
    assert list(batch.commands) == [get(TARGET), get(K1)]
    assert result == (KeyType.MUTABLE, b"hi", 1.0)


def test_cluster_get_no_recheck_when_earlier_candidates_share_the_winners_slot() -> None:
    # read after the winner on the same node: seen absent after it, nothing to check
    result, (batch,) = drive(proto.get_plan([SAME_1, SAME_2], cluster=True), [[0, 1, b"v"], None])
    assert list(batch.commands) == [get(SAME_2), get(SAME_1)]
    assert result == (KeyType.IMMUTABLE, b"v", None)


def test_cluster_get_rechecks_only_other_slots_grouped_by_slot() -> None:
    keys = [SAME_1, K1, SAME_2]
    result, (_, recheck) = drive(
        proto.get_plan(keys, cluster=True), [[0, 1, b"v"], None, None], [0]
    )
    assert list(recheck.commands) == [("EXISTS", K1)]
    assert result == (KeyType.IMMUTABLE, b"v", None)
    keys = [SAME_1, K1, SAME_2, TARGET]
    result, (read, recheck) = drive(
        proto.get_plan(keys, cluster=True), [[0, 1, b"v"], None, None, None], [0, 0]
    )
    assert list(read.commands) == [get(TARGET), get(SAME_2), get(K1), get(SAME_1)]
    assert list(recheck.commands) == [("EXISTS", SAME_1, SAME_2), ("EXISTS", K1)]
    assert result == (KeyType.IMMUTABLE, b"v", None)


def test_cluster_get_recheck_that_finds_a_key_reads_the_view_again() -> None:
    keys = [K1, K2, TARGET]
    result, batches = drive(
        proto.get_plan(keys, cluster=True),
        [[0, 1, b"t"], None, None],
        [0, 1],  # K2 appeared meanwhile
        [[0, 1, b"t"], [0, 1, b"two"], None],  # the view again
        [0],  # K1 still absent
    )
    assert [len(batch.commands) for batch in batches] == [3, 2, 3, 1]
    assert batches[2].commands == batches[0].commands
    assert list(batches[3].commands) == [("EXISTS", K1)]
    assert result == (KeyType.IMMUTABLE, b"two", None)


def test_cluster_get_absent_everywhere() -> None:
    result, batches = drive(proto.get_plan([K1, K2, TARGET], cluster=True), [None, None, None])
    assert result is None and len(batches) == 1


def test_cluster_get_single_key_is_one_script() -> None:
    result, (batch,) = drive(proto.get_plan([K1], cluster=True), [[0, 1, b"v"]])
    assert list(batch.commands) == [get(K1)]
    assert result == (KeyType.IMMUTABLE, b"v", None)


def test_cluster_get_error_of_a_lower_priority_candidate_is_ignored() -> None:
    wrongtype = err(WRONGTYPE)
    result, batches = drive(proto.get_plan([K1, TARGET], cluster=True), [wrongtype, [0, 1, b"v"]])
    assert result == (KeyType.IMMUTABLE, b"v", None) and len(batches) == 1
    # even a refusal: a single server would have answered with the first candidate
    noperm = err("NOPERM no permissions to access a key")
    result, _ = drive(proto.get_plan([K1, TARGET], cluster=True), [noperm, [0, 1, b"v"]])
    assert result == (KeyType.IMMUTABLE, b"v", None)


def test_cluster_get_error_of_the_winner_is_raised_after_the_recheck() -> None:
    wrongtype = err(WRONGTYPE)
    plan = proto.get_plan([K1, TARGET], cluster=True)
    with pytest.raises(ImmutableKeyError, match="b'target'"):
        drive(plan, [wrongtype, None], [0])
    # unless the recheck finds a candidate before it: then that one wins
    result, batches = drive(
        proto.get_plan([K1, TARGET], cluster=True),
        [wrongtype, None],
        [1],
        [wrongtype, [0, 1, b"first"]],
    )
    assert result == (KeyType.IMMUTABLE, b"first", None) and len(batches) == 3
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.get_plan([K1, TARGET], cluster=True), [[0, 1, b"v"], None], [err("NOPERM no")])


def test_cluster_get_indexed() -> None:
    keys = [K1, K2, TARGET]
    result, (read, recheck) = drive(
        proto.get_indexed_plan(keys, b"sub", cluster=True), [[0, b"low"], [0, b"v"], None], [0]
    )
    assert list(read.commands) == [
        Script("get_indexed", [key], [b"sub"]) for key in (TARGET, K2, K1)
    ]
    assert list(recheck.commands) == [("EXISTS", K1)]
    assert result == (1, b"v")
    # a hash without the sub-key still wins over lower priorities
    result, _ = drive(proto.get_indexed_plan([K1, TARGET], b"sub", cluster=True), [[0, b"v"], [0]])
    assert result == (0, None)
    result, _ = drive(proto.get_indexed_plan([K1, TARGET], b"sub", cluster=True), [None, None])
    assert result is None
    result, _ = drive(
        proto.get_indexed_plan([K1, TARGET], b"sub", cluster=True), [err(WRONGTYPE), [0, b"v"]]
    )
    assert result == (0, b"v")
    with pytest.raises(ImmutableKeyError, match="b'target'"):
        drive(proto.get_indexed_plan([K1, TARGET], b"s", cluster=True), [err(WRONGTYPE), None], [0])


def test_cluster_key_type() -> None:
    keys = [K1, K2, TARGET]
    result, (read, recheck) = drive(
        proto.key_type_plan(keys, cluster=True), [b"zset", b"hash", b"none"], [0]
    )
    assert list(read.commands) == [("TYPE", TARGET), ("TYPE", K2), ("TYPE", K1)]
    assert list(recheck.commands) == [("EXISTS", K1)]
    assert result is KeyType.INDEXED
    result, batches = drive(proto.key_type_plan(keys, cluster=True), [b"zset", b"hash", b"string"])
    assert result is KeyType.IMMUTABLE and len(batches) == 1
    assert drive(proto.key_type_plan(keys, cluster=True), [b"none"] * 3)[0] is None
    # a Redis type telstate does not use: that key wins, with no telstate type
    assert drive(proto.key_type_plan([K1, TARGET], cluster=True), [b"zset", b"list"])[0] is None
    # the error of a lower priority is not looked at
    result, _ = drive(proto.key_type_plan([K1, TARGET], cluster=True), [err("NOPERM no"), b"hash"])
    assert result is KeyType.INDEXED
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.key_type_plan([K1, TARGET], cluster=True), [b"hash", err("NOPERM no")])
    # the recheck finds K1: read again
    result, batches = drive(
        proto.key_type_plan([K1, TARGET], cluster=True),
        [b"zset", b"none"],
        [1],
        [b"zset", b"string"],
    )
    assert result is KeyType.IMMUTABLE and len(batches) == 3


def test_cluster_get_range() -> None:
    keys = [K1, TARGET]
    members = [member(1.0, b"x"), member(2.0, b"yy")]
    result, (read, recheck) = drive(
        proto.get_range_plan(keys, ALL_SAMPLES, cluster=True),
        [[b"zset", members], [b"none", []]],
        [0],
    )
    assert list(read.commands) == [
        Transaction(proto.range_commands([TARGET], ALL_SAMPLES)),
        Transaction(proto.range_commands([K1], ALL_SAMPLES)),
    ]
    assert list(recheck.commands) == [("EXISTS", K1)]
    assert result is not None and result.encoded() == [(b"x", 1.0), (b"yy", 2.0)]
    # the first candidate wins without a recheck, whatever the others say
    result, batches = drive(
        proto.get_range_plan(keys, ALL_SAMPLES, cluster=True),
        [[b"string", err(WRONGTYPE)], [b"zset", [member(3.0, b"z")]]],
    )
    assert result.encoded() == [(b"z", 3.0)] and len(batches) == 1
    assert drive(
        proto.get_range_plan(keys, ALL_SAMPLES, cluster=True), [[b"none", []], [b"none", []]]
    ) == (None, [read])


def test_cluster_get_range_winner_of_another_type_raises() -> None:
    keys = [K1, TARGET]
    with pytest.raises(ImmutableKeyError, match="target"):
        drive(
            proto.get_range_plan(keys, ALL_SAMPLES, cluster=True),
            [[b"string", err(WRONGTYPE)], [b"none", []]],
            [0],
        )
    noperm = err("NOPERM this user has no permissions to run the 'zrangebylex' command")
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.get_range_plan(keys, ALL_SAMPLES, cluster=True), [noperm, [b"none", []]])


def test_cluster_get_range_single_key_is_one_transaction() -> None:
    query = resolve_range(5.0, 10.0, True, False)
    result, (batch,) = drive(
        proto.get_range_plan([K1], query, cluster=True), [[b"zset", [], [member(6.0, b"a")]]]
    )
    assert list(batch.commands) == [Transaction(proto.range_commands([K1], query))]
    assert result.encoded() == [(b"a", 6.0)]


def test_cluster_exists_groups_keys_by_slot() -> None:
    keys = [SAME_1, K1, SAME_2]
    result, (batch,) = drive(proto.exists_plan(keys, cluster=True), [0, 1])
    assert list(batch.commands) == [("EXISTS", SAME_1, SAME_2), ("EXISTS", K1)]
    assert result is True
    assert drive(proto.exists_plan(keys, cluster=True), [0, 0])[0] is False
    _, (batch,) = drive(proto.exists_plan([K1], cluster=True), [1])
    assert list(batch.commands) == [("EXISTS", K1)]
    # without a cluster: one command, whatever the slots
    _, (batch,) = drive(proto.exists_plan(keys), [1])
    assert list(batch.commands) == [("EXISTS", SAME_1, K1, SAME_2)]
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.exists_plan(keys, cluster=True), [0, err("NOPERM no")])


def test_cluster_delete_groups_keys_by_slot() -> None:
    keys = [K1, SAME_1, TARGET, SAME_2]
    _, (batch,) = drive(proto.delete_plan(keys, cluster=True), [1, 2, 0])
    assert batch.writes
    assert list(batch.commands) == [
        ("UNLINK", K1),
        ("UNLINK", SAME_1, SAME_2),
        ("UNLINK", TARGET),
    ]
    _, (batch,) = drive(proto.delete_plan(keys), [3])
    assert list(batch.commands) == [("UNLINK", *keys)]
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.delete_plan(keys, cluster=True), [1, err("NOPERM no"), 0])


def sample(key: bytes, ts: float, value: bytes = b"v") -> Write:
    return Write(KeyType.MUTABLE, key, value, timestamp=ts)


def immutable(key: bytes, value: bytes = b"v") -> Write:
    return Write(KeyType.IMMUTABLE, key, value)


def test_cluster_write_batch_samples_to_many_slots_in_one_round() -> None:
    writes = [sample(K1, 1.0), sample(K1, 2.0), sample(K2, 1.0), sample(TARGET, 1.0)]
    writes.append(sample(K1, 3.0))
    result, (batch,) = drive(proto.write_batch_plan(writes, cluster=True), [2, 1, 1, 1])
    assert batch.writes
    assert list(batch.commands) == [
        Script("add_mutable_many", [K1], [member(1.0, b"v"), member(2.0, b"v")]),
        Script("add_mutable_many", [K2], [member(1.0, b"v")]),
        Script("add_mutable_many", [TARGET], [member(1.0, b"v")]),
        Script("add_mutable_many", [K1], [member(3.0, b"v")]),
    ]
    assert result == [None] * 5


def test_cluster_write_batch_flag_after_data_elsewhere_in_a_new_round() -> None:
    writes = [sample(K1, 1.0), sample(K2, 1.0), immutable(TARGET, b"done"), sample(K1, 2.0)]
    result, (first, second) = drive(
        proto.write_batch_plan(writes, cluster=True), [1, 1], [[b"old"], 1]
    )
    assert first.writes and second.writes
    assert list(first.commands) == [
        Script("add_mutable_many", [K1], [member(1.0, b"v")]),
        Script("add_mutable_many", [K2], [member(1.0, b"v")]),
    ]
    # the flag, then samples after it (they may go with it)
    assert list(second.commands) == [
        Script("set_immutable_many", [TARGET], [b"done"]),
        Script("add_mutable_many", [K1], [member(2.0, b"v")]),
    ]
    assert result == [None, None, b"old", None]
    # the same without a cluster: one round
    _, (batch,) = drive(proto.write_batch_plan(writes), [1, 1, [None], 1])
    assert len(batch.commands) == 4


def test_cluster_write_batch_sub_key_after_data_elsewhere_in_a_new_round() -> None:
    writes = [sample(K1, 1.0), Write(KeyType.INDEXED, K2, b"v", sub_key=b"f")]
    result, batches = drive(proto.write_batch_plan(writes, cluster=True), [1], [[None]])
    assert [len(batch.commands) for batch in batches] == [1, 1]
    assert list(batches[1].commands) == [Script("set_indexed_many", [K2], [b"f", b"v"])]
    assert result == [None, None]


def test_cluster_write_batch_flag_after_data_in_its_own_slot_in_the_same_round() -> None:
    writes = [sample(SAME_1, 1.0), immutable(SAME_2, b"done")]
    result, (batch,) = drive(proto.write_batch_plan(writes, cluster=True), [1, [None]])
    assert len(batch.commands) == 2
    assert result == [None, None]


def test_cluster_write_batch_merges_consecutive_immutables_of_one_slot() -> None:
    writes = [immutable(SAME_1, b"1"), immutable(SAME_2, b"2"), immutable(K1, b"3")]
    result, (first, second) = drive(
        proto.write_batch_plan(writes, cluster=True), [[None, b"was"]], [[err(WRONGTYPE)]]
    )
    assert list(first.commands) == [Script("set_immutable_many", [SAME_1, SAME_2], [b"1", b"2"])]
    assert list(second.commands) == [Script("set_immutable_many", [K1], [b"3"])]
    assert result[:2] == [None, b"was"]
    assert isinstance(result[2], ImmutableKeyError)
    # without a cluster: one call for all
    _, (batch,) = drive(proto.write_batch_plan(writes), [[None, None, None]])
    assert list(batch.commands) == [
        Script("set_immutable_many", [SAME_1, SAME_2, K1], [b"1", b"2", b"3"])
    ]


def test_cluster_write_batch_empty() -> None:
    assert drive(proto.write_batch_plan([], cluster=True)) == ([], [])


def test_batch_calls_on_a_cluster() -> None:
    writes = [
        immutable(SAME_1, b"1"),
        immutable(SAME_2, b"2"),
        immutable(K1, b"3"),
        immutable(K1, b"4"),
        sample(K2, 1.0),
        immutable(TARGET, b"5"),
    ]
    calls = proto.batch_calls(writes, cluster=True)
    assert calls == [
        ("set_immutable_many", [SAME_1, SAME_2], [b"1", b"2"], [0, 1]),
        ("set_immutable_many", [K1, K1], [b"3", b"4"], [2, 3]),
        ("add_mutable_many", [K2], [member(1.0, b"v")], [4]),
        ("set_immutable_many", [TARGET], [b"5"], [5]),
    ]
    assert [indices for *_, indices in proto.batch_calls(writes)] == [[0, 1, 2, 3], [4], [5]]
    # chunks still apply within a slot
    many = [immutable(SAME_1 if i % 2 else SAME_2) for i in range(proto.BATCH_CHUNK + 1)]
    calls = proto.batch_calls(many, cluster=True)
    assert [len(indices) for *_, indices in calls] == [proto.BATCH_CHUNK, 1]


def test_write_rounds() -> None:
    def call(script: str, key: bytes) -> proto.BatchCall:
        return (script, [key], [b"x"], [0])

    add, imm, idx = "add_mutable_many", "set_immutable_many", "set_indexed_many"
    calls = [
        call(add, K1),
        call(add, K2),
        call(imm, TARGET),  # after writes to other slots: a new round
        call(add, K1),
        call(idx, K1),  # after TARGET's flag: a new round
        call(add, SAME_1),
        call(imm, SAME_2),  # after K1's sub-key: a new round
        call(imm, SAME_1),  # only its own slot before it in this round
    ]
    assert proto.write_rounds(calls, cluster=False) == [calls]
    assert proto.write_rounds(calls, cluster=True) == [
        calls[0:2],
        calls[2:4],
        calls[4:6],
        calls[6:8],
    ]
    assert proto.write_rounds([], cluster=True) == []
    # a flag first: nothing before it to wait for
    assert proto.write_rounds([call(imm, K1), call(add, K2)], cluster=True) == [
        [call(imm, K1), call(add, K2)]
    ]
    # a run of samples to many slots: one round
    samples = [call(add, key) for key in (K1, K2, TARGET, SAME_1, K1)]
    assert proto.write_rounds(samples, cluster=True) == [samples]


def test_cluster_keys_over_two_nodes_with_different_numbers_of_pages() -> None:
    a, b = ("10.0.0.1", 7000), ("10.0.0.2", 7001)
    result, batches = drive(
        proto.keys_plan(b"*"),
        [{a: [b"5", [b"k1"]], b: [b"8", [b"k2"]]}],
        [[b"9", [b"k3"]], [b"0", [b"k4"]]],  # b is done after two pages
        [[0, [b"k1", b"k5"]]],  # a after three
    )
    assert sorted(result) == [b"k1", b"k2", b"k3", b"k4", b"k5"]
    assert [list(batch.commands) for batch in batches] == [
        [Each(scan(0, b"*"))],
        [Targeted(a, scan(b"5", b"*")), Targeted(b, scan(b"8", b"*"))],
        [Targeted(a, scan(b"9", b"*"))],
    ]
    # a node with nothing more after its first page is not asked again
    result, batches = drive(
        proto.keys_plan(b"*"), [{a: [b"0", []], b: [b"3", [b"x"]]}], [[b"0", [b"y"]]]
    )
    assert sorted(result) == [b"x", b"y"]
    assert list(batches[1].commands) == [Targeted(b, scan(b"3", b"*"))]
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.keys_plan(b"*"), [{a: [b"0", []], b: err("NOPERM no")}])


def test_cluster_clear_flushes_every_primary() -> None:
    a, b = ("10.0.0.1", 7000), ("10.0.0.2", 7001)
    _, (batch,) = drive(proto.clear_plan(), [{a: b"OK", b: b"OK"}])
    assert list(batch.commands) == [Each(("FLUSHDB", "ASYNC"))] and batch.writes
    with pytest.raises(TelstateError, match="refused access"):
        drive(proto.clear_plan(), [{a: b"OK", b: err("NOPERM no")}])


def test_cluster_server_info_sums_keys_and_memory_over_the_primaries() -> None:
    nodes = [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 7002)]
    server = b"# Server\r\nredis_version:7.2.4\r\nredis_mode:cluster\r\n"
    memory = [
        b"# Memory\r\nused_memory:%d\r\nused_memory_human:%dM\r\n" % (mib << 20, mib)
        for mib in (1, 2, 3)
    ]
    result, (batch,) = drive(
        proto.server_info_plan(0),
        [
            dict.fromkeys(nodes, server),
            dict(zip(nodes, memory, strict=True)),
            dict(zip(nodes, [10, 20, 12], strict=True)),
        ],
    )
    assert list(batch.commands) == [
        Each(("INFO", "server")),
        Each(("INFO", "memory")),
        Each(("DBSIZE",)),
    ]
    assert result == {
        "product": "Redis",
        "version": "7.2.4",
        "used_memory": "6.00M in 3 primaries",
        "db": "0",
        "keys": "42",
    }
    with pytest.raises(TelstateError, match="refused access"):
        drive(
            proto.server_info_plan(0),
            [
                dict.fromkeys(nodes, server),
                dict(zip(nodes, memory, strict=True)),
                {nodes[0]: 1, nodes[1]: err("NOPERM no"), nodes[2]: 3},
            ],
        )


# ------------------------------------------------------------------------ the quick lane


def test_quick_payloads_are_what_the_plans_send() -> None:
    """A driver's quick lane sends QuickCalls' bytes without the plan: the same bytes."""
    scripts = Scripts(proto.SCRIPTS)
    quick = proto.QuickCalls(scripts)
    key, value, stamp = b"odd\r\nkey $3", b"\xff\x00\r\nvalue", 1234.5
    cases = [
        (quick.get(key), proto.get_plan([key])),
        (quick.get(b""), proto.get_plan([b""])),
        (quick.add_mutable(key, value, stamp), proto.add_mutable_plan(key, value, stamp)),
        (quick.set_immutable(key, value), proto.set_immutable_plan(key, value)),
        (quick.set_immutable(key, b""), proto.set_immutable_plan(key, b"")),
    ]
    for payload, plan in cases:
        batch = next(plan)
        assert payload == pack([scripts.expand(command) for command in batch.commands])
    assert quick.get_immutable(key) == pack([("GET", key)])
    # a GET's reply means what the get script's would
    assert proto.immutable_found(b"v") == proto.parse_found([0, 1, b"v"])
    assert proto.immutable_found(None) is None
    assert quick.read(key, True) == quick.get_immutable(key)
    assert quick.read(key, False) == quick.get(key)


def test_quick_found_remembers_the_keys_found_immutable(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a quick read found, and which keys are read by GET next time."""
    known: set[bytes] = set()
    immutable = proto.parse_found([0, 1, b"v"])
    assert proto.quick_found([0, 1, b"v"], b"a", False, known) == immutable
    assert known == {b"a"}
    sensor = [1, 2, b"\x00" * 8 + b"v"]  # a sensor's latest member
    assert proto.quick_found(sensor, b"s", False, known) == proto.parse_found(sensor)
    assert proto.quick_found(None, b"gone", False, known) is None
    assert known == {b"a"}  # only immutables
    # by GET: the value, or nothing if the key went away (it stays known)
    assert proto.quick_found(b"v", b"a", True, known) == immutable
    assert proto.quick_found(None, b"a", True, known) is None
    assert known == {b"a"}
    # a full set starts again rather than growing without bound
    monkeypatch.setattr(proto, "IMMUTABLES_KEPT", 2)
    proto.quick_found([0, 1, b"v"], b"b", False, known)
    assert known == {b"a", b"b"}
    proto.quick_found([0, 1, b"v"], b"c", False, known)
    assert known == {b"c"}


def test_script_prefix_with_bulk_words_packs_like_pack() -> None:
    scripts = Scripts(proto.SCRIPTS)
    words = [b"a", b"", b"x" * 300]
    prefix = scripts.prefix("get", 2, 1)
    made = prefix + b"".join(BULK % (len(word), word) for word in words)
    assert made == pack([scripts.expand(Script("get", words[:2], words[2:]))])
