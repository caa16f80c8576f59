"""Pub/sub bookkeeping: many waiters over one connection (no I/O).

Every write publishes on ``update/<key>``.  A backend serves all its waiters over
ONE pub/sub connection: a channel is subscribed when its first waiter arrives and
unsubscribed when its last one leaves.  The rules, whatever drives the connection:

* a waiter is *ready* once the server has confirmed every channel it listens to:
  from then on no write can be missed (the wait reads the key after that), and
  only then does it get messages;
* when the connection is lost, or the primary changes, the hub connects again and
  subscribes every channel again; each re-confirmation tells the channel's ready
  waiters to look at their key again (:class:`~telstate._updates.Recheck`), because
  writes made while nobody listened were not heard;
* a refused SUBSCRIBE (an ACL without channel rights) fails the waiters that asked
  for it, and a hub that cannot reconnect within the retry window fails them all.

The sentinels announce failovers on their own pub/sub (:func:`sentinel_event`):
``+selected-slave`` when the leader has chosen the replica to promote (from then on,
writes to the old primary may be lost: hold them), ``-failover-abort-*`` when it gives
up (resume), and ``+switch-master`` (``<service> <old ip> <old port> <new ip> <new
port>``) once the new primary is in place.  Only the sentinel leading a failover
announces its steps, so a client listens to every sentinel.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._updates import CHANNEL_PREFIX, Recheck
from .config import Address

__all__ = [
    "Hold",
    "HubState",
    "Lost",
    "Message",
    "Ready",
    "Refusal",
    "Release",
    "Switch",
    "sentinel_event",
    "switch_message",
]

_S = TypeVar("_S", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Ready:
    """Every channel of the waiter is confirmed."""


@dataclass(frozen=True, slots=True)
class Message:
    """A publication on a key's channel (decoded by the waiter)."""

    key: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """The server refused to subscribe a channel of the waiter."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Lost:
    """The hub gave up reconnecting: waits fail with this error."""

    error: BaseException


Item = Ready | Message | Refusal | Lost | Recheck
READY = Ready()
RECHECK = Recheck()


def channels_of(keys: Iterable[bytes]) -> tuple[bytes, ...]:
    """The notification channels of `keys` (each once)."""
    return tuple(dict.fromkeys(CHANNEL_PREFIX + key for key in keys))


class HubState(Generic[_S]):
    """Which waiter listens to which channel, and what the server has confirmed."""

    def __init__(self) -> None:
        self.listeners: dict[bytes, set[_S]] = {}
        self.confirmed: set[bytes] = set()
        self.waiting: dict[_S, set[bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def add(self, waiter: _S, channels: Sequence[bytes]) -> list[bytes]:
        """Register `waiter`; returns the channels to SUBSCRIBE now.

        The waiter is ready at once if every channel was already confirmed
        (``waiter not in self.waiting``).
        """
        new = [channel for channel in channels if channel not in self.listeners]
        for channel in channels:
            self.listeners.setdefault(channel, set()).add(waiter)
        pending = {channel for channel in channels if channel not in self.confirmed}
        if pending:
            self.waiting[waiter] = pending
        return new

    def remove(self, waiter: _S, channels: Sequence[bytes]) -> list[bytes]:
        """Forget `waiter`; returns the channels nobody listens to any more (to UNSUBSCRIBE)."""
        self.waiting.pop(waiter, None)
        gone = []
        for channel in channels:
            listeners = self.listeners.get(channel)
            if listeners is None:
                continue
            listeners.discard(waiter)
            if not listeners:
                del self.listeners[channel]
                self.confirmed.discard(channel)
                gone.append(channel)
        return gone

    def lost(self) -> list[bytes]:
        """The connection is gone: every channel must be subscribed again (returned)."""
        self.confirmed.clear()
        return list(self.listeners)

    def fail_all(self, error: BaseException) -> list[tuple[_S, Item]]:
        """Give up: every waiter gets :class:`Lost`, and is forgotten."""
        out: list[tuple[_S, Item]] = [
            (waiter, Lost(error)) for waiter in {w for ws in self.listeners.values() for w in ws}
        ]
        self.listeners.clear()
        self.confirmed.clear()
        self.waiting.clear()
        return out

    def on_reply(self, reply: Any) -> list[tuple[_S, Item]]:
        """What a reply read from the pub/sub connection means for the waiters."""
        if isinstance(reply, BaseException):  # a refused SUBSCRIBE: fail those not ready
            out: list[tuple[_S, Item]] = [(waiter, Refusal(reply)) for waiter in self.waiting]
            for waiter in list(self.waiting):
                for channels in self.listeners.values():
                    channels.discard(waiter)
            self.listeners = {channel: ws for channel, ws in self.listeners.items() if ws}
            self.waiting.clear()
            return out
        if not isinstance(reply, list) or len(reply) < 3:
            return []
        kind, channel = reply[0], reply[1]
        if kind == b"message":
            key = channel[len(CHANNEL_PREFIX) :]
            message = Message(key, reply[2])
            # Only to ready waiters: one still waiting for its confirmation reads the
            # key once confirmed, which covers this write.
            return [
                (waiter, message)
                for waiter in self.listeners.get(channel, ())
                if waiter not in self.waiting
            ]
        if kind == b"subscribe":
            out = []
            if channel not in self.listeners:
                return out  # unsubscribed since
            self.confirmed.add(channel)
            for waiter in self.listeners[channel]:
                pending = self.waiting.get(waiter)
                if pending is None:
                    out.append((waiter, RECHECK))  # subscribed again: look again
                    continue
                pending.discard(channel)
                if not pending:
                    del self.waiting[waiter]
                    out.append((waiter, READY))
            return out
        return []


def switch_message(reply: Any, service: str) -> Address | None:
    """The new primary announced by a sentinel's ``+switch-master`` message, if for `service`."""
    if not isinstance(reply, list) or len(reply) < 3 or reply[0] != b"message":
        return None
    if reply[1] != b"+switch-master" or not isinstance(reply[2], bytes):
        return None
    fields = reply[2].decode(errors="replace").split()
    if len(fields) != 5 or fields[0] != service:
        return None
    try:
        return fields[3], int(fields[4])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Switch:
    """The sentinels have made `address` the primary."""

    address: Address


@dataclass(frozen=True, slots=True)
class Hold:
    """A failover has chosen the replica to promote: stop writing to the old primary."""


@dataclass(frozen=True, slots=True)
class Release:
    """A failover was abandoned: the old primary stays."""


SentinelEvent = Switch | Hold | Release

#: What a client asks a sentinel for: every event (they are few).
WATCH_COMMAND = ("PSUBSCRIBE", "*")


def sentinel_event(reply: Any, service: str) -> SentinelEvent | None:
    """What a message from a sentinel's pub/sub means for the clients of `service`."""
    if not isinstance(reply, list):
        return None
    if len(reply) >= 4 and reply[0] == b"pmessage":
        channel, data = reply[2], reply[3]
    elif len(reply) >= 3 and reply[0] == b"message":
        channel, data = reply[1], reply[2]
    else:
        return None
    if channel == b"+switch-master":
        address = switch_message([b"message", channel, data], service)
        return None if address is None else Switch(address)
    if not isinstance(data, bytes):
        return None
    fields = data.decode(errors="replace").split()
    # "<kind> <name> <ip> <port> @ <service> <ip> <port>" or "master <service> <ip> <port>"
    if "@" in fields:
        named = fields[fields.index("@") + 1 : fields.index("@") + 2] == [service]
    else:
        named = fields[:2] == ["master", service]
    if not named:
        return None
    if channel == b"+selected-slave":
        return Hold()
    if channel.startswith(b"-failover-abort"):
        return Release()
    return None
