"""RESP, the Redis wire protocol: commands out, replies in (no I/O).

A command is an array of bulk strings::

    *<number of words>\\r\\n
    $<length>\\r\\n<word>\\r\\n      (for each word)

Many commands are sent back to back in one write (pipelining) and their replies
come back in the same order.  Replies are parsed by hiredis (C); an error reply
becomes a :class:`ReplyError` *in place*, so one failed command in a pipeline
does not hide the replies of the others.  Errors start with a code in capitals
(``WRONGTYPE``, ``NOSCRIPT``, ``READONLY`` ...), which is what the rules look at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import hiredis
import numpy as np

__all__ = [
    "BULK",
    "BULK_READ_REPLIES",
    "BulkLayout",
    "ProtocolError",
    "RawArray",
    "ReplyError",
    "Reader",
    "bulk_layout",
    "bulk_read_prefix",
    "error_code",
    "members_regular",
    "pack",
    "words",
]

ReplyError = hiredis.ReplyError
"""An error reply from the server (its text is the server's message)."""
ProtocolError = hiredis.ProtocolError
"""Raised by a reader fed bytes that are not RESP (the peer is not a Redis server)."""


def words(*items: Any) -> tuple[bytes, ...]:
    """A command's words as bytes (str as UTF-8, numbers in decimal)."""
    return tuple(_word(item) for item in items)


def _word(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("a boolean is not a Redis word")
    if isinstance(value, int | float):
        return repr(value).encode()
    return bytes(value)


#: One word of a command, a bulk string: ``BULK % (len(word), word)``, as :func:`pack`
#: writes it (hot paths append words to a ready-made start, ``session.Scripts.prefix``).
BULK = b"$%d\r\n%b\r\n"


def pack(commands: Iterable[Sequence[Any]]) -> bytes:
    """RESP encoding of `commands`, ready to be written in one go."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for item in command:
            data = item if type(item) is bytes else _word(item)
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def Reader() -> Any:
    """A hiredis reader: ``feed(bytes)``, then ``gets()`` until it returns False."""
    return hiredis.Reader(replyError=ReplyError)


def error_code(error: BaseException) -> str:
    """The code of an error reply (``'NOSCRIPT'``), or ``''`` if it has none.

    Errors raised inside a script come wrapped (``ERR Error running script ...:
    READONLY ...``, or ``ERR ... -READONLY``), so the code is looked for after the
    script's prefix too.  redis-py's parser (used for foreign clients such as
    fakeredis) drops some codes and names them by class instead.
    """
    name = type(error).__name__
    if name in _REDIS_PY_CLASSES:
        return _REDIS_PY_CLASSES[name]
    text = str(error)
    code = text.split(" ", 1)[0]
    if code.isupper() and code.isalpha() and code != "ERR":
        return code
    for marker in (": -", ": ", "-"):
        index = text.find(marker + "READONLY")
        if index < 0:
            index = text.find(marker + "NOREPLICAS")
        if index >= 0:
            return text[index + len(marker) :].split(" ", 1)[0]
    return code


# redis-py parses some error replies into classes, dropping the code from the message.
_REDIS_PY_CLASSES = {
    "NoScriptError": "NOSCRIPT",
    "ReadOnlyError": "READONLY",
    "BusyLoadingError": "LOADING",
    "NoPermissionError": "NOPERM",
    "AuthenticationError": "WRONGPASS",
    "AuthenticationWrongNumberOfArgsError": "WRONGPASS",
    "ExecAbortError": "EXECABORT",
    "ModuleError": "ERR",
}


def first_error(replies: Sequence[Any]) -> BaseException | None:
    """The first error reply among `replies`, if any."""
    for reply in replies:
        if isinstance(reply, BaseException):
            return reply
    return None


# ------------------------------------------------------------------ sensor reads, raw
#
# A sensor read is a transaction (MULTI, TYPE key, ZRANGEBYLEX key ..., EXEC) whose last
# reply holds up to millions of members.  hiredis would make a bytes object of each; a
# connection that can read raw bytes hands the members array to the caller as it came
# (a RawArray, parsed with numpy by telstate._reply) when the replies have the shape
# every successful read has:
#
#     +OK  +QUEUED  +QUEUED  *2 +zset *N  then N members of one length: $L\r\n<L bytes>\r\n
#
# The end of the reply is then known from its first member's header, and each header is
# checked where equal lengths put it as the bytes arrive, so a reply of another shape
# (another type, members of several lengths, an error) is noticed before its end and
# handed to hiredis whole instead: nothing is ever waited for that will not come.


class RawArray(NamedTuple):
    """A RESP array of bulk strings, as the server sent it (``*N\\r\\n$L\\r\\n...``)."""

    data: memoryview


#: RESP replies of one sensor-read transaction: MULTI, TYPE, ZRANGEBYLEX, EXEC.
BULK_READ_REPLIES = 4


def bulk_read_prefix(count: int) -> bytes:
    """What the replies of a `count`-command sensor-read transaction start with."""
    return b"+OK\r\n" + b"+QUEUED\r\n" * (count - 2) + b"*2\r\n+zset\r\n"


class BulkLayout(NamedTuple):
    """Where a raw members array lies, once its start has been read."""

    start: int  # offset of "*N" in the replies
    first: int  # offset of the first member's header
    members: int  # N
    head: bytes  # the first member's header, b"$L\r\n"
    stride: int  # bytes of one member with its header and \r\n

    @property
    def end(self) -> int:
        return self.first + self.members * self.stride


def bulk_layout(data: bytes | bytearray, prefix: bytes) -> BulkLayout | bool | None:
    """The layout of the members array after `prefix`, None if more bytes are needed,
    False if the replies do not have the shape of a successful read."""
    if len(data) < len(prefix):
        return None if prefix.startswith(bytes(data)) else False
    if not data.startswith(prefix):
        return False
    start = len(prefix)
    line = data.find(b"\r\n", start)
    if line < 0:
        return None if len(data) - start < 12 else False
    if data[start : start + 1] != b"*" or not data[start + 1 : line].isdigit():
        return False
    count = int(data[start + 1 : line])
    first = line + 2
    if count == 0:
        return BulkLayout(start, first, 0, b"", 0)
    head_end = data.find(b"\r\n", first)
    if head_end < 0:
        return None if len(data) - first < 12 else False
    digits = bytes(data[first + 1 : head_end])
    if data[first : first + 1] != b"$" or not digits.isdigit() or len(digits) > 10:
        return False
    head = bytes(data[first : head_end + 2])
    return BulkLayout(start, first, count, head, len(head) + int(digits) + 2)


def members_regular(buffer: Any, layout: BulkLayout, done: int, received: int) -> int | None:
    """Check what has arrived of the members since `done` bytes of them were checked.

    `buffer` is a numpy uint8 array over the replies, of which `received` bytes have
    arrived; returns the offset up to which the members are checked now, or None if a
    member's header is not where equal lengths put it, or lacks its ``\r\n``.  A
    header is checked as soon as it has arrived (so the first member of another length
    is noticed before the reply ends: its header is where equal lengths put it), a
    member's ``\r\n`` once it has.
    """
    if not layout.members:
        return received
    head = len(layout.head)
    first, stride = layout.first, layout.stride
    # Members [k0, k1) have their header checked, [k0, k2) their \r\n too.
    k0 = 0 if done <= first else (done - first) // stride
    k1 = min(
        layout.members,
        max(0, received - first - head) // stride + 1 if received >= first + head else 0,
    )
    k2 = min(layout.members, max(0, received - first) // stride)
    if k1 > k0:
        starts = first + np.arange(k0, k1, dtype=np.int64) * stride
        for i, byte in enumerate(layout.head):
            if not (buffer[starts + i] == byte).all():
                return None
    if k2 > k0:
        ends = first + np.arange(k0 + 1, k2 + 1, dtype=np.int64) * stride
        if not ((buffer[ends - 2] == 13).all() and (buffer[ends - 1] == 10).all()):
            return None
    return first + k2 * stride
