"""Key updates: what a write tells the waiters of its key.

Every write that changes data publishes one message on the Redis channel
``update/<full key>``; the memory backend hands the same information to its
waiters directly.  Payloads (the first byte is optional on the wire for the
first two kinds, and katsdptelstate 1.0 writers omit it)::

    immutable   [01] value
    sensor      [02] 8-byte big-endian timestamp, value
    indexed      03  ASCII decimal length of the sub-key, "\n", sub-key, value

Values and sub-keys are encoded (so they start with 0xff, or a pickle byte),
and a timestamp starting with byte 01 or 02 would be below 1e-300 s, so the
optional type byte is unambiguous in practice.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._keys import KeyType
from ._ranges import split_member

__all__ = ["CHANNEL_PREFIX", "KeyUpdate", "Recheck", "decode_update"]

CHANNEL_PREFIX = b"update/"


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """One write to a key, as seen by waiters."""

    key: bytes
    key_type: KeyType
    value: bytes
    timestamp: float | None = None
    sub_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Recheck:
    """Updates may have been missed (e.g. a reconnection): read the key again."""


def decode_update(key: bytes, payload: bytes, key_type: KeyType | None) -> KeyUpdate:
    """Parse a pub/sub payload for `key`.

    `key_type` is the key's type as known to the reader, used when the payload
    has no type byte; a leading type byte wins.

    Raises
    ------
    ValueError
        If the payload is malformed.
    """
    if payload[:1] in (b"\x01", b"\x02", b"\x03"):
        key_type = KeyType(payload[0])
        payload = payload[1:]
    if key_type is KeyType.IMMUTABLE:
        return KeyUpdate(key, key_type, payload)
    if key_type is KeyType.MUTABLE:
        if len(payload) < 9:
            raise ValueError("sensor update shorter than a timestamp and a value")
        value, ts = split_member(payload)
        return KeyUpdate(key, key_type, value, timestamp=ts)
    if key_type is KeyType.INDEXED:
        newline = payload.find(b"\n")
        if newline < 1 or not payload[:newline].isdigit():
            raise ValueError("indexed update lacks its sub-key length")
        length = int(payload[:newline])
        body = payload[newline + 1 :]
        if length > len(body):
            raise ValueError("indexed update shorter than its sub-key")
        return KeyUpdate(key, key_type, body[length:], sub_key=body[:length])
    raise ValueError("update for a key of unknown type")
