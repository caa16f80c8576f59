"""telstate._redis.session: the plans of the transport, driven by a fake driver (no I/O).

The driver below answers each ``Exchange`` from a script (replies, or a ``rules.Failure``
thrown into the plan) and records each ``Pause``; time is virtual (``session.time`` is
replaced by a clock that moves only when the plan pauses), so retry windows and deadlines
are exercised without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import redis

import telstate
from telstate._redis import rules, session
from telstate._redis.config import ServerConfig, parse_url
from telstate._redis.errors import RedisConnectionError, RedisUnconfirmedWriteError
from telstate._redis.hub import Hold, Release, Switch
from telstate._redis.resp import Reader, ReplyError
from telstate._redis.session import (
    Exchange,
    Node,
    Pause,
    Script,
    Scripts,
    Topology,
    call,
    check_handshake,
    discover,
    first_try,
    handshake_commands,
)

SECRET = "Sup3r$ecret"
SENTINEL_SECRET = "S3ntinel#pw"
SCRIPT_TEXTS = {"get": "return redis.call('GET', KEYS[1])", "put": "return 1"}


def err(text: str) -> Any:
    """A real hiredis error reply."""
    reader = Reader()
    reader.feed(b"-" + text.encode() + b"\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError)
    return error


def commands(payload: bytes) -> list[list[bytes]]:
    """The commands packed in `payload` (RESP arrays read back with hiredis)."""
    reader = Reader()
    reader.feed(payload)
    out = []
    while (command := reader.gets()) is not False:
        out.append(command)
    return out


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(session, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


Answer = Any  # a list of replies, a Failure to throw, or a function of the Exchange


class Driver:
    """Runs a plan: answers exchanges in order (then with `respond`), records pauses."""

    def __init__(
        self,
        clock: FakeTime,
        answers: Sequence[Answer] = (),
        respond: Callable[[Exchange], Answer] | None = None,
    ) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.respond = respond
        self.exchanges: list[Exchange] = []
        self.pauses: list[float] = []
        self.effects: list[Exchange | Pause] = []

    def _answer(self, exchange: Exchange) -> Answer:
        if self.answers:
            answer = self.answers.pop(0)
        elif self.respond is not None:
            answer = self.respond
        else:
            raise AssertionError(f"unexpected exchange with {exchange.node}")
        return answer(exchange) if callable(answer) else answer

    def step(self, plan: Generator[Any, Any, Any], value: Any = None) -> Any:
        """Send `value` (or throw it if a Failure) and return the next effect."""
        if isinstance(value, BaseException):
            return plan.throw(value)
        return plan.send(value)

    def run(self, plan: Generator[Any, Any, Any]) -> Any:
        value: Any = None
        while True:
            try:
                effect = self.step(plan, value)
            except StopIteration as stop:
                return stop.value
            self.effects.append(effect)
            if isinstance(effect, Pause):
                assert effect.seconds > 0
                self.pauses.append(effect.seconds)
                self.clock.now += effect.seconds
                value = None
            else:
                assert isinstance(effect, Exchange)
                self.exchanges.append(effect)
                value = self._answer(effect)
                if not isinstance(value, BaseException):
                    assert len(value) == effect.count, (value, effect.count)
                assert len(self.effects) < 10_000, "runaway plan"

    @property
    def nodes(self) -> list[Node]:
        return [exchange.node for exchange in self.exchanges]


SERVER = Node(("h", 6379))


def server_topology(**options: Any) -> Topology:
    return Topology(parse_url(f"redis://user:{SECRET}@h:6379/0", **options))


def sentinel_topology(**options: Any) -> Topology:
    return Topology(
        parse_url(
            f"redis+sentinel://u:{SECRET}@s1,s2:26380,s3/svc/1",
            sentinel_password=SENTINEL_SECRET,
            **options,
        )
    )


def no_secret(text: str) -> bool:
    return SECRET not in text and SENTINEL_SECRET not in text


def master_info(down_after_ms: int | None = 5000) -> list[bytes]:
    info = [b"name", b"svc", b"ip", b"10.0.0.5", b"port", b"6380", b"flags", b"master"]
    if down_after_ms is not None:
        info += [b"down-after-milliseconds", str(down_after_ms).encode()]
    info += [b"quorum", b"2"]
    return info


def sentinel_answer(ip: str = "10.0.0.5", port: int = 6380, down_after_ms: int = 5000) -> list[Any]:
    return [[ip.encode(), str(port).encode()], master_info(down_after_ms)]


# ------------------------------------------------------------------------ Scripts and nodes


def test_scripts_expand_and_load_payload() -> None:
    scripts = Scripts(SCRIPT_TEXTS)
    assert set(scripts.shas) == {"get", "put"}
    assert all(len(sha) == 40 for sha in scripts.shas.values())
    words = scripts.expand(Script("get", [b"k1", b"k2"], [b"a"]))
    assert tuple(words) == (b"EVALSHA", scripts.shas["get"].encode(), b"2", b"k1", b"k2", b"a")
    assert scripts.expand(("GET", b"k")) == ("GET", b"k")
    assert commands(scripts.load_payload) == [
        [b"SCRIPT", b"LOAD", text.encode()] for text in SCRIPT_TEXTS.values()
    ]


def test_node_str() -> None:
    assert str(Node(("h", 1))) == "h:1"
    assert str(Node(("::1", 2), sentinel=True)) == "sentinel [::1]:2"
    assert str(Node("/tmp/r.sock")) == "unix:///tmp/r.sock"


# ------------------------------------------------------------------------ a plain call


def test_plain_success(clock: FakeTime) -> None:
    topology = server_topology()
    scripts = Scripts(SCRIPT_TEXTS)
    driver = Driver(clock, [[b"v", [0, 1, b"x"]]])
    replies = driver.run(call(topology, scripts, [("GET", b"k"), Script("get", [b"k"])]))
    assert replies == [b"v", [0, 1, b"x"]]
    assert driver.nodes == [SERVER]
    (exchange,) = driver.exchanges
    assert exchange.count == 2
    assert commands(exchange.payload) == [
        [b"GET", b"k"],
        [b"EVALSHA", scripts.shas["get"].encode(), b"1", b"k"],
    ]
    assert driver.pauses == []


def test_no_commands_send_nothing(clock: FakeTime) -> None:
    """A batch of nothing (the stats of no keys) is answered at once: no exchange, and
    no first try, which would wait for a reply that never comes."""
    scripts = Scripts(SCRIPT_TEXTS)
    for topology in (server_topology(), server_topology(min_replicas=1)):
        driver = Driver(clock)  # any exchange fails the test
        assert driver.run(call(topology, scripts, [], writes=True)) == []
        assert first_try(topology, scripts, [], False) is None
    assert first_try(server_topology(), scripts, [("GET", b"k")], False) is not None


def test_commands_own_errors_come_back_in_place(clock: FakeTime) -> None:
    wrongtype = err("WRONGTYPE Operation against a key holding the wrong kind of value")
    unknown = err("ERR unknown command 'FOO'")
    nested = err("WRONGTYPE inside EXEC")
    driver = Driver(clock, [[wrongtype, unknown, [b"ok", nested]]])
    replies = driver.run(call(server_topology(), Scripts({}), [("GET", b"k"), ("FOO",), ("EXEC",)]))
    assert replies == [wrongtype, unknown, [b"ok", nested]]
    assert len(driver.exchanges) == 1 and driver.pauses == []


def test_noscript_loads_the_scripts_and_resends_once(clock: FakeTime) -> None:
    scripts = Scripts(SCRIPT_TEXTS)
    noscript = err("NOSCRIPT No matching script. Please use EVAL.")
    shas = [sha.encode() for sha in scripts.shas.values()]
    driver = Driver(clock, [[b"a", noscript], shas, [b"a", b"b"]])
    plan = call(server_topology(), scripts, [("GET", b"k"), Script("put", [b"k"], [b"v"])])
    assert driver.run(plan) == [b"a", b"b"]
    first, load, again = driver.exchanges
    assert load.payload == scripts.load_payload
    assert load.count == len(SCRIPT_TEXTS)
    assert again.payload == first.payload and again.count == first.count
    assert driver.pauses == []


def test_noscript_twice_is_not_reloaded_twice(clock: FakeTime) -> None:
    scripts = Scripts(SCRIPT_TEXTS)
    noscript = err("NOSCRIPT No matching script. Please use EVAL.")
    shas = [sha.encode() for sha in scripts.shas.values()]
    driver = Driver(clock, [[noscript], shas, [noscript], [b"ok"]])
    assert driver.run(call(server_topology(), scripts, [Script("get", [b"k"])])) == [b"ok"]
    payloads = [exchange.payload for exchange in driver.exchanges]
    assert payloads.count(scripts.load_payload) == 1
    assert driver.pauses == [pytest.approx(0.05)]  # the second NOSCRIPT was a failure


def test_refused_script_load_fails_at_once(clock: FakeTime) -> None:
    scripts = Scripts(SCRIPT_TEXTS)
    noscript = err("NOSCRIPT No matching script.")
    noperm = err("NOPERM this user has no permissions to run the 'script|load' command")
    driver = Driver(clock, [[noscript], [noperm, noperm]])
    with pytest.raises(RedisConnectionError, match="refused access: NOPERM") as info:
        driver.run(call(server_topology(), scripts, [Script("get", [b"k"])]))
    assert "redis://h:6379/0" in str(info.value)
    assert driver.pauses == []


def test_noscript_after_a_reconnection_is_reloaded_again(clock: FakeTime) -> None:
    scripts = Scripts(SCRIPT_TEXTS)
    shas = [sha.encode() for sha in scripts.shas.values()]
    server = {"loaded": False, "restarts": 1}

    def respond(exchange: Exchange) -> Any:
        if exchange.payload == scripts.load_payload:
            server["loaded"] = True
            return shas
        if not server["loaded"]:
            return [err("NOSCRIPT No matching script.")]
        if server["restarts"]:  # the server restarts (empty script cache) and drops us
            server["restarts"] -= 1
            server["loaded"] = False
            return rules.Dropped("connection lost")
        return [b"ok"]

    driver = Driver(clock, respond=respond)
    assert driver.run(call(server_topology(), scripts, [Script("get", [b"k"])])) == [b"ok"]


# ------------------------------------------------------------------------ WAIT


def test_wait_only_for_writes_with_min_replicas(clock: FakeTime) -> None:
    topology = server_topology(min_replicas=2)
    driver = Driver(clock, [[b"OK", 2]])
    assert driver.run(call(topology, Scripts({}), [("SET", b"k", b"v")], writes=True)) == [b"OK"]
    (exchange,) = driver.exchanges
    assert exchange.count == 2
    assert commands(exchange.payload) == [
        [b"SET", b"k", b"v"],
        [b"WAIT", b"2", str(session.WAIT_MS).encode()],
    ]
    # reads never wait
    driver = Driver(clock, [[b"v"]])
    assert driver.run(call(topology, Scripts({}), [("GET", b"k")])) == [b"v"]
    assert commands(driver.exchanges[0].payload) == [[b"GET", b"k"]]
    # nor do writes without min_replicas
    driver = Driver(clock, [[b"OK"]])
    plan = call(server_topology(), Scripts({}), [("SET", b"k", b"v")], writes=True)
    assert driver.run(plan) == [b"OK"]
    assert commands(driver.exchanges[0].payload) == [[b"SET", b"k", b"v"]]


def test_wait_more_replicas_than_needed(clock: FakeTime) -> None:
    driver = Driver(clock, [[b"OK", 3]])
    plan = call(server_topology(min_replicas=1), Scripts({}), [("SET", b"k", b"v")], writes=True)
    assert driver.run(plan) == [b"OK"]


def test_short_wait_is_retried_then_confirmed(clock: FakeTime) -> None:
    driver = Driver(clock, [[b"OK", 1], [b"OK", 2]])
    plan = call(server_topology(min_replicas=2), Scripts({}), [("SET", b"k", b"v")], writes=True)
    assert driver.run(plan) == [b"OK"]
    assert driver.pauses == [pytest.approx(0.05)]
    assert driver.exchanges[0].payload == driver.exchanges[1].payload  # the writes again


def test_short_wait_until_the_window_closes(clock: FakeTime) -> None:
    topology = server_topology(min_replicas=2, retry_window=2.0)
    driver = Driver(clock, respond=lambda exchange: [b"OK", 1])
    start = clock.now
    with pytest.raises(RedisUnconfirmedWriteError) as info:
        driver.run(call(topology, Scripts({}), [("SET", b"k", b"v")], writes=True))
    error = info.value
    assert isinstance(error, telstate.UnconfirmedWriteError)
    assert isinstance(error, telstate.ConnectionError)
    assert isinstance(error, redis.ConnectionError)
    assert "only 1 of the 2 replicas" in str(error)
    assert "redis://h:6379/0" in str(error)
    assert clock.now - start == pytest.approx(2.0)
    assert driver.pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 0.45])
    assert len(driver.exchanges) == len(driver.pauses) + 1
    assert no_secret(str(error))


def test_wait_error_reply_is_retried(clock: FakeTime) -> None:
    driver = Driver(clock, [[b"OK", err("LOADING Redis is loading")], [b"OK", 1]])
    plan = call(server_topology(min_replicas=1), Scripts({}), [("SET", b"k", b"v")], writes=True)
    assert driver.run(plan) == [b"OK"]
    assert len(driver.pauses) == 1


def test_wait_refused_by_acl_fails_at_once(clock: FakeTime) -> None:
    noperm = err("NOPERM this user has no permissions to run the 'wait' command")
    driver = Driver(clock, respond=lambda exchange: [b"OK", noperm])
    plan = call(server_topology(min_replicas=1), Scripts({}), [("SET", b"k", b"v")], writes=True)
    with pytest.raises(RedisConnectionError):
        driver.run(plan)
    assert driver.pauses == []


# ------------------------------------------------------------------------ retries


@pytest.mark.parametrize(
    "failure",
    [
        rules.Unreachable("connection refused"),
        rules.Dropped("connection lost"),
        [err("LOADING Redis is loading the dataset in memory")],
        [err("BUSY Redis is busy running a script.")],
        [err("TRYAGAIN Multiple keys request during rehashing of slot")],
        [err("READONLY You can't write against a read only replica.")],
        [[b"QUEUED", err("LOADING Redis is loading")]],  # inside an EXEC reply
    ],
)
def test_transient_failure_then_success(clock: FakeTime, failure: Any) -> None:
    driver = Driver(clock, [failure, failure, [b"ok"]])
    assert driver.run(call(server_topology(), Scripts({}), [("GET", b"k")])) == [b"ok"]
    assert driver.pauses == pytest.approx([0.05, 0.1])
    assert driver.nodes == [SERVER] * 3


def test_connection_failures_until_the_window_closes(clock: FakeTime) -> None:
    topology = server_topology()  # retry_window 5 s
    driver = Driver(clock, respond=lambda exchange: rules.Unreachable("connection refused"))
    start = clock.now
    with pytest.raises(RedisConnectionError) as info:
        driver.run(call(topology, Scripts({}), [("GET", b"k")]))
    error = info.value
    assert isinstance(error, telstate.ConnectionError)
    assert isinstance(error, redis.ConnectionError)
    assert not isinstance(error, telstate.UnconfirmedWriteError)
    assert str(error) == "cannot reach redis server at redis://h:6379/0: connection refused"
    assert repr(error).startswith("RedisConnectionError(")
    assert driver.pauses == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 0.45])
    assert all(a <= b for a, b in zip(driver.pauses[:5], driver.pauses[1:6], strict=True))
    assert clock.now - start == pytest.approx(5.0)
    assert len(driver.exchanges) == len(driver.pauses) + 1
    assert no_secret(str(error)) and no_secret(repr(error))


def test_window_opens_at_the_first_failure(clock: FakeTime) -> None:
    topology = server_topology(retry_window=1.0)
    clock.now += 100.0  # a call made long after the topology
    driver = Driver(clock, respond=lambda exchange: rules.Dropped("gone"))
    with pytest.raises(RedisConnectionError):
        driver.run(call(topology, Scripts({}), [("GET", b"k")]))
    assert sum(driver.pauses) == pytest.approx(1.0)


def test_zero_window_fails_at_the_first_problem(clock: FakeTime) -> None:
    driver = Driver(clock, respond=lambda exchange: rules.Dropped("gone"))
    with pytest.raises(RedisConnectionError, match="gone"):
        driver.run(call(server_topology(retry_window=0), Scripts({}), [("GET", b"k")]))
    assert driver.pauses == []
    assert len(driver.exchanges) == 1


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            rules.Refused("refused the credentials: WRONGPASS invalid username-password pair"),
            "redis server at redis://h:6379/0 refused the credentials: WRONGPASS",
        ),
        (
            rules.TlsRefused("certificate verify failed"),
            "TLS connection to redis server at redis://h:6379/0 failed: certificate verify",
        ),
        (
            [err("NOPERM this user has no permissions to run the 'get' command")],
            "redis server at redis://h:6379/0 refused access: NOPERM",
        ),
        (
            [err("NOAUTH Authentication required.")],
            "refused access: NOAUTH",
        ),
        (
            [[b"QUEUED", err("NOPERM no permissions to access a key")]],  # inside EXEC
            "refused access: NOPERM",
        ),
    ],
)
def test_refusals_are_never_retried(clock: FakeTime, failure: Any, message: str) -> None:
    driver = Driver(clock, [failure])
    with pytest.raises(RedisConnectionError) as info:
        driver.run(call(server_topology(), Scripts({}), [("GET", b"k")]))
    assert message in str(info.value)
    assert not isinstance(info.value, telstate.UnconfirmedWriteError)
    assert driver.pauses == [] and len(driver.exchanges) == 1
    assert no_secret(str(info.value))


@pytest.mark.parametrize(
    "failure",
    [
        rules.Unreachable("connection refused"),
        rules.Dropped("connection lost"),
        [err("LOADING Redis is loading"), 1],
        [b"OK", 0],
    ],
)
def test_no_retry_fails_at_once(clock: FakeTime, failure: Any) -> None:
    driver = Driver(clock, [failure])
    plan = call(
        server_topology(min_replicas=1),
        Scripts({}),
        [("SET", b"k", b"v")],
        writes=True,
        retry=False,
    )
    with pytest.raises(RedisConnectionError):
        driver.run(plan)
    assert driver.pauses == [] and len(driver.exchanges) == 1


def test_no_retry_short_wait_is_unconfirmed(clock: FakeTime) -> None:
    driver = Driver(clock, [[b"OK", 0]])
    plan = call(
        server_topology(min_replicas=1),
        Scripts({}),
        [("SET", b"k", b"v")],
        writes=True,
        retry=False,
    )
    with pytest.raises(RedisUnconfirmedWriteError, match="only 0 of the 1 replicas"):
        driver.run(plan)


# ------------------------------------------------------------------------ deadlines


def test_deadline_before_the_window_is_a_timeout(clock: FakeTime) -> None:
    driver = Driver(clock, respond=lambda exchange: rules.Unreachable("connection refused"))
    deadline = clock.now + 0.3
    with pytest.raises(telstate.TimeoutError) as info:
        driver.run(call(server_topology(), Scripts({}), [("GET", b"k")], deadline=deadline))
    assert not isinstance(info.value, telstate.ConnectionError)
    assert "gave up at the deadline" in str(info.value)
    assert "redis://h:6379/0" in str(info.value)
    assert "connection refused" in str(info.value)
    assert driver.pauses == pytest.approx([0.05, 0.1, 0.15])
    assert clock.now == pytest.approx(deadline)
    assert no_secret(str(info.value))


def test_deadline_after_the_window_is_a_connection_error(clock: FakeTime) -> None:
    driver = Driver(clock, respond=lambda exchange: rules.Unreachable("connection refused"))
    plan = call(
        server_topology(retry_window=1.0), Scripts({}), [("GET", b"k")], deadline=clock.now + 60
    )
    with pytest.raises(RedisConnectionError):
        driver.run(plan)
    assert sum(driver.pauses) == pytest.approx(1.0)


def test_deadline_already_past(clock: FakeTime) -> None:
    # the call is still made once...
    driver = Driver(clock, [[b"v"]])
    plan = call(server_topology(), Scripts({}), [("GET", b"k")], deadline=clock.now - 1)
    assert driver.run(plan) == [b"v"]
    # ...and its first failure is the end
    driver = Driver(clock, [rules.Dropped("gone")])
    plan = call(server_topology(), Scripts({}), [("GET", b"k")], deadline=clock.now - 1)
    with pytest.raises(telstate.TimeoutError):
        driver.run(plan)
    assert driver.pauses == []


def test_refusal_before_the_deadline_is_not_a_timeout(clock: FakeTime) -> None:
    driver = Driver(clock, [rules.Refused("refused the credentials: WRONGPASS")])
    plan = call(server_topology(), Scripts({}), [("GET", b"k")], deadline=clock.now + 0.01)
    with pytest.raises(RedisConnectionError):
        driver.run(plan)


def test_unconfirmed_writes_at_the_deadline_are_a_timeout(clock: FakeTime) -> None:
    driver = Driver(clock, respond=lambda exchange: [b"OK", 0])
    plan = call(
        server_topology(min_replicas=1),
        Scripts({}),
        [("SET", b"k", b"v")],
        writes=True,
        deadline=clock.now + 0.2,
    )
    with pytest.raises(telstate.TimeoutError, match="replicas"):
        driver.run(plan)


# ------------------------------------------------------------------------ Topology


def test_server_topology() -> None:
    topology = server_topology()
    assert not topology.sentinel
    assert topology.primary == SERVER
    assert topology.epoch == 0
    assert topology.window() == 5.0
    assert topology.describe() == "redis://h:6379/0"
    calls: list[int] = []
    topology.listen(lambda: calls.append(topology.epoch))
    topology.forget(SERVER)  # a plain server is never forgotten
    assert topology.primary == SERVER and topology.epoch == 0 and calls == []


def test_sentinel_topology_switch_forget_prefer() -> None:
    topology = sentinel_topology()
    assert topology.sentinel
    assert topology.primary is None
    assert topology.sentinels == [("s1", 26379), ("s2", 26380), ("s3", 26379)]
    assert topology.describe() == "redis+sentinel://s1:26379,s2:26380,s3:26379/svc/1"
    epochs: list[int] = []
    topology.listen(lambda: epochs.append(topology.epoch))
    node = topology.switch(("10.0.0.5", 6380))
    assert node == Node(("10.0.0.5", 6380)) and not node.sentinel
    assert topology.primary == node
    assert topology.describe().endswith(" (primary 10.0.0.5:6380)")
    assert topology.switch(("10.0.0.5", 6380)) is node  # no change, no event
    assert epochs == [1]
    topology.forget(Node(("10.0.0.9", 6379)))  # not the primary: nothing to forget
    assert topology.primary == node and epochs == [1]
    topology.forget(node)
    assert topology.primary is None and epochs == [1, 2]
    topology.switch(("10.0.0.6", 6379))
    assert epochs == [1, 2, 3]
    topology.prefer(("s3", 26379))
    assert topology.sentinels == [("s3", 26379), ("s1", 26379), ("s2", 26380)]
    topology.prefer(("unknown", 1))
    assert topology.sentinels == [("s3", 26379), ("s1", 26379), ("s2", 26380)]
    assert epochs == [1, 2, 3]  # preferring a sentinel is no topology change
    assert list(topology.config.addresses) == [("s1", 26379), ("s2", 26380), ("s3", 26379)]


def test_several_listeners() -> None:
    topology = sentinel_topology()
    seen: list[str] = []
    topology.listen(lambda: seen.append("a"))
    topology.listen(lambda: seen.append("b"))
    topology.switch(("x", 1))
    assert seen == ["a", "b"]


# ------------------------------------------------------------------------ handshake


def test_handshake_commands_server() -> None:
    config = parse_url(f"redis://u:{SECRET}@h/2?client_name=me")
    assert handshake_commands(config, SERVER) == [
        ("AUTH", "u", SECRET),
        ("SELECT", 2),
        ("CLIENT", "SETNAME", "me"),
    ]
    config = parse_url(f"redis://:{SECRET}@h")
    assert handshake_commands(config, SERVER) == [("AUTH", SECRET)]
    assert handshake_commands(parse_url("redis://h"), SERVER) == []


def test_handshake_commands_sentinel() -> None:
    config = sentinel_topology().config
    data = Node(("10.0.0.5", 6380))
    assert handshake_commands(config, data) == [("AUTH", "u", SECRET), ("SELECT", 1), ("ROLE",)]
    sentinel = Node(("s1", 26379), sentinel=True)
    assert handshake_commands(config, sentinel) == [("AUTH", SENTINEL_SECRET)]
    config = config.replace(sentinel_username="su")
    assert handshake_commands(config, sentinel) == [("AUTH", "su", SENTINEL_SECRET)]
    config = parse_url("redis+sentinel://s/svc")
    assert handshake_commands(config, sentinel) == []
    assert handshake_commands(config, data) == [("ROLE",)]


def test_check_handshake() -> None:
    config = sentinel_topology().config
    node = Node(("10.0.0.5", 6380))
    cmds = handshake_commands(config, node)
    check_handshake(config, node, cmds, [b"OK", b"OK", [b"master", 10, []]])
    with pytest.raises(rules.WrongRole, match=r"10\.0\.0\.5:6380 is a slave, not the primary"):
        check_handshake(config, node, cmds, [b"OK", b"OK", [b"slave", b"10.0.0.6", 6379]])
    with pytest.raises(rules.WrongRole):
        check_handshake(config, node, cmds, [b"OK", b"OK", []])
    with pytest.raises(rules.Refused, match="refused the credentials: WRONGPASS") as info:
        check_handshake(config, node, cmds, [err("WRONGPASS invalid"), b"OK", [b"master"]])
    assert no_secret(str(info.value))
    with pytest.raises(rules.Refused, match="refused SELECT: ERR DB index is out of range"):
        check_handshake(config, node, cmds, [b"OK", err("ERR DB index is out of range"), []])
    with pytest.raises(rules.Refused, match="refused access: NOPERM"):
        check_handshake(config, node, cmds, [b"OK", b"OK", err("NOPERM no role for you")])
    with pytest.raises(rules.Dropped, match="LOADING"):
        check_handshake(config, node, cmds, [b"OK", err("LOADING Redis is loading"), []])
    with pytest.raises(ValueError):  # replies must match the commands
        check_handshake(config, node, cmds, [b"OK"])


# ------------------------------------------------------------------------ discovery


def test_discover_asks_sentinels_in_order(clock: FakeTime) -> None:
    topology = sentinel_topology()
    epochs: list[int] = []
    topology.listen(lambda: epochs.append(topology.epoch))
    driver = Driver(
        clock,
        [
            rules.Unreachable("connection refused"),  # s1
            [None, err("ERR No such master with that name")],  # s2 knows no such service
            sentinel_answer(down_after_ms=3000),  # s3
        ],
    )
    node = driver.run(discover(topology))
    assert node == Node(("10.0.0.5", 6380))
    assert topology.primary == node
    assert driver.nodes == [
        Node(("s1", 26379), sentinel=True),
        Node(("s2", 26380), sentinel=True),
        Node(("s3", 26379), sentinel=True),
    ]
    assert commands(driver.exchanges[0].payload) == [
        [b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", b"svc"],
        [b"SENTINEL", b"MASTER", b"svc"],
    ]
    assert all(exchange.count == 2 for exchange in driver.exchanges)
    assert topology.down_after == 3.0
    assert topology.window() == 8.0
    assert topology.sentinels == [("s3", 26379), ("s1", 26379), ("s2", 26380)]
    assert epochs == [1]
    assert driver.pauses == []


def test_discover_first_sentinel_answers(clock: FakeTime) -> None:
    topology = sentinel_topology()
    driver = Driver(clock, [sentinel_answer("::5", 7000)])
    assert driver.run(discover(topology)) == Node(("::5", 7000))
    assert len(driver.exchanges) == 1
    assert topology.sentinels[0] == ("s1", 26379)


def test_discover_keeps_down_after_when_master_is_refused(clock: FakeTime) -> None:
    topology = sentinel_topology()
    topology.down_after = 7.0
    noperm = err("NOPERM this user has no permissions to run the 'sentinel|master' command")
    driver = Driver(clock, [[[b"10.0.0.5", b"6380"], noperm]])
    assert driver.run(discover(topology)) == Node(("10.0.0.5", 6380))
    assert topology.down_after == 7.0
    driver = Driver(clock, [[[b"10.0.0.5", b"6380"], master_info(None)]])
    driver.run(discover(topology))
    assert topology.down_after == 7.0


def test_discover_skips_wrong_answers(clock: FakeTime) -> None:
    topology = sentinel_topology()
    driver = Driver(
        clock,
        [
            [[b"10.0.0.5"], []],  # malformed
            [err("ERR unknown command 'SENTINEL'"), None],  # not a sentinel
            sentinel_answer("10.0.0.7", 6379),
        ],
    )
    assert driver.run(discover(topology)) == Node(("10.0.0.7", 6379))


def test_discover_no_primary(clock: FakeTime) -> None:
    topology = sentinel_topology()
    noperm = err("NOPERM this user has no permissions to run the 'sentinel' command")
    driver = Driver(
        clock,
        [rules.Unreachable("connection refused"), [None, None], [noperm, noperm]],
    )
    with pytest.raises(rules.NoPrimary) as info:
        driver.run(discover(topology))
    text = str(info.value)
    assert "no sentinel named a primary for 'svc'" in text
    assert "sentinel s1:26379: connection refused" in text
    assert "sentinel s2:26380 knows no service 'svc'" in text
    assert "sentinel s3:26379 answered NOPERM" in text
    assert topology.primary is None and topology.epoch == 0
    assert no_secret(text)


def test_discover_all_sentinels_refuse(clock: FakeTime) -> None:
    topology = sentinel_topology()
    noperm = err("NOPERM this user has no permissions to run the 'sentinel' command")
    driver = Driver(
        clock,
        [
            rules.Refused("refused the credentials: WRONGPASS invalid"),
            [noperm, noperm],
            [err("NOAUTH Authentication required."), None],
        ],
    )
    with pytest.raises(rules.Refused, match="no sentinel named a primary"):
        driver.run(discover(topology))


def test_call_with_sentinel(clock: FakeTime) -> None:
    topology = sentinel_topology()
    driver = Driver(clock, [sentinel_answer(), [b"v"]])
    assert driver.run(call(topology, Scripts({}), [("GET", b"k")])) == [b"v"]
    assert driver.nodes == [Node(("s1", 26379), sentinel=True), Node(("10.0.0.5", 6380))]
    # the primary is known now: the next call goes straight to it
    driver = Driver(clock, [[b"w"]])
    assert driver.run(call(topology, Scripts({}), [("GET", b"k")])) == [b"w"]
    assert driver.nodes == [Node(("10.0.0.5", 6380))]


@pytest.mark.parametrize(
    "failure",
    [
        rules.WrongRole("10.0.0.5:6380 is a slave, not the primary"),
        [err("READONLY You can't write against a read only replica.")],
        [
            err(
                "ERR Error running script (call to f_x): @user_script:1: @user_script: 1: "
                "-READONLY You can't write against a read only replica. "
            )
        ],
        [err("NOREPLICAS Not enough good replicas to write.")],
        [err("MASTERDOWN Link with MASTER is down")],
        rules.Unreachable("connection refused"),
        rules.Dropped("connection lost"),
    ],
)
def test_failure_on_the_primary_rediscovers(clock: FakeTime, failure: Any) -> None:
    topology = sentinel_topology()
    old = topology.switch(("10.0.0.5", 6380))
    epochs: list[int] = []
    topology.listen(lambda: epochs.append(topology.epoch))
    driver = Driver(clock, [failure, sentinel_answer("10.0.0.6", 6381), [b"OK"]])
    plan = call(topology, Scripts({}), [("SET", b"k", b"v")], writes=True)
    assert driver.run(plan) == [b"OK"]
    new = Node(("10.0.0.6", 6381))
    assert driver.nodes == [old, Node(("s1", 26379), sentinel=True), new]
    assert isinstance(driver.effects[1], Pause)  # a pause before asking the sentinels
    assert topology.primary == new
    assert epochs == [2, 3]  # forgotten, then switched


def test_sentinel_pauses_are_capped_lower(clock: FakeTime) -> None:
    topology = sentinel_topology(retry_window=2.0)
    driver = Driver(clock, respond=lambda exchange: rules.Unreachable("connection refused"))
    with pytest.raises(RedisConnectionError) as info:
        driver.run(call(topology, Scripts({}), [("GET", b"k")]))
    assert max(driver.pauses) == pytest.approx(rules.MAX_PAUSE_SENTINEL)
    assert sum(driver.pauses) == pytest.approx(2.0)
    text = str(info.value)
    assert text.startswith("cannot reach redis server at redis+sentinel://s1:26379,")
    assert "no sentinel named a primary for 'svc'" in text
    assert no_secret(text)
    # each attempt asked every sentinel
    assert len(driver.exchanges) == 3 * (len(driver.pauses) + 1)


def test_window_with_down_after_covers_a_failover(clock: FakeTime) -> None:
    topology = sentinel_topology(retry_window=1.0)
    topology.switch(("10.0.0.5", 6380))
    topology.down_after = 2.0  # learnt on an earlier discovery

    def respond(exchange: Exchange) -> Any:
        # the sentinels keep naming the dead primary for 2.5 s, then the new one
        if exchange.node.sentinel:
            if clock.now - start < 2.5:
                return sentinel_answer("10.0.0.5", 6380, 2000)
            return sentinel_answer("10.0.0.6", 6380, 2000)
        if exchange.node.address == ("10.0.0.5", 6380):
            return rules.Unreachable("connection refused")
        return [b"OK"]

    start = clock.now
    driver = Driver(clock, respond=respond)
    assert driver.run(call(topology, Scripts({}), [("GET", b"k")])) == [b"OK"]
    assert topology.primary == Node(("10.0.0.6", 6380))
    assert 2.5 <= clock.now - start <= 3.0


def test_all_sentinels_refusing_is_not_retried(clock: FakeTime) -> None:
    topology = sentinel_topology()
    wrongpass = rules.Refused("refused the credentials: WRONGPASS invalid")
    driver = Driver(clock, [wrongpass, wrongpass, wrongpass])
    with pytest.raises(RedisConnectionError) as info:
        driver.run(call(topology, Scripts({}), [("GET", b"k")]))
    assert driver.pauses == []
    assert "no sentinel named a primary" in str(info.value)
    assert no_secret(str(info.value))


def test_sentinel_refused_data_server_is_not_retried(clock: FakeTime) -> None:
    topology = sentinel_topology()
    driver = Driver(clock, [sentinel_answer(), rules.Refused("refused the credentials: WRONGPASS")])
    with pytest.raises(RedisConnectionError) as info:
        driver.run(call(topology, Scripts({}), [("GET", b"k")]))
    assert driver.pauses == []
    assert "(primary 10.0.0.5:6380)" in str(info.value)
    assert topology.primary == Node(("10.0.0.5", 6380))  # refused, not moved


def test_sentinel_first_contact_rides_out_a_failover(clock: FakeTime) -> None:
    """A first contact fails at once, except on a primary the sentinels named going away."""
    topology = sentinel_topology()
    topology.switch(("10.0.0.5", 6380))
    driver = Driver(clock, [rules.Unreachable("connection refused"), sentinel_answer(), [b"v"]])
    assert driver.run(call(topology, Scripts({}), [("GET", b"k")], retry=False)) == [b"v"]
    assert len(driver.exchanges) == 3 and len(driver.pauses) == 1


def test_sentinel_first_contact_fails_at_once_when_refused(clock: FakeTime) -> None:
    topology = sentinel_topology()
    topology.switch(("10.0.0.5", 6380))
    driver = Driver(clock, [rules.Refused("refused the credentials: WRONGPASS")])
    with pytest.raises(RedisConnectionError, match="refused the credentials"):
        driver.run(call(topology, Scripts({}), [("GET", b"k")], retry=False))
    assert len(driver.exchanges) == 1
    assert topology.primary == Node(("10.0.0.5", 6380))


def test_failed_discovery_does_not_forget_a_primary_found_meanwhile(clock: FakeTime) -> None:
    config = ServerConfig(kind="sentinel", addresses=(("s1", 26379),), service="svc")
    topology = Topology(config)
    first = call(topology, Scripts({}), [("GET", b"a")])
    effect = first.send(None)
    assert isinstance(effect, Exchange) and effect.node.sentinel  # the first asks s1...
    # ...meanwhile a second call discovers the primary and uses it
    second = Driver(clock, [sentinel_answer(), [b"b"]])
    assert second.run(call(topology, Scripts({}), [("GET", b"b")])) == [b"b"]
    found = topology.primary
    assert found == Node(("10.0.0.5", 6380))
    epoch = topology.epoch
    # the first's sentinel connection then fails: no primary named, pause and retry
    effect = first.throw(rules.Dropped("connection lost"))
    assert isinstance(effect, Pause)
    assert topology.primary == found
    assert topology.epoch == epoch


# ------------------------------------------------------------------------ errors


def test_error_classes() -> None:
    error = RedisConnectionError("cannot reach")
    assert isinstance(error, telstate.ConnectionError)
    assert isinstance(error, redis.ConnectionError)
    assert repr(error) == "RedisConnectionError('cannot reach')"
    unconfirmed = RedisUnconfirmedWriteError("not confirmed")
    assert isinstance(unconfirmed, telstate.UnconfirmedWriteError)
    assert isinstance(unconfirmed, RedisConnectionError)
    assert isinstance(unconfirmed, redis.ConnectionError)


def test_hold_stops_writes_until_the_switch(clock: FakeTime) -> None:
    """A failover under way: no primary, discovery refuses, until the switch or a release."""
    topology = sentinel_topology()
    topology.switch(("10.0.0.5", 6380))
    seen: list[int] = []
    topology.listen(lambda: seen.append(topology.epoch))
    topology.on_event(Hold())
    assert topology.primary is None and topology.holding and seen == [2]
    with pytest.raises(rules.NoPrimary, match=r"failover .* under way"):
        Driver(clock, []).run(discover(topology))
    topology.on_event(Switch(("10.0.0.6", 6381)))
    assert topology.primary == Node(("10.0.0.6", 6381)) and not topology.holding
    topology.on_event(Hold())
    topology.on_event(Release())
    assert not topology.holding and topology.primary is None  # ask the sentinels again
    topology.on_event(Release())  # nothing held: nothing changes
    assert seen == [2, 3, 4, 5]


def test_a_call_during_a_hold_waits_for_the_new_primary(clock: FakeTime) -> None:
    topology = sentinel_topology()
    topology.switch(("10.0.0.5", 6380))
    topology.hold()
    plan = call(topology, Scripts({}), [("GET", b"k")], retry=False)  # even a first contact
    effect = plan.send(None)
    assert isinstance(effect, Pause)
    topology.switch(("10.0.0.6", 6381))
    effect = plan.send(None)
    assert isinstance(effect, Exchange) and effect.node == Node(("10.0.0.6", 6381))
