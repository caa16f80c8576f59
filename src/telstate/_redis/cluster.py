"""Redis Cluster: which node holds a key, and which commands go where (no I/O).

A cluster splits the keyspace into 16384 *slots*: a key's slot is the CRC16
(XMODEM) of the key, or of the part between the first ``{`` and the next ``}`` if
that part is not empty (a *hash tag*), modulo 16384.  Each slot belongs to one
primary (``CLUSTER SLOTS`` says which); replicas copy their primary and one takes
over when it fails.  telstate keeps katsdptelstate's key names, so it uses no hash
tags: the keys of a view, or the sensors of an antenna, land on any node.

Rules that follow, which the plans and the transport respect:

* a command or script whose keys are in different slots fails (``CROSSSLOT``),
  even on one node: multi-key commands are split by slot;
* a command goes to the primary of its key's slot; a node that no longer has the
  slot answers ``MOVED <slot> <host>:<port>`` (send it there, and remember), or
  ``ASK`` during a migration (send it there once, after ``ASKING``);
* ``SCAN``, ``FLUSHDB``, ``DBSIZE`` and ``SCRIPT LOAD`` concern one node: they are
  sent to every primary (:class:`Each`); ``WAIT`` counts the replicas of one node;
* classic ``PUBLISH`` reaches subscribers on every node, so one pub/sub connection
  to any node hears every key's notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import Address

__all__ = [
    "SLOTS",
    "Each",
    "SlotMap",
    "command_key",
    "crc16",
    "key_slot",
    "redirection",
    "slot_groups",
]

SLOTS = 16384


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM, as Redis Cluster computes it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


def key_slot(key: bytes) -> int:
    """The slot of `key` (hash tags respected)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % SLOTS


@dataclass(frozen=True, slots=True)
class Each:
    """A command for every primary; its reply is a dict of node address to reply."""

    command: Sequence[Any]


# Commands whose first argument is their (only) key; others name their key elsewhere.
_KEY_AT_1 = frozenset(
    b"TYPE GET EXISTS UNLINK DEL DUMP RESTORE ZCARD ZRANGE ZRANGEBYLEX ZREVRANGEBYLEX "
    b"HLEN STRLEN HGET HGETALL ZADD SETNX HSETNX".split()
)


def command_key(words: Sequence[Any]) -> bytes | None:
    """The key a command is about (the first, for commands taking several), or None."""
    name = words[0].upper() if isinstance(words[0], bytes) else str(words[0]).upper().encode()
    if name in _KEY_AT_1 and len(words) > 1:
        return _bytes(words[1])
    if name == b"MEMORY" and len(words) > 2:
        return _bytes(words[2])
    if name in (b"EVALSHA", b"EVAL") and len(words) > 3 and int(words[2]) > 0:
        return _bytes(words[3])
    return None


def _bytes(word: Any) -> bytes:
    return word if isinstance(word, bytes) else str(word).encode()


class SlotMap:
    """Which primary holds each slot, as a node's ``CLUSTER SLOTS`` reply says.

    Parameters
    ----------
    reply
        ``CLUSTER SLOTS``: a list of ``[start, end, [host, port, id, ...], replicas...]``.
    """

    def __init__(self, reply: Sequence[Any]) -> None:
        self.owner: list[Address | None] = [None] * SLOTS
        self.replicas: dict[Address, list[Address]] = {}
        for entry in reply:
            start, end, primary, *replicas = entry
            address = _address(primary)
            self.replicas[address] = [_address(replica) for replica in replicas]
            for slot in range(int(start), int(end) + 1):
                self.owner[slot] = address
        self.primaries: list[Address] = sorted(self.replicas)

    @property
    def complete(self) -> bool:
        """Whether every slot has a primary."""
        return all(owner is not None for owner in self.owner)

    def node_for(self, key: bytes) -> Address | None:
        return self.owner[key_slot(key)]

    def moved(self, slot: int, address: Address) -> None:
        """A node said `slot` lives at `address` now (MOVED)."""
        self.owner[slot] = address
        if address not in self.replicas:
            self.replicas[address] = []
            self.primaries = sorted(self.replicas)

    def nodes(self) -> list[Address]:
        """Every node known, primaries first."""
        return self.primaries + [r for rs in self.replicas.values() for r in rs]


def _address(node: Sequence[Any]) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return host, int(node[1])


def redirection(error: BaseException) -> tuple[str, int, Address] | None:
    """``('MOVED' | 'ASK', slot, address)`` of a redirection error reply, else None."""
    text = str(error)
    kind, _, rest = text.partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot_text, _, where = rest.partition(" ")
    host, _, port = where.rpartition(":")
    try:
        return kind, int(slot_text), (host.strip("[]"), int(port))
    except ValueError:
        return None


def slot_groups(keys: Sequence[bytes]) -> list[list[int]]:
    """Indices of `keys` grouped by slot, groups in the order of their first key."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(index)
    return list(groups.values())
