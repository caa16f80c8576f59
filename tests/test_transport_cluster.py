"""telstate._redis.cluster and the cluster side of telstate._redis.session (no I/O).

:class:`FakeCluster` runs a plan like a driver would: it answers each ``Parallel`` with
one reply list (or :class:`~telstate._redis.rules.Failure`) per exchange, throws a
Failure into the plan for a plain ``Exchange``, and records every round trip as a
"send" with the commands each node got (read back from the RESP payload), whether it was
a ``Parallel`` (two nodes or more) or an ``Exchange`` (one node, a refresh, a script
load).  Time is virtual, as in tests/test_transport_session.py: it moves only when the
plan pauses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

import telstate
from telstate._redis import rules, session
from telstate._redis.cluster import (
    SLOTS,
    Each,
    SlotMap,
    command_key,
    crc16,
    key_slot,
    redirection,
    slot_groups,
)
from telstate._redis.config import Address, parse_url
from telstate._redis.errors import RedisConnectionError, RedisUnconfirmedWriteError
from telstate._redis.session import (
    Exchange,
    Node,
    Parallel,
    Pause,
    Script,
    Scripts,
    Targeted,
    Topology,
    Transaction,
    call,
    first_contact,
    refresh_slots,
)

from .test_transport_session import SCRIPT_TEXTS, FakeTime, commands, err

# ------------------------------------------------------------------------ cluster.py


def test_crc16_known_values() -> None:
    assert crc16(b"123456789") == 0x31C3  # the XMODEM check value
    assert crc16(b"") == 0
    assert crc16(b"A") == 0x58E5


def test_key_slot_as_redis_documents_it() -> None:
    assert key_slot(b"foo") == 12182
    assert key_slot(b"123456789") == 0x31C3
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    assert key_slot(b"{user1000}.followers") == key_slot(b"user1000")
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")  # the first tag only
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")  # up to the first }
    assert key_slot(b"bar{zap") == crc16(b"bar{zap") % SLOTS  # no closing brace
    # an empty tag is ignored: the whole key is hashed
    assert key_slot(b"foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")
    assert key_slot(b"") == 0
    assert all(0 <= key_slot(b"key%d" % i) < SLOTS for i in range(1000))


def test_each_is_a_value() -> None:
    assert Each(("DBSIZE",)) == Each(("DBSIZE",))
    assert Each(("DBSIZE",)) != Each(("FLUSHDB",))
    with pytest.raises(AttributeError):
        Each(("DBSIZE",)).command = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("words", "key"),
    [
        (("GET", b"k"), b"k"),
        ((b"get", b"k"), b"k"),
        (("type", "text"), b"text"),
        (("EXISTS", b"a", b"b"), b"a"),
        (("UNLINK", b"a", b"b"), b"a"),
        (("RESTORE", b"k", 0, b"payload"), b"k"),
        (("ZRANGEBYLEX", b"s", b"-", b"+"), b"s"),
        (("ZREVRANGEBYLEX", b"s", b"+", b"-", "LIMIT", 0, 1), b"s"),
        (("MEMORY", "USAGE", b"k"), b"k"),
        (("EVALSHA", "abc", 2, b"k1", b"k2", b"arg"), b"k1"),
        (("EVAL", "return 1", 1, b"k"), b"k"),
        (("EVALSHA", "abc", 0, b"arg"), None),
        (("EVALSHA", "abc", 0), None),
        (("MEMORY", "USAGE"), None),
        (("GET",), None),
        (("PING",), None),
        (("SCAN", 0, "MATCH", b"*"), None),
        (("CLUSTER", "SLOTS"), None),
        (("FLUSHDB", "ASYNC"), None),
        (("WAIT", 1, 1000), None),
    ],
)
def test_command_key(words: Sequence[Any], key: bytes | None) -> None:
    assert command_key(words) == key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MOVED 3999 127.0.0.1:6381", ("MOVED", 3999, ("127.0.0.1", 6381))),
        ("ASK 3999 127.0.0.1:6381", ("ASK", 3999, ("127.0.0.1", 6381))),
        ("MOVED 0 node-2.example:7001", ("MOVED", 0, ("node-2.example", 7001))),
        ("MOVED 16383 [::1]:7000", ("MOVED", 16383, ("::1", 7000))),
        ("MOVED 16383 ::1:7000", ("MOVED", 16383, ("::1", 7000))),
        ("MOVED 12 :7000", ("MOVED", 12, ("", 7000))),  # unknown endpoint: same host
        ("ERR something else", None),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", None),
        ("MOVED abc host:1", None),
        ("MOVED 12 host", None),
        ("MOVED", None),
        ("ASKING", None),
    ],
)
def test_redirection(text: str, expected: Any) -> None:
    assert redirection(err(text)) == expected


N1, N2, N3 = ("n1", 7000), ("n2", 7001), ("n3", 7002)
R1, R3 = ("r1", 7100), ("r3", 7102)


def slots_reply(third: Address = N3, *, replica: bool = True) -> list[Any]:
    """CLUSTER SLOTS of a cluster of three primaries (the third at `third`)."""
    first: list[Any] = [0, 5460, [b"n1", 7000, b"id1"]]
    if replica:
        first.append([b"r1", 7100, b"idr1"])
    return [
        first,
        [5461, 10922, [b"n2", 7001, b"id2"]],
        [10923, 16383, [str(third[0]).encode(), third[1], b"id3"]],
    ]


def test_slot_map_from_cluster_slots() -> None:
    slots = SlotMap(slots_reply())
    assert slots.primaries == [N1, N2, N3]
    assert slots.replicas == {N1: [R1], N2: [], N3: []}
    assert slots.owner[0] == slots.owner[5460] == N1
    assert slots.owner[5461] == slots.owner[10922] == N2
    assert slots.owner[10923] == slots.owner[16383] == N3
    assert slots.complete
    assert slots.nodes() == [N1, N2, N3, R1]  # primaries first
    assert slots.node_for(b"foo") == N3  # slot 12182
    assert slots.node_for(b"bar") == N1  # slot 5061
    assert slots.node_for(b"c") == N2  # slot 7365


def test_slot_map_details() -> None:
    # several ranges of one primary; hosts as str, ports as bytes; primaries sorted
    reply = [
        [0, 99, ["z", b"1", "id"], ["zr", b"2", "idr"]],
        [100, 16283, ["a", 5, "id"]],
        [16284, 16383, ["z", 1, "id"], ["zr", 2, "idr"]],
    ]
    slots = SlotMap(reply)
    assert slots.primaries == [("a", 5), ("z", 1)]
    assert slots.owner[0] == slots.owner[16383] == ("z", 1)
    assert slots.replicas[("z", 1)] == [("zr", 2)]
    assert slots.complete
    # a gap: not complete
    partial = SlotMap([[0, 100, [b"n1", 7000]], [200, 16383, [b"n2", 7001]]])
    assert not partial.complete
    assert partial.owner[150] is None
    assert not SlotMap([]).complete and SlotMap([]).primaries == []


def test_slot_map_moved() -> None:
    slots = SlotMap(slots_reply())
    slots.moved(12182, N2)  # a known primary: only that slot changes
    assert slots.owner[12182] == N2
    assert slots.owner[12181] == slots.owner[12183] == N3
    assert slots.primaries == [N1, N2, N3]
    slots.moved(12182, ("n0", 7009))  # a node not known yet: a primary now
    assert slots.owner[12182] == ("n0", 7009)
    assert slots.primaries == [("n0", 7009), N1, N2, N3]
    assert slots.nodes()[:4] == slots.primaries
    assert slots.complete


def test_slot_groups() -> None:
    same_1, same_2 = b"cb1817_target", b"cb2200_target"
    assert key_slot(same_1) == key_slot(same_2)
    keys = [same_1, b"foo", same_2, b"bar", b"{foo}x"]
    assert slot_groups(keys) == [[0, 2], [1, 4], [3]]
    assert slot_groups([b"a"]) == [[0]]
    assert slot_groups([]) == []


# ------------------------------------------------------------------------ a fake cluster


class Runaway(Exception):
    """A plan that went on and on (an unbounded loop)."""


#: (node address, commands of one exchange) -> replies, or a Failure for the exchange
Handler = Callable[[Address, list[list[bytes]]], Any]


def sha(text: str) -> bytes:
    return hashlib.sha1(text.encode()).hexdigest().encode()


def basic(address: Address, command: list[bytes]) -> Any:
    """What a healthy node answers: GET says where it ran, CLUSTER SLOTS the usual map."""
    host = str(address[0]).encode()
    name = command[0].upper()
    if name == b"PING":
        return b"PONG"
    if name in (b"GET", b"TYPE"):
        return command[1] + b"@" + host
    if name == b"EVALSHA":
        return [host, *command[3 : 3 + int(command[2])]]
    if name in (b"DBSIZE", b"WAIT"):
        return 1 if name == b"WAIT" else int(address[1])
    if name in (b"ASKING", b"FLUSHDB", b"MULTI"):
        return b"OK"
    if name == b"SCAN":
        return [b"0", [b"scanned@" + host]]
    if name == b"CLUSTER":
        return slots_reply()
    if name == b"SCRIPT":
        return sha(command[2].decode())
    if name == b"CONFIG":
        return [b"cluster-node-timeout", b"5000"]
    raise AssertionError(f"unexpected command {command}")


#: Error replies a node gives while queueing a transaction's command (then EXEC aborts)
QUEUE_TIME = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "NOPERM", "ERR")


def serve(
    address: Address,
    sent: list[list[bytes]],
    answer: Callable[[Address, list[bytes]], Any] = basic,
) -> list[Any]:
    """Replies to one exchange's commands; MULTI ... EXEC as Redis runs it (commands run
    at EXEC, but a redirection or a refusal is the reply to the command being queued,
    and EXEC then aborts)."""
    replies: list[Any] = []
    results: list[Any] | None = None  # what EXEC will answer
    aborted = False
    for command in sent:
        name = command[0].upper()
        if name == b"MULTI":
            results, aborted = [], False
            replies.append(b"OK")
        elif name == b"EXEC":
            assert results is not None
            aborted_reply = err("EXECABORT Transaction discarded because of previous errors.")
            replies.append(aborted_reply if aborted else results)
            results = None
        elif results is not None:
            reply = answer(address, command)
            if isinstance(reply, BaseException) and str(reply).startswith(QUEUE_TIME):
                aborted = True
                replies.append(reply)
            else:
                results.append(reply)  # run-time errors too (WRONGTYPE...)
                replies.append(b"QUEUED")
        else:
            replies.append(answer(address, command))
    return replies


def answering(answer: Callable[[Address, list[bytes]], Any]) -> Handler:
    return lambda address, sent: serve(address, sent, answer)


class FakeCluster:
    """Runs a plan against `handler`, recording each effect with its commands."""

    def __init__(self, clock: FakeTime, handler: Handler = serve) -> None:
        self.clock = clock
        self.handler = handler
        #: ("send", {address: commands}) for an Exchange or a Parallel, ("pause", seconds)
        self.effects: list[tuple[Any, ...]] = []

    def exchange(self, exchange: Exchange) -> list[Any] | rules.Failure:
        assert not exchange.node.sentinel
        sent = commands(exchange.payload)
        assert len(sent) == exchange.count
        result = self.handler(exchange.node.address, sent)
        if not isinstance(result, rules.Failure):
            assert len(result) == exchange.count
        return result  # type: ignore[no-any-return]

    def run(self, plan: Generator[Any, Any, Any]) -> Any:
        value: Any = None
        while True:
            try:
                effect = plan.throw(value) if isinstance(value, rules.Failure) else plan.send(value)
            except StopIteration as stop:
                return stop.value
            if len(self.effects) > 500:
                raise Runaway(f"{len(self.effects)} effects and counting")
            if isinstance(effect, Pause):
                assert effect.seconds > 0
                self.effects.append(("pause", effect.seconds))
                self.clock.now += effect.seconds
                value = None
            elif isinstance(effect, Parallel):
                sent = {ex.node.address: commands(ex.payload) for ex in effect.exchanges}
                assert len(sent) == len(effect.exchanges) > 1, "one exchange per node"
                self.effects.append(("send", sent))
                value = [self.exchange(ex) for ex in effect.exchanges]
            else:
                assert isinstance(effect, Exchange)
                self.effects.append(("send", {effect.node.address: commands(effect.payload)}))
                value = self.exchange(effect)

    @property
    def kinds(self) -> list[str]:
        """ "send" (a round trip, with one node or several in parallel) or "pause"."""
        return [effect[0] for effect in self.effects]

    @property
    def sends(self) -> list[dict[Address, list[list[bytes]]]]:
        """What each round trip sent to each node."""
        return [effect[1] for effect in self.effects if effect[0] == "send"]

    @property
    def pauses(self) -> list[float]:
        return [effect[1] for effect in self.effects if effect[0] == "pause"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(session, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


URL = "redis://n1:7000,n2:7001,n3:7002"
WHERE = "redis://n1:7000,n2:7001,n3:7002/0 (cluster of 3 primaries)"
SCRIPTS = Scripts(SCRIPT_TEXTS)
GET_SHA = SCRIPTS.shas["get"].encode()
CLUSTER_SLOTS = [[b"CLUSTER", b"SLOTS"]]
SCRIPT_LOAD = [[b"SCRIPT", b"LOAD", text.encode()] for text in SCRIPT_TEXTS.values()]


def cluster_topology(url: str = URL, **options: Any) -> Topology:
    topology = Topology(parse_url(url, **options))
    topology.set_cluster(SlotMap(slots_reply()))
    return topology


def run_call(
    cluster: FakeCluster, topology: Topology, batch: Sequence[Any], **options: Any
) -> list[Any]:
    return cluster.run(call(topology, SCRIPTS, batch, **options))  # type: ignore[no-any-return]


# Keys and their slots' nodes in slots_reply(): bar (5061), b (3300) on n1; c (7365),
# z (8157) on n2; foo (12182), a (15495), d (11298) on n3.


def test_the_keys_are_where_the_tests_assume() -> None:
    slots = SlotMap(slots_reply())
    owners = {key: slots.node_for(key) for key in (b"bar", b"b", b"c", b"z", b"foo", b"a", b"d")}
    assert owners == {b"bar": N1, b"b": N1, b"c": N2, b"z": N2, b"foo": N3, b"a": N3, b"d": N3}


def test_topology_of_a_cluster() -> None:
    topology = Topology(parse_url(URL))
    assert topology.config.kind == "cluster" and topology.cluster is None
    topology.set_cluster(SlotMap(slots_reply()))
    assert topology.cluster is not None
    assert topology.primary == Node(N1)  # a seed that is a primary: kept
    assert topology.describe() == WHERE
    topology = Topology(parse_url("redis://r1:7100"))  # a replica as the seed
    topology.set_cluster(SlotMap(slots_reply()))
    assert topology.primary == Node(N1)  # keyless commands and pub/sub: a primary
    assert "(cluster of 3 primaries)" in topology.describe()


def test_learn_node_timeout() -> None:
    topology = cluster_topology()
    assert topology.window() == 5.0
    topology.learn_node_timeout({N1: [b"cluster-node-timeout", b"4000"]})
    assert topology.down_after == 10.0 and topology.window() == 15.0
    topology.learn_node_timeout({N1: err("NOPERM no"), N2: [b"cluster-node-timeout", b"2000"]})
    assert topology.down_after == 5.0
    topology.learn_node_timeout({N1: err("NOPERM no")})
    assert topology.down_after == 37.5  # redis-server's default, 15 s


# ------------------------------------------------------------------------ routing


def test_keyed_commands_and_scripts_go_to_the_owner_of_their_slot(clock: FakeTime) -> None:
    cluster = FakeCluster(clock)
    replies = run_call(
        cluster,
        cluster_topology(),
        [
            ("GET", b"foo"),
            ("GET", b"bar"),
            Script("get", [b"c"]),
            ("PING",),  # no key: the first primary
            Script("get", [b"a"], [b"arg"]),
        ],
    )
    assert replies == [b"foo@n3", b"bar@n1", [b"n2", b"c"], b"PONG", [b"n3", b"a"]]
    (sent,) = cluster.sends
    assert sent == {
        N3: [[b"GET", b"foo"], [b"EVALSHA", GET_SHA, b"1", b"a", b"arg"]],
        N1: [[b"GET", b"bar"], [b"PING"]],
        N2: [[b"EVALSHA", GET_SHA, b"1", b"c"]],
    }
    assert cluster.kinds == ["send"]


def test_each_node_keeps_the_order_of_its_commands(clock: FakeTime) -> None:
    cluster = FakeCluster(clock)
    batch = [("GET", key) for key in (b"a", b"b", b"c", b"foo", b"bar", b"z", b"d")]
    replies = run_call(cluster, cluster_topology(), batch)
    assert replies == [b"a@n3", b"b@n1", b"c@n2", b"foo@n3", b"bar@n1", b"z@n2", b"d@n3"]
    (sent,) = cluster.sends
    assert sent == {
        N3: [[b"GET", b"a"], [b"GET", b"foo"], [b"GET", b"d"]],
        N1: [[b"GET", b"b"], [b"GET", b"bar"]],
        N2: [[b"GET", b"c"], [b"GET", b"z"]],
    }
    assert list(sent) == [N3, N1, N2]  # nodes in the order of their first command


def test_each_goes_to_every_primary_and_comes_back_as_a_dict(clock: FakeTime) -> None:
    cluster = FakeCluster(clock)
    batch = [("GET", b"foo"), Each(("DBSIZE",)), Each(("SCAN", 0))]
    replies = run_call(cluster, cluster_topology(), batch)
    assert replies == [
        b"foo@n3",
        {N1: 7000, N2: 7001, N3: 7002},
        {N1: [b"0", [b"scanned@n1"]], N2: [b"0", [b"scanned@n2"]], N3: [b"0", [b"scanned@n3"]]},
    ]
    (sent,) = cluster.sends
    assert sent[N3] == [[b"GET", b"foo"], [b"DBSIZE"], [b"SCAN", b"0"]]
    assert sent[N1] == sent[N2] == [[b"DBSIZE"], [b"SCAN", b"0"]]


def test_targeted_goes_to_its_node(clock: FakeTime) -> None:
    cluster = FakeCluster(clock)
    batch = [Targeted(N2, ("SCAN", b"5")), ("GET", b"c"), Targeted(R1, ("PING",))]
    replies = run_call(cluster, cluster_topology(), batch)
    assert replies == [[b"0", [b"scanned@n2"]], b"c@n2", b"PONG"]
    (sent,) = cluster.sends
    assert sent == {N2: [[b"SCAN", b"5"], [b"GET", b"c"]], R1: [[b"PING"]]}


def test_a_transaction_collapses_to_execs_reply(clock: FakeTime) -> None:
    cluster = FakeCluster(clock)
    transaction = Transaction([("TYPE", b"foo"), ("GET", b"foo")])
    replies = run_call(cluster, cluster_topology(), [transaction, ("GET", b"bar")])
    assert replies == [[b"foo@n3", b"foo@n3"], b"bar@n1"]
    (sent,) = cluster.sends
    assert sent[N3] == [[b"MULTI"], [b"TYPE", b"foo"], [b"GET", b"foo"], [b"EXEC"]]


def test_a_transactions_queueing_error_is_its_reply(clock: FakeTime) -> None:
    unknown = err("ERR unknown command 'FOO'")
    execabort = err("EXECABORT Transaction discarded because of previous errors.")

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if sent[0] == [b"MULTI"]:
            return [b"OK", b"QUEUED", unknown, execabort]
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    transaction = Transaction([("TYPE", b"foo"), ("FOO", b"foo")])
    assert run_call(cluster, cluster_topology(), [transaction]) == [unknown]
    assert cluster.kinds == ["send"]


def test_commands_own_errors_come_back_in_place(clock: FakeTime) -> None:
    wrongtype = err("WRONGTYPE Operation against a key holding the wrong kind of value")

    def answer(address: Address, command: list[bytes]) -> Any:
        return wrongtype if command == [b"GET", b"foo"] else basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    replies = run_call(cluster, cluster_topology(), [("GET", b"foo"), ("GET", b"a")])
    assert replies == [wrongtype, b"a@n3"]
    assert cluster.kinds == ["send"]


# ------------------------------------------------------------------------ redirections


def redirected(text: str, owner: Address = N3, key: bytes = b"foo") -> Handler:
    """`owner` no longer serves `key` (it answers `text`, a MOVED or ASK, every time)."""

    def answer(address: Address, command: list[bytes]) -> Any:
        if address == owner and key in command[1:]:
            return err(text)
        return basic(address, command)

    return answering(answer)


def test_moved_updates_the_map_and_resends_at_once(clock: FakeTime) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, redirected("MOVED 12182 n2:7001"))
    replies = run_call(cluster, topology, [("GET", b"foo"), ("GET", b"a"), ("GET", b"bar")])
    assert replies == [b"foo@n2", b"a@n3", b"bar@n1"]
    assert cluster.sends == [
        {N3: [[b"GET", b"foo"], [b"GET", b"a"]], N1: [[b"GET", b"bar"]]},
        {N2: [[b"GET", b"foo"]]},  # at once (no pause, no refresh), and only what moved
    ]
    assert topology.cluster is not None
    assert topology.cluster.owner[12182] == N2
    assert topology.cluster.owner[12181] == topology.cluster.owner[12183] == N3
    # the next call goes straight to the new owner
    cluster = FakeCluster(clock, redirected("MOVED 12182 n2:7001"))
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"d")]) == [b"foo@n2", b"d@n3"]
    assert cluster.sends == [{N2: [[b"GET", b"foo"]], N3: [[b"GET", b"d"]]}]


def test_moved_for_a_single_command(clock: FakeTime) -> None:
    """The one-command fast path hands a redirection over to the general path."""
    topology = cluster_topology()
    cluster = FakeCluster(clock, redirected("MOVED 12182 n2:7001"))
    assert run_call(cluster, topology, [("GET", b"foo")]) == [b"foo@n2"]
    assert cluster.sends[-1] == {N2: [[b"GET", b"foo"]]}
    assert all(sent == {N3: [[b"GET", b"foo"]]} for sent in cluster.sends[:-1])
    assert cluster.pauses == []
    assert topology.cluster is not None and topology.cluster.owner[12182] == N2
    cluster = FakeCluster(clock, redirected("MOVED 12182 n2:7001"))
    assert run_call(cluster, topology, [("GET", b"foo")]) == [b"foo@n2"]
    assert cluster.sends == [{N2: [[b"GET", b"foo"]]}]  # one round trip, to the new owner


def test_moved_to_an_unnamed_host_means_the_same_host(clock: FakeTime) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, redirected("MOVED 12182 :7005"))
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")]) == [
        b"foo@n3",
        b"bar@n1",
    ]
    assert cluster.sends[1] == {("n3", 7005): [[b"GET", b"foo"]]}
    assert topology.cluster is not None and topology.cluster.owner[12182] == ("n3", 7005)


def test_moved_script_and_transaction(clock: FakeTime) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, redirected("MOVED 12182 n1:7000"))
    batch = [Script("get", [b"foo"]), Transaction([("TYPE", b"foo")]), ("GET", b"c")]
    assert run_call(cluster, topology, batch) == [[b"n1", b"foo"], [b"foo@n1"], b"c@n2"]
    assert cluster.sends[1] == {
        N1: [[b"EVALSHA", GET_SHA, b"1", b"foo"], [b"MULTI"], [b"TYPE", b"foo"], [b"EXEC"]]
    }


def test_ask_resends_once_after_asking_without_changing_the_map(clock: FakeTime) -> None:
    topology = cluster_topology()
    ask = redirected("ASK 12182 n2:7001")

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == N2 and [b"GET", b"foo"] in sent:  # the slot is only being imported
            index = sent.index([b"GET", b"foo"])
            assert index > 0 and sent[index - 1] == [b"ASKING"]
        return ask(address, sent)

    cluster = FakeCluster(clock, handler)
    replies = run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")])
    assert replies == [b"foo@n2", b"bar@n1"]
    assert cluster.sends == [
        {N3: [[b"GET", b"foo"]], N1: [[b"GET", b"bar"]]},
        {N2: [[b"ASKING"], [b"GET", b"foo"]]},
    ]
    assert topology.cluster is not None and topology.cluster.owner[12182] == N3  # unchanged
    # the next call asks the owner again, and is sent on again
    cluster = FakeCluster(clock, handler)
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"c")]) == [b"foo@n2", b"c@n2"]
    assert cluster.sends == [
        {N3: [[b"GET", b"foo"]], N2: [[b"GET", b"c"]]},
        {N2: [[b"ASKING"], [b"GET", b"foo"]]},
    ]
    # a single command too
    cluster = FakeCluster(clock, handler)
    assert run_call(cluster, topology, [("GET", b"foo")]) == [b"foo@n2"]
    assert cluster.sends[-1] == {N2: [[b"ASKING"], [b"GET", b"foo"]]}


def test_ask_for_a_transaction(clock: FakeTime) -> None:
    cluster = FakeCluster(clock, redirected("ASK 12182 n2:7001"))
    batch = [Transaction([("GET", b"foo"), ("TYPE", b"foo")]), ("GET", b"bar")]
    replies = run_call(cluster, cluster_topology(), batch)
    assert replies == [[b"foo@n2", b"foo@n2"], b"bar@n1"]
    assert cluster.sends[1] == {
        N2: [[b"ASKING"], [b"MULTI"], [b"GET", b"foo"], [b"TYPE", b"foo"], [b"EXEC"]]
    }


def test_ask_then_moved(clock: FakeTime) -> None:
    """A MOVED after an ASK ends the ASK: no ASKING any more."""
    topology = cluster_topology()
    ask = redirected("ASK 12182 n2:7001")
    moved = redirected("MOVED 12182 n1:7000", owner=N2)
    cluster = FakeCluster(clock, lambda a, sent: (ask if a == N3 else moved)(a, sent))
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"c")]) == [b"foo@n1", b"c@n2"]
    assert cluster.sends == [
        {N3: [[b"GET", b"foo"]], N2: [[b"GET", b"c"]]},
        {N2: [[b"ASKING"], [b"GET", b"foo"]]},
        {N1: [[b"GET", b"foo"]]},
    ]
    assert topology.cluster is not None and topology.cluster.owner[12182] == N1


def test_a_batch_whose_slots_all_moved_is_answered(clock: FakeTime) -> None:
    """After a resharding: 20 keys of n3's slots, each answered MOVED once (to n2)."""
    topology = cluster_topology()
    assert topology.cluster is not None
    keys = [b"key%d" % i for i in range(200) if topology.cluster.node_for(b"key%d" % i) == N3]
    keys = keys[:20]
    assert len(keys) == 20

    def answer(address: Address, command: list[bytes]) -> Any:
        if address == N3 and command[0] == b"GET":
            return err(f"MOVED {key_slot(command[1])} n2:7001")
        return basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    replies = run_call(cluster, topology, [("GET", key) for key in keys])
    assert replies == [key + b"@n2" for key in keys]


def test_too_many_redirections_pause_and_refresh_the_map(clock: FakeTime) -> None:
    """Two nodes sending a key to each other (each with a stale view) until the map is
    fetched again: after MAX_REDIRECTIONS the call pauses and refreshes instead."""
    topology = cluster_topology()
    state = {"refreshed": False}

    def answer(address: Address, command: list[bytes]) -> Any:
        if command == [b"CLUSTER", b"SLOTS"]:
            state["refreshed"] = True
            return slots_reply()
        if command == [b"GET", b"foo"] and not state["refreshed"]:
            return err("MOVED 12182 n2:7001" if address == N3 else "MOVED 12182 n3:7002")
        return basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    replies = run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")])
    assert replies == [b"foo@n3", b"bar@n1"]
    assert len(cluster.sends) == session.MAX_REDIRECTIONS + 3  # + the refresh and the last
    assert cluster.kinds[-3:] == ["pause", "send", "send"]
    assert cluster.sends[-2] == {N1: CLUSTER_SLOTS}
    assert cluster.sends[-1] == {N3: [[b"GET", b"foo"]]}


# ------------------------------------------------------------------------ failures


def fails_once(failure: Any, owner: Address = N3, key: bytes = b"foo") -> Handler:
    """`owner`'s first exchange meets `failure` (a Failure, or an error reply for `key`)."""
    state = {"done": False}

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == owner and not state["done"] and sent != CLUSTER_SLOTS:
            state["done"] = True
            if isinstance(failure, rules.Failure):
                return failure
            return serve(address, sent, lambda a, c: failure if c == [b"GET", key] else basic(a, c))
        return serve(address, sent)

    return handler


@pytest.mark.parametrize(
    "failure",
    [
        rules.Unreachable("connection refused"),
        rules.Dropped("connection lost"),
        err("TRYAGAIN Multiple keys request during rehashing of slot"),
        err("CLUSTERDOWN The cluster is down"),
        err("LOADING Redis is loading the dataset in memory"),
        err("READONLY You can't write against a read only replica."),
        err("MASTERDOWN Link with MASTER is down"),
    ],
)
def test_failure_pauses_refreshes_the_map_and_resends_what_failed(
    clock: FakeTime, failure: Any
) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, fails_once(failure))
    batch = [("GET", b"foo"), ("GET", b"bar"), ("GET", b"a")]
    assert run_call(cluster, topology, batch) == [b"foo@n3", b"bar@n1", b"a@n3"]
    assert cluster.kinds == ["send", "pause", "send", "send"]
    assert cluster.pauses == [pytest.approx(0.05)]
    first, refresh, again = cluster.sends
    assert first == {N3: [[b"GET", b"foo"], [b"GET", b"a"]], N1: [[b"GET", b"bar"]]}
    assert refresh == {N1: CLUSTER_SLOTS}  # the first node known
    if isinstance(failure, rules.Failure):  # the whole exchange failed
        assert again == {N3: [[b"GET", b"foo"], [b"GET", b"a"]]}
    else:  # only the command answered with the error
        assert again == {N3: [[b"GET", b"foo"]]}


def test_failure_of_a_single_command(clock: FakeTime) -> None:
    """The one-command fast path: a failure is handled by the general path, which sends
    again at once (writes are idempotent), then pauses."""
    state = {"left": 2}

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == N3 and state["left"]:
            state["left"] -= 1
            return rules.Dropped("connection lost")
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    assert run_call(cluster, cluster_topology(), [("GET", b"foo")]) == [b"foo@n3"]
    get = {N3: [[b"GET", b"foo"]]}
    assert cluster.effects == [
        ("send", get),
        ("send", get),
        ("pause", pytest.approx(0.05)),
        ("send", {N1: CLUSTER_SLOTS}),
        ("send", get),
    ]


def test_resend_after_a_failover_goes_to_the_new_owner(clock: FakeTime) -> None:
    topology = cluster_topology()

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == N3:
            return rules.Unreachable("connection refused")
        if sent == CLUSTER_SLOTS:
            return [slots_reply(third=R3)]  # r3 took over n3's slots
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")]) == [
        b"foo@r3",
        b"bar@n1",
    ]
    assert cluster.sends[1:] == [{N1: CLUSTER_SLOTS}, {R3: [[b"GET", b"foo"]]}]
    assert topology.cluster is not None and topology.cluster.primaries == [N1, N2, R3]


def test_failures_until_the_window_closes(clock: FakeTime) -> None:
    topology = cluster_topology()  # retry_window 5 s

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        return rules.Unreachable("connection refused") if address == N3 else serve(address, sent)

    cluster = FakeCluster(clock, handler)
    start = clock.now
    with pytest.raises(RedisConnectionError) as info:
        run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")])
    assert str(info.value) == f"cannot reach redis server at {WHERE}: connection refused"
    assert cluster.pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.45])
    assert clock.now - start == pytest.approx(5.0)
    # n1 answered the first time and was never sent its command again
    assert sum([b"GET", b"bar"] in sent.get(N1, []) for sent in cluster.sends) == 1
    assert sum(sent == {N3: [[b"GET", b"foo"]]} for sent in cluster.sends) == 9


def test_deadline_gives_a_timeout(clock: FakeTime) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, lambda address, sent: rules.Dropped("connection lost"))
    deadline = clock.now + 0.3
    with pytest.raises(telstate.TimeoutError, match="gave up at the deadline") as info:
        cluster.run(call(topology, SCRIPTS, [("GET", b"foo")], deadline=deadline))
    assert WHERE in str(info.value)
    assert clock.now == pytest.approx(deadline)


def test_refresh_failure_during_a_retry_is_not_fatal(clock: FakeTime) -> None:
    """The slot map cannot be fetched at the retry: the old one is used."""
    topology = cluster_topology()
    cluster = FakeCluster(clock, fails_once(rules.Dropped("connection lost")))
    refresh = cluster.handler

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        return rules.Dropped("connection lost") if sent == CLUSTER_SLOTS else refresh(address, sent)

    cluster.handler = handler
    assert run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")]) == [
        b"foo@n3",
        b"bar@n1",
    ]
    assert cluster.sends[1:] == [
        {N1: CLUSTER_SLOTS},  # every node known fails...
        {N2: CLUSTER_SLOTS},
        {N3: CLUSTER_SLOTS},
        {R1: CLUSTER_SLOTS},
        {N3: [[b"GET", b"foo"]]},  # ...and the command is sent again all the same
    ]
    assert topology.cluster is not None and topology.cluster.owner[12182] == N3


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (rules.Refused("refused the credentials: WRONGPASS invalid"), "refused the credentials"),
        (rules.TlsRefused("certificate verify failed"), "TLS connection"),
        (err("NOPERM this user has no permissions to run the 'get' command"), "refused access"),
        (err("NOAUTH Authentication required."), "refused access: NOAUTH"),
    ],
)
def test_refusal_fails_at_once(clock: FakeTime, failure: Any, message: str) -> None:
    cluster = FakeCluster(clock, fails_once(failure))
    with pytest.raises(RedisConnectionError, match=message) as info:
        run_call(cluster, cluster_topology(), [("GET", b"foo"), ("GET", b"bar")])
    assert WHERE in str(info.value)
    assert cluster.kinds == ["send"]


def test_refusal_of_a_single_command_fails_without_pausing(clock: FakeTime) -> None:
    noperm = err("NOPERM this user has no permissions to run the 'get' command")
    cluster = FakeCluster(clock, lambda address, sent: [noperm])
    with pytest.raises(RedisConnectionError, match="refused access: NOPERM"):
        run_call(cluster, cluster_topology(), [("GET", b"foo")])
    assert cluster.pauses == []


@pytest.mark.parametrize(
    "failure",
    [
        rules.Unreachable("connection refused"),
        err("TRYAGAIN Multiple keys request during rehashing of slot"),
        err("CLUSTERDOWN The cluster is down"),
    ],
)
def test_no_retry_fails_at_the_first_problem(clock: FakeTime, failure: Any) -> None:
    cluster = FakeCluster(clock, fails_once(failure))
    with pytest.raises(RedisConnectionError):
        run_call(cluster, cluster_topology(), [("GET", b"foo"), ("GET", b"bar")], retry=False)
    assert cluster.kinds == ["send"]


def test_no_retry_still_follows_redirections(clock: FakeTime) -> None:
    cluster = FakeCluster(clock, redirected("MOVED 12182 n2:7001"))
    replies = run_call(cluster, cluster_topology(), [("GET", b"foo"), ("GET", b"bar")], retry=False)
    assert replies == [b"foo@n2", b"bar@n1"]
    assert cluster.pauses == []


def test_each_piece_that_failed_is_resent_to_its_node(clock: FakeTime) -> None:
    cluster = FakeCluster(clock, fails_once(rules.Dropped("connection lost"), owner=N2))
    replies = run_call(cluster, cluster_topology(), [Each(("DBSIZE",))])
    assert replies == [{N1: 7000, N2: 7001, N3: 7002}]
    assert cluster.sends[1:] == [{N1: CLUSTER_SLOTS}, {N2: [[b"DBSIZE"]]}]


def test_each_after_a_failover_goes_to_the_new_primary(clock: FakeTime) -> None:
    topology = cluster_topology()

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == N3:
            return rules.Unreachable("connection refused")
        if sent == CLUSTER_SLOTS:
            return [slots_reply(third=R3)]
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    replies = run_call(cluster, topology, [Each(("FLUSHDB", "ASYNC"))], writes=True)
    assert replies == [{N1: b"OK", N2: b"OK", R3: b"OK"}]


# ------------------------------------------------------------------------ scripts


def test_noscript_loads_the_scripts_on_that_node_and_resends(clock: FakeTime) -> None:
    state = {"loaded": False}

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == N2:
            if sent == SCRIPT_LOAD:
                state["loaded"] = True
            elif not state["loaded"]:
                return serve(
                    address,
                    sent,
                    lambda a, c: (
                        err("NOSCRIPT No matching script.") if c[0] == b"EVALSHA" else basic(a, c)
                    ),
                )
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    batch = [Script("get", [b"c"]), ("GET", b"z"), Script("get", [b"foo"])]
    replies = run_call(cluster, cluster_topology(), batch)
    assert replies == [[b"n2", b"c"], b"z@n2", [b"n3", b"foo"]]
    assert cluster.sends == [
        {
            N2: [[b"EVALSHA", GET_SHA, b"1", b"c"], [b"GET", b"z"]],
            N3: [[b"EVALSHA", GET_SHA, b"1", b"foo"]],
        },
        {N2: SCRIPT_LOAD},  # on that node only
        {N2: [[b"EVALSHA", GET_SHA, b"1", b"c"]]},  # and only what met NOSCRIPT
    ]
    assert cluster.pauses == []


def test_a_node_that_keeps_forgetting_the_scripts_is_retried_as_failing(clock: FakeTime) -> None:
    def answer(address: Address, command: list[bytes]) -> Any:
        if command[0] == b"EVALSHA":
            return err("NOSCRIPT No matching script.")
        return basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    with pytest.raises(RedisConnectionError, match="NOSCRIPT"):
        run_call(cluster, cluster_topology(), [Script("get", [b"foo"])])
    assert sum(cluster.pauses) == pytest.approx(5.0)


def test_refused_script_load_fails_with_a_connection_error(clock: FakeTime) -> None:
    noperm = err("NOPERM this user has no permissions to run the 'script|load' command")

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if sent == SCRIPT_LOAD:
            return [noperm] * len(sent)
        return [err("NOSCRIPT No matching script.")]

    cluster = FakeCluster(clock, handler)
    with pytest.raises(RedisConnectionError, match="refused access: NOPERM"):
        run_call(cluster, cluster_topology(), [Script("get", [b"foo"])])


def test_connection_lost_during_script_load_is_retried(clock: FakeTime) -> None:
    state = {"loads": 0}

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if sent == SCRIPT_LOAD:
            state["loads"] += 1
            if state["loads"] == 1:
                return rules.Dropped("connection lost")
            return serve(address, sent)
        if state["loads"] < 2 and sent[0][0] == b"EVALSHA":
            return [err("NOSCRIPT No matching script.")]
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    assert run_call(cluster, cluster_topology(), [Script("get", [b"foo"])]) == [[b"n3", b"foo"]]


# ------------------------------------------------------------------------ min_replicas


def wait(count: int = 1) -> list[bytes]:
    return [b"WAIT", b"%d" % count, b"%d" % session.WAIT_MS]


def test_wait_per_node_for_writes_only(clock: FakeTime) -> None:
    topology = cluster_topology(min_replicas=1)
    cluster = FakeCluster(clock)
    batch = [("GET", b"foo"), ("GET", b"bar"), ("GET", b"a")]
    assert run_call(cluster, topology, batch, writes=True) == [b"foo@n3", b"bar@n1", b"a@n3"]
    assert cluster.sends == [
        {
            N3: [[b"GET", b"foo"], [b"GET", b"a"], wait()],
            N1: [[b"GET", b"bar"], wait()],
        }
    ]
    cluster = FakeCluster(clock)
    run_call(cluster, topology, batch)  # reads never wait
    assert all(wait() not in sent for sent in cluster.sends[0].values())
    cluster = FakeCluster(clock)
    run_call(cluster, cluster_topology(), batch, writes=True)  # nor without min_replicas
    assert all(wait() not in sent for sent in cluster.sends[0].values())


def short_wait(times: int, node: Address = N3) -> Handler:
    state = {"left": times}

    def answer(address: Address, command: list[bytes]) -> Any:
        if command[0] == b"WAIT" and address == node and state["left"]:
            state["left"] -= 1
            return 0
        return basic(address, command)

    return answering(answer)


def test_short_wait_resends_that_nodes_writes(clock: FakeTime) -> None:
    topology = cluster_topology(min_replicas=1)
    cluster = FakeCluster(clock, short_wait(1))
    batch = [("GET", b"foo"), ("GET", b"bar")]
    assert run_call(cluster, topology, batch, writes=True) == [b"foo@n3", b"bar@n1"]
    assert cluster.kinds == ["send", "pause", "send", "send"]
    assert cluster.sends[1:] == [{N1: CLUSTER_SLOTS}, {N3: [[b"GET", b"foo"], wait()]}]


def test_short_wait_until_the_window_closes(clock: FakeTime) -> None:
    topology = cluster_topology(min_replicas=1, retry_window=2.0)
    cluster = FakeCluster(clock, short_wait(1000))
    with pytest.raises(RedisUnconfirmedWriteError) as info:
        run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")], writes=True)
    assert "n3:7002: only 0 of the 1 replicas" in str(info.value)
    assert WHERE in str(info.value)
    assert sum(cluster.pauses) == pytest.approx(2.0)


def test_wait_error_reply_is_retried(clock: FakeTime) -> None:
    state = {"left": 1}

    def answer(address: Address, command: list[bytes]) -> Any:
        if command[0] == b"WAIT" and address == N3 and state["left"]:
            state["left"] -= 1
            return err("LOADING Redis is loading")
        return basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    topology = cluster_topology(min_replicas=1)
    batch = [("GET", b"foo"), ("GET", b"bar")]
    assert run_call(cluster, topology, batch, writes=True) == [b"foo@n3", b"bar@n1"]
    assert len(cluster.pauses) == 1
    assert cluster.sends[-1] == {N3: [[b"GET", b"foo"], wait()]}


def test_short_wait_of_a_single_command(clock: FakeTime) -> None:
    """The one-command fast path: a short WAIT goes to the general path (sent again at
    once), which pauses if it is short again."""
    topology = cluster_topology(min_replicas=1)
    cluster = FakeCluster(clock, short_wait(2))
    assert run_call(cluster, topology, [("GET", b"foo")], writes=True) == [b"foo@n3"]
    write = {N3: [[b"GET", b"foo"], wait()]}
    assert cluster.effects == [
        ("send", write),
        ("send", write),
        ("pause", pytest.approx(0.05)),
        ("send", {N1: CLUSTER_SLOTS}),
        ("send", write),
    ]


def test_short_wait_without_retry_fails_at_once(clock: FakeTime) -> None:
    cluster = FakeCluster(clock, short_wait(1))
    topology = cluster_topology(min_replicas=1)
    with pytest.raises(RedisUnconfirmedWriteError):
        run_call(cluster, topology, [("GET", b"foo"), ("GET", b"bar")], writes=True, retry=False)
    assert cluster.kinds == ["send"]


def test_wait_refused_fails_with_a_connection_error(clock: FakeTime) -> None:
    noperm = err("NOPERM this user has no permissions to run the 'wait' command")

    def answer(address: Address, command: list[bytes]) -> Any:
        return noperm if command[0] == b"WAIT" else basic(address, command)

    cluster = FakeCluster(clock, answering(answer))
    with pytest.raises(RedisConnectionError, match="refused access"):
        run_call(cluster, cluster_topology(min_replicas=1), [("GET", b"foo")], writes=True)
    assert cluster.pauses == []


# ------------------------------------------------------------------------ refresh_slots


def test_refresh_asks_known_nodes_then_seeds(clock: FakeTime) -> None:
    topology = cluster_topology("redis://n1:7000,s1:7010,s2:7011")
    asked: list[Address] = []
    partial = [[0, 100, [b"n1", 7000, b"id1"]]]

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        assert sent == CLUSTER_SLOTS
        asked.append(address)
        if address in (N1, N2, R1):
            return rules.Unreachable("connection refused")
        if address == N3:
            return [partial]  # slots not all covered: ask on
        if address == ("s1", 7010):
            return [[]]  # an empty reply: not a map
        return [slots_reply(third=R3)]

    cluster = FakeCluster(clock, handler)
    cluster.run(refresh_slots(topology))
    assert asked == [N1, N2, N3, R1, ("s1", 7010), ("s2", 7011)]  # n1 is not asked twice
    assert topology.cluster is not None and topology.cluster.primaries == [N1, N2, R3]
    assert cluster.pauses == []


def test_refresh_takes_an_incomplete_map_from_the_last_node(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://s1:7010,s2:7011"))  # no map yet: the seeds
    partial = [[0, 100, [b"n1", 7000, b"id1"]]]
    cluster = FakeCluster(clock, lambda address, sent: [partial])
    cluster.run(refresh_slots(topology))
    assert cluster.sends == [{("s1", 7010): CLUSTER_SLOTS}, {("s2", 7011): CLUSTER_SLOTS}]
    assert topology.cluster is not None and not topology.cluster.complete
    assert topology.cluster.primaries == [N1]
    assert topology.primary == Node(N1)


def test_refresh_fails_when_no_node_answers(clock: FakeTime) -> None:
    topology = cluster_topology()
    cluster = FakeCluster(clock, lambda address, sent: rules.Unreachable("connection refused"))
    with pytest.raises(rules.NoPrimary, match="no cluster node could say") as info:
        cluster.run(refresh_slots(topology))
    assert "n1:7000: connection refused" in str(info.value)
    assert "r1:7100: connection refused" in str(info.value)
    assert len(cluster.effects) == 4


def test_refresh_refused_fails_at_once(clock: FakeTime) -> None:
    cluster = FakeCluster(clock, lambda address, sent: rules.Refused("refused the credentials"))
    with pytest.raises(rules.Refused):
        cluster.run(refresh_slots(cluster_topology()))
    assert len(cluster.effects) == 1


def test_refresh_says_why_each_node_could_not_tell(clock: FakeTime) -> None:
    disabled = err("ERR This instance has cluster support disabled")
    topology = Topology(parse_url("redis://s1:7010,s2:7011"))
    cluster = FakeCluster(clock, lambda address, sent: [disabled])
    with pytest.raises(RedisConnectionError) as info:
        cluster.run(first_contact(topology, SCRIPTS))
    text = str(info.value)
    assert "s2:7011" in text and "cluster support disabled" in text


# ------------------------------------------------------------------------ first contact


def test_first_contact_finds_a_cluster_from_the_ping(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://n2:7001"))
    assert topology.config.kind == "server"
    cluster = FakeCluster(clock)
    cluster.run(first_contact(topology, SCRIPTS))
    assert cluster.effects[0] == ("send", {N2: [[b"PING"], [b"CLUSTER", b"SLOTS"]]})
    assert topology.cluster is not None and topology.cluster.primaries == [N1, N2, N3]
    assert topology.primary == Node(N2)  # the seed, a primary
    # then the node timeout, from every primary
    config_get = [[b"CONFIG", b"GET", b"cluster-node-timeout"]]
    assert cluster.sends[1:] == [dict.fromkeys([N1, N2, N3], config_get)]
    assert topology.down_after == 12.5 and topology.window() == 17.5
    assert cluster.pauses == []


def test_first_contact_with_a_single_server(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://h:6379"))
    disabled = err("ERR This instance has cluster support disabled")
    cluster = FakeCluster(clock, lambda address, sent: [b"PONG", disabled])
    cluster.run(first_contact(topology, SCRIPTS))
    assert topology.cluster is None
    assert topology.primary == Node(("h", 6379))
    assert len(cluster.effects) == 1 and topology.down_after == 0.0
    # an empty map (not a cluster either)
    topology = Topology(parse_url("redis://h:6379"))
    FakeCluster(clock, lambda address, sent: [b"PONG", []]).run(first_contact(topology, SCRIPTS))
    assert topology.cluster is None


@pytest.mark.parametrize(
    "failure",
    [
        rules.Refused("refused the credentials: WRONGPASS invalid"),
        rules.Unreachable("connection refused"),
    ],
)
def test_first_contact_fails_at_once(clock: FakeTime, failure: rules.Failure) -> None:
    topology = Topology(parse_url("redis://h:6379"))
    cluster = FakeCluster(clock, lambda address, sent: failure)
    with pytest.raises(RedisConnectionError, match=str(failure)):
        cluster.run(first_contact(topology, SCRIPTS))
    assert cluster.kinds == ["send"]


def test_first_contact_of_a_cluster_url_fetches_the_map_from_the_seeds(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://s1:7010,n2:7001"))
    assert topology.config.kind == "cluster"

    def handler(address: Address, sent: list[list[bytes]]) -> Any:
        if address == ("s1", 7010):
            return rules.Unreachable("connection refused")
        return serve(address, sent)

    cluster = FakeCluster(clock, handler)
    cluster.run(first_contact(topology, SCRIPTS))
    assert cluster.effects[:2] == [
        ("send", {("s1", 7010): CLUSTER_SLOTS}),
        ("send", {N2: CLUSTER_SLOTS}),
    ]
    assert topology.cluster is not None and topology.cluster.primaries == [N1, N2, N3]
    assert topology.primary == Node(N1)
    assert cluster.pauses == []


def test_first_contact_of_a_cluster_url_refused(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://s1:7010,n2:7001"))
    cluster = FakeCluster(clock, lambda address, sent: rules.Refused("refused the credentials"))
    with pytest.raises(RedisConnectionError, match="refused the credentials"):
        cluster.run(first_contact(topology, SCRIPTS))
    assert len(cluster.effects) == 1


def test_first_contact_of_a_cluster_url_no_node_answers(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://s1:7010,s2:7011"))
    cluster = FakeCluster(clock, lambda address, sent: rules.Unreachable("connection refused"))
    with pytest.raises(RedisConnectionError, match="no cluster node could say") as info:
        cluster.run(first_contact(topology, SCRIPTS))
    assert "s2:7011: connection refused" in str(info.value)
    assert cluster.pauses == []


def test_first_contact_of_a_cluster_url_learns_the_node_timeout(clock: FakeTime) -> None:
    topology = Topology(parse_url("redis://n1:7000,n2:7001"))
    FakeCluster(clock).run(first_contact(topology, SCRIPTS))
    assert topology.down_after == 12.5


def test_first_contact_without_config_permission(clock: FakeTime) -> None:
    noperm = err("NOPERM this user has no permissions to run the 'config|get' command")

    def answer(address: Address, command: list[bytes]) -> Any:
        return noperm if command[0] == b"CONFIG" else basic(address, command)

    topology = Topology(parse_url("redis://n1:7000"))
    FakeCluster(clock, answering(answer)).run(first_contact(topology, SCRIPTS))
    assert topology.cluster is not None
    assert topology.down_after == 37.5
