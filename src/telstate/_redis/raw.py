"""Receiving sensor reads raw: members arrays as numpy bytes, not one object each (no I/O).

A sensor read is a MULTI / TYPE / ZRANGEBYLEX / EXEC transaction
(:func:`.resp.bulk_read_prefix`), and many are sent at once.  Their replies are
mostly members, bulk strings that usually all have one length.  :func:`receive_reads`
receives them into numpy buffers and hands each members array over as a
:class:`.resp.RawArray`, a view of its buffer that ``telstate._reply`` converts with
numpy, where hiredis would make one bytes object per member.

The buffers are uninitialised, so the kernel writes each byte once and nothing is
zeroed.  A buffer is replaced by a bigger one when a members array does not fit,
which copies only what arrived of that array.  Each member's header is checked as it
arrives (:func:`.resp.members_regular`), so a member of another length is noticed
before the reply ends; arrays of a few thousand such members are walked member by
member, and replies of any other shape (an error, another type, a bigger array of
mixed lengths) are left to hiredis from where they start.

:func:`receive_reads` is a generator that the owner of the socket drives: it yields
the memoryview to receive into and is sent how many bytes arrived there.  The
blocking connection drives it with ``recv_into``, the asyncio protocol with
``get_buffer`` / ``buffer_updated``.  Its value, a :class:`Received`, says what is
left for hiredis.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np

from .._reply import Regular
from .resp import (
    BULK_READ_REPLIES,
    BulkLayout,
    RawArray,
    bulk_layout,
    bulk_read_prefix,
    members_regular,
    members_walk,
)

__all__ = ["Received", "Receiver", "receive_reads"]

#: First buffer of a bulk read (grown as its members arrays need).
BULK_START = 1 << 18
#: Members of several lengths up to which an array is received raw (walked member by
#: member); hiredis reads bigger ones.
WALK = 10_000
#: Bytes that hold a read's replies up to its first member's header.
LAYOUT_BYTES = len(bulk_read_prefix(BULK_READ_REPLIES)) + 32

_Buffer = np.ndarray[Any, Any]


class Received(NamedTuple):
    """What :func:`receive_reads` received raw, and what is left for hiredis."""

    replies: list[Any]  # the replies received raw, in order
    rest: bytes  # bytes that arrived after them: hiredis parses these first
    left: int  # replies still expected (0: every read came raw)


#: Yields where to receive, is sent how many bytes arrived there.
Receiver = Generator[memoryview, int, Received]


def receive_reads(count: int, start: int | None = None) -> Receiver:
    """Receive the `count` replies of ``count // 4`` sensor-read transactions.

    Each plain read comes back as hiredis would return it, its members array left
    raw: ``[b"OK", b"QUEUED", b"QUEUED", [b"zset", RawArray]]``; a read of a key
    that does not exist has an empty list there.  `start` is the size of the first
    buffer (:data:`BULK_START` by default).
    """
    start = start or BULK_START
    replies: list[Any] = []
    prefix = bulk_read_prefix(BULK_READ_REPLIES)
    reads = count // BULK_READ_REPLIES
    buffer = np.empty(start, np.uint8)
    view = buffer.data
    pos = received = 0  # where this read's replies start; what has arrived
    for index in range(reads):
        while (layout := bulk_layout(bytes(view[pos:received][:LAYOUT_BYTES]), prefix)) is None:
            if received == len(buffer):
                room = max(start, received - pos + LAYOUT_BYTES)
                buffer, view, pos, received = _moved(buffer, pos, received, room)
            received += yield view[received:]
        if layout is False:  # not the shape of a plain read: hiredis parses the rest
            return Received(replies, bytes(view[pos:received]), count - len(replies))
        assert isinstance(layout, BulkLayout)
        if layout.missing:
            replies += [b"OK", b"QUEUED", b"QUEUED", [b"none", []]]
            pos += layout.end
            continue
        if pos + layout.end > len(buffer):
            # the rest of this read, and room for the next ones if any
            room = layout.end if index == reads - 1 else max(layout.end, 2 * len(buffer))
            buffer, view, pos, received = _moved(buffer, pos, received, room)
        octets = buffer[pos:]
        checked = members_regular(octets, layout, layout.first, received - pos)
        while checked is not None and received < pos + layout.end:
            received += yield view[received:]
            checked = members_regular(octets, layout, checked, received - pos)
        regular: Regular | None
        if checked is not None:
            end = layout.end
            regular = layout.regular()
        elif layout.members <= WALK:  # members of several lengths: found one by one
            buffer, pos, received, walked = yield from _walk(buffer, pos, received, layout)
            view = buffer.data
            if walked is None:  # not an array of bulk strings after all
                return Received(replies, bytes(view[pos:received]), count - len(replies))
            end, regular = walked, None
        else:
            return Received(replies, bytes(view[pos:received]), count - len(replies))
        members = view[pos + layout.start : pos + end]
        replies += [b"OK", b"QUEUED", b"QUEUED", [b"zset", RawArray(members, regular)]]
        pos += end
    return Received(replies, bytes(view[pos:received]), 0)


def _walk(
    buffer: _Buffer, pos: int, received: int, layout: BulkLayout
) -> Generator[memoryview, int, tuple[_Buffer, int, int, int | None]]:
    """Receive a members array of several lengths whole: the buffer holding it now, its
    read's offset there and what has arrived, and where the array ends (from the read's
    offset), None if it is not an array of bulk strings after all."""
    at, left = pos + layout.first, layout.members
    while True:
        walked = members_walk(buffer.data, at, left, received)
        if walked is None:
            return buffer, pos, received, None
        at, left = walked
        if not left:
            return buffer, pos, received, at - pos
        if received == len(buffer):
            room = max(BULK_START, 2 * (received - pos))
            at -= pos
            buffer, _, pos, received = _moved(buffer, pos, received, room)
            at += pos
        received += yield buffer.data[received:]


def _moved(
    buffer: _Buffer, pos: int, received: int, room: int
) -> tuple[_Buffer, memoryview, int, int]:
    """A new buffer of at least `room` bytes holding what arrived from `pos` on."""
    kept = received - pos
    bigger = np.empty(max(room, kept), np.uint8)
    bigger[:kept] = buffer[pos:received]
    return bigger, bigger.data, 0, kept
