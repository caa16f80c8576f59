"""telstate._redis.hub: pub/sub bookkeeping of many waiters over one connection (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from telstate._redis.hub import (
    Hold,
    HubState,
    Lost,
    Message,
    Ready,
    Refusal,
    Release,
    Switch,
    channels_of,
    sentinel_event,
    switch_message,
)
from telstate._redis.resp import Reader, ReplyError
from telstate._updates import Recheck

A, B, C = "A", "B", "C"
CH1, CH2, CH3 = b"update/k1", b"update/k2", b"update/k3"


def subscribed(channel: bytes, count: int = 1) -> list[Any]:
    return [b"subscribe", channel, count]


def unsubscribed(channel: bytes, count: int = 0) -> list[Any]:
    return [b"unsubscribe", channel, count]


def message(channel: bytes, payload: bytes) -> list[Any]:
    return [b"message", channel, payload]


def refusal(text: str = "NOPERM this user has no permissions to access the channel") -> Any:
    reader = Reader()
    reader.feed(b"-" + text.encode() + b"\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError)
    return error


def test_channels_of() -> None:
    assert channels_of([b"a", b"b", b"a"]) == (b"update/a", b"update/b")
    assert channels_of([]) == ()


def test_add_then_ready() -> None:
    hub: HubState[str] = HubState()
    assert not hub
    assert hub.add(A, [CH1, CH2]) == [CH1, CH2]
    assert hub
    assert hub.waiting == {A: {CH1, CH2}}
    assert hub.on_reply(subscribed(CH1)) == []
    assert hub.waiting == {A: {CH2}}
    assert hub.on_reply(subscribed(CH2, 2)) == [(A, Ready())]
    assert A not in hub.waiting
    assert hub.confirmed == {CH1, CH2}


def test_shared_channels_are_subscribed_once() -> None:
    hub: HubState[str] = HubState()
    assert hub.add(A, [CH1, CH2]) == [CH1, CH2]
    assert hub.add(B, [CH2, CH3]) == [CH3]
    assert hub.listeners == {CH1: {A}, CH2: {A, B}, CH3: {B}}
    assert hub.on_reply(subscribed(CH2)) == []
    assert hub.on_reply(subscribed(CH3)) == [(B, Ready())]
    assert hub.on_reply(subscribed(CH1)) == [(A, Ready())]


def test_waiter_ready_at_once_when_its_channels_are_confirmed() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))
    assert hub.add(B, [CH1]) == []  # nothing to subscribe
    assert B not in hub.waiting  # ready at once
    assert hub.listeners[CH1] == {A, B}
    # a waiter with one confirmed and one new channel waits for the new one only
    assert hub.add(C, [CH1, CH2]) == [CH2]
    assert hub.waiting == {C: {CH2}}
    assert hub.on_reply(subscribed(CH2)) == [(C, Ready())]


def test_messages_go_to_ready_waiters_only() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))
    hub.add(B, [CH1, CH2])  # not ready: CH2 unconfirmed
    out = hub.on_reply(message(CH1, b"v1"))
    assert out == [(A, Message(b"k1", b"v1"))]
    hub.on_reply(subscribed(CH2))
    out = hub.on_reply(message(CH1, b"v2"))
    assert sorted(out) == [(A, Message(b"k1", b"v2")), (B, Message(b"k1", b"v2"))]
    assert hub.on_reply(message(CH2, b"x")) == [(B, Message(b"k2", b"x"))]


def test_messages_for_unknown_channels_or_odd_replies_are_ignored() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))
    assert hub.on_reply(message(CH3, b"x")) == []
    assert hub.on_reply([b"pong", b""]) == []
    assert hub.on_reply(b"OK") == []
    assert hub.on_reply(None) == []
    assert hub.on_reply([b"pmessage", b"update/*", CH1, b"x"]) == []
    assert hub.on_reply(unsubscribed(CH3)) == []
    assert hub.waiting == {}


def test_lost_then_reconfirmed() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))  # A ready
    hub.add(B, [CH1, CH2])
    assert hub.waiting == {B: {CH2}}
    again = hub.lost()
    assert sorted(again) == [CH1, CH2]
    assert hub.confirmed == set()
    # a new waiter on a channel not yet re-confirmed waits for it
    assert hub.add(C, [CH1]) == []  # already being subscribed again
    assert hub.waiting[C] == {CH1}
    out = hub.on_reply(subscribed(CH1))
    # A was ready: it must look again; C (waiting only for CH1) is now ready; B still waits
    assert len(out) == 2
    assert dict(out) == {A: Recheck(), C: Ready()}
    assert hub.waiting == {B: {CH2}}
    assert hub.on_reply(subscribed(CH2)) == [(B, Ready())]


def test_lost_gives_recheck_to_ready_and_ready_to_waiting() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1, CH2])
    hub.on_reply(subscribed(CH1))
    hub.on_reply(subscribed(CH2))  # A ready
    hub.add(B, [CH3])  # B waits
    hub.lost()
    assert dict(hub.on_reply(subscribed(CH1))) == {A: Recheck()}
    assert dict(hub.on_reply(subscribed(CH2))) == {A: Recheck()}
    assert hub.on_reply(subscribed(CH3)) == [(B, Ready())]
    # messages flow again to both
    assert hub.on_reply(message(CH3, b"v")) == [(B, Message(b"k3", b"v"))]


def test_lost_with_nobody_listening() -> None:
    hub: HubState[str] = HubState()
    assert hub.lost() == []
    hub.add(A, [CH1])
    hub.remove(A, [CH1])
    assert hub.lost() == []


def test_remove_returns_channels_nobody_listens_to() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1, CH2])
    hub.add(B, [CH2])
    hub.on_reply(subscribed(CH1))
    hub.on_reply(subscribed(CH2))
    assert hub.remove(A, [CH1, CH2]) == [CH1]
    assert hub.listeners == {CH2: {B}}
    assert hub.confirmed == {CH2}
    assert hub.remove(B, [CH2]) == [CH2]
    assert not hub
    assert hub.confirmed == set()
    assert hub.remove(B, [CH2]) == []  # twice: nothing more
    assert hub.remove(C, [CH3]) == []  # never added


def test_remove_a_waiting_waiter() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    assert hub.remove(A, [CH1]) == [CH1]
    assert hub.waiting == {}
    # the late confirmation of a channel unsubscribed since changes nothing
    assert hub.on_reply(subscribed(CH1)) == []
    assert hub.confirmed == set()


def test_unsubscribe_then_subscribe_same_channel() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))
    assert hub.remove(A, [CH1]) == [CH1]  # UNSUBSCRIBE sent
    assert hub.add(B, [CH1]) == [CH1]  # SUBSCRIBE sent again
    assert hub.waiting == {B: {CH1}}  # not ready on the old confirmation
    assert hub.on_reply(unsubscribed(CH1)) == []
    assert hub.on_reply(message(CH1, b"lost")) == []  # B is not ready yet
    assert hub.on_reply(subscribed(CH1)) == [(B, Ready())]
    assert hub.on_reply(message(CH1, b"v")) == [(B, Message(b"k1", b"v"))]


def test_unsubscribe_and_resubscribe_before_first_confirmation() -> None:
    # SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE in flight: the first confirmation may make B ready
    # before the server has subscribed it again, so the second one must make B look again.
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.remove(A, [CH1])
    hub.add(B, [CH1])
    assert hub.on_reply(subscribed(CH1)) == [(B, Ready())]
    assert hub.on_reply(unsubscribed(CH1)) == []
    assert hub.on_reply(subscribed(CH1)) == [(B, Recheck())]


def test_refused_subscribe_fails_only_the_waiting() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))  # A ready
    hub.add(B, [CH1, CH2])  # waits for CH2
    hub.add(C, [CH3])  # waits for CH3
    error = refusal()
    out = hub.on_reply(error)
    assert dict(out) == {B: Refusal(error), C: Refusal(error)}
    assert hub.waiting == {}
    assert hub.listeners == {CH1: {A}}  # refused waiters are forgotten
    # A still gets its messages
    assert hub.on_reply(message(CH1, b"v")) == [(A, Message(b"k1", b"v"))]


def test_refused_subscribe_with_nobody_waiting() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1])
    hub.on_reply(subscribed(CH1))
    assert hub.on_reply(refusal()) == []
    assert hub.listeners == {CH1: {A}}


def test_fail_all() -> None:
    hub: HubState[str] = HubState()
    hub.add(A, [CH1, CH2])
    hub.add(B, [CH2])
    hub.on_reply(subscribed(CH2))  # B ready, A waiting
    error = ConnectionError("gone")
    out = hub.fail_all(error)
    assert len(out) == 2  # each waiter once, however many channels
    assert dict(out) == {A: Lost(error), B: Lost(error)}
    assert not hub
    assert hub.waiting == {} and hub.confirmed == set()
    assert hub.fail_all(error) == []


def test_items_are_values() -> None:
    assert Ready() == Ready()
    assert Message(b"k", b"v") == Message(b"k", b"v")
    error = ValueError("x")
    assert Lost(error) == Lost(error)
    items: list[object] = [Refusal(error), Lost(error)]
    assert items[0] != items[1]


def test_hub_with_hashable_waiter_objects() -> None:
    class Waiter:
        pass

    w1, w2 = Waiter(), Waiter()
    hub: HubState[Waiter] = HubState()
    hub.add(w1, [CH1])
    hub.add(w2, [CH1])
    out = hub.on_reply(subscribed(CH1))
    assert {id(w) for w, item in out if item == Ready()} == {id(w1), id(w2)}


# ------------------------------------------------------------------------ +switch-master


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            [b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6380"],
            ("10.0.0.2", 6380),
        ),
        ([b"message", b"+switch-master", b"mymaster ::1 6379 ::2 6381"], ("::2", 6381)),
        ([b"message", b"+switch-master", b"other 10.0.0.1 6379 10.0.0.2 6380"], None),
        ([b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2"], None),
        ([b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 port"], None),
        ([b"message", b"+switch-master", b"mymaster a b c d e"], None),
        ([b"message", b"+switch-master", b""], None),
        ([b"message", b"+switch-master", None], None),
        ([b"message", b"+sdown", b"master mymaster 10.0.0.1 6379"], None),
        ([b"subscribe", b"+switch-master", 1], None),
        ([b"message", b"+switch-master"], None),
        (b"message", None),
        (None, None),
        (refusal("NOPERM no"), None),
    ],
)
def test_switch_message(reply: Any, expected: tuple[str, int] | None) -> None:
    assert switch_message(reply, "mymaster") == expected


def test_switch_message_service_must_match_exactly() -> None:
    reply = [b"message", b"+switch-master", b"mymaster2 10.0.0.1 6379 10.0.0.2 6380"]
    assert switch_message(reply, "mymaster") is None
    assert switch_message(reply, "mymaster2") == ("10.0.0.2", 6380)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            [b"pmessage", b"*", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6380"],
            Switch(("10.0.0.2", 6380)),
        ),
        (
            [
                b"pmessage",
                b"*",
                b"+selected-slave",
                b"slave 10.0.0.2:6380 10.0.0.2 6380 @ mymaster 10.0.0.1 6379",
            ],
            Hold(),
        ),
        (
            [
                b"pmessage",
                b"*",
                b"+selected-slave",
                b"slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379",
            ],
            None,
        ),
        (
            [b"pmessage", b"*", b"-failover-abort-not-elected", b"master mymaster 10.0.0.1 6379"],
            Release(),
        ),
        ([b"pmessage", b"*", b"-failover-abort-not-elected", b"master other 10.0.0.1 6379"], None),
        ([b"pmessage", b"*", b"+sdown", b"master mymaster 10.0.0.1 6379"], None),
        ([b"psubscribe", b"*", 1], None),
        (
            [b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.3 7000"],
            Switch(("10.0.0.3", 7000)),
        ),
        (b"garbage", None),
    ],
)
def test_sentinel_event(reply: Any, expected: Any) -> None:
    assert sentinel_event(reply, "mymaster") == expected
