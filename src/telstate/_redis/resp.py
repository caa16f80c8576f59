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

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import hiredis

from .._reply import Regular
from .._strided import rows_match

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
    "members_walk",
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
    append = parts.append
    for command in commands:
        count = len(command)
        append(_COUNTS[count] if count < _HEADERS else b"*%d\r\n" % count)
        for item in command:
            if type(item) is bytes:
                size = len(item)
                append(_SIZES[size] if size < _HEADERS else b"$%d\r\n" % size)
                append(item)
                append(b"\r\n")
            else:  # a command name (packed once, then looked up) or a number
                packed = _NAMES.get(item) if type(item) is str else None
                append(packed if packed is not None else _packed_word(item))
    return b"".join(parts)


#: Headers ready-made for the usual counts and sizes (of keys, members, values).
_HEADERS = 256
_COUNTS = [b"*%d\r\n" % n for n in range(_HEADERS)]
_SIZES = [b"$%d\r\n" % n for n in range(_HEADERS)]
#: Words given as str (command names, mostly), packed; at most _MAX_NAMES are kept.
_NAMES: dict[str, bytes] = {}
_MAX_NAMES = 1024


def _packed_word(item: Any) -> bytes:
    data = _word(item)
    packed = BULK % (len(data), data)
    if type(item) is str and len(_NAMES) < _MAX_NAMES:
        _NAMES[item] = packed
    return packed


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
# checked where equal lengths put it as the bytes arrive (with the \r\n before it, as a
# few integer comparisons of strided views: telstate._strided), so a reply of another
# shape (another type, members of several lengths, an error) is noticed before its end:
# nothing is ever waited for that will not come.  Members of several lengths are then
# stepped over one by one (members_walk), up to a few thousand; anything else is handed
# to hiredis whole.
# The read of a key that does not exist has a fixed shape too (+none, *0), so the reads
# after it stay raw.  The checked layout travels with the array (RawArray.regular).


class RawArray(NamedTuple):
    """A RESP array of bulk strings, as the server sent it (``*N\\r\\n$L\\r\\n...``),
    with its layout if the reader has checked every header (:func:`members_regular`)."""

    data: memoryview
    regular: Regular | None = None


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
    end: int  # offset just after the array: first + members * stride
    missing: bool = False  # the key does not exist: TYPE said none, the array is empty

    def regular(self) -> Regular:
        """The layout of the members array alone (offsets from its ``*N``), once checked."""
        return Regular(self.members, self.first - self.start, len(self.head), self.stride)


@functools.lru_cache(maxsize=8)
def _missing(prefix: bytes) -> bytes:
    """The whole replies of a read whose key does not exist (`prefix` ends ``+zset``)."""
    return prefix[: -len(b"+zset\r\n")] + b"+none\r\n*0\r\n"


@functools.lru_cache(maxsize=8)
def _plain_start(prefix: bytes) -> re.Pattern[bytes]:
    """`prefix`, ``*N`` and the first member's header ``$L``, all arrived."""
    return re.compile(re.escape(prefix) + rb"\*([0-9]{1,10})\r\n(\$[0-9]{1,10}\r\n)?")


def bulk_layout(data: bytes, prefix: bytes) -> BulkLayout | bool | None:
    """The layout of the members array after `prefix`, None if more bytes are needed,
    False if the replies do not have the shape of a successful read.

    The read of a key that does not exist (``+none``, an empty array) has a layout too,
    marked `missing`.
    """
    whole = _plain_start(prefix).match(data)
    if whole is not None:  # the usual case, in one step
        count, head = int(whole[1]), whole[2]
        first = len(prefix) + len(whole[1]) + 3
        if not count:
            return BulkLayout(len(prefix), first, 0, b"", 0, first)
        if head is not None:
            stride = len(head) + int(head[1:-2]) + 2
            return BulkLayout(len(prefix), first, count, head, stride, first + count * stride)
    missing = _missing(prefix)
    if len(data) < len(prefix):
        return None if prefix.startswith(data) or missing.startswith(data) else False
    if not data.startswith(prefix):
        if data.startswith(missing):
            end = len(missing)
            return BulkLayout(end - 4, end, 0, b"", 0, end, missing=True)
        return None if missing.startswith(data) else False
    start = len(prefix)
    line = data.find(b"\r\n", start)
    if line < 0:
        return None if len(data) - start < 12 else False
    if data[start : start + 1] != b"*" or not data[start + 1 : line].isdigit():
        return False
    count = int(data[start + 1 : line])
    first = line + 2
    if count == 0:
        return BulkLayout(start, first, 0, b"", 0, first)
    head_end = data.find(b"\r\n", first)
    if head_end < 0:
        return None if len(data) - first < 12 else False
    digits = bytes(data[first + 1 : head_end])
    if data[first : first + 1] != b"$" or not digits.isdigit() or len(digits) > 10:
        return False
    head = bytes(data[first : head_end + 2])
    stride = len(head) + int(digits) + 2
    return BulkLayout(start, first, count, head, stride, first + count * stride)


def members_regular(buffer: Any, layout: BulkLayout, done: int, received: int) -> int | None:
    """Check the members' headers that have arrived since the member at `done`.

    `buffer` holds the replies, of which `received` bytes have arrived, and `done` is
    where the first member not checked yet starts.  Returns where the first member
    whose header has not fully arrived starts (the end of the array once all of it
    has arrived and is checked), or None if a header is not where equal lengths put
    it.  Each header is checked with the ``\r\n`` before it (the previous member's,
    or the array header's): the first member of another length is noticed as soon
    as the next header has arrived, before the reply ends.
    """
    if not layout.members:
        return received
    first, stride, head, end = layout.first, layout.stride, layout.head, layout.end
    checked = 0 if done <= first else (done - first) // stride
    arrived = min(layout.members, (received - first - len(head)) // stride + 1)
    if arrived > checked and not rows_match(
        buffer, first + checked * stride - 2, stride, arrived - checked, b"\r\n" + head
    ):
        return None
    if received < end:
        return first + max(arrived, checked) * stride
    return end if buffer[end - 2] == 13 and buffer[end - 1] == 10 else None


def members_walk(data: Any, at: int, left: int, received: int) -> tuple[int, int] | None:
    """Step over the bulk strings from offset `at` in `data` that have arrived whole.

    For members of several lengths, whose array's end is known only once every
    header before it has been read: one step per member (so only for arrays of a
    few thousand members; hiredis reads bigger ones).  `left` members remain from
    `at`, and `received` bytes of `data` have arrived.  Returns where the walk
    stopped and how many members remain from there, or None if a header or a
    member's ``\r\n`` is not where one must be.
    """
    while left:
        head = bytes(data[at : min(received, at + _LONGEST_HEADER)])
        line = head.find(b"\r\n")
        if line < 0:
            if len(head) == _LONGEST_HEADER:
                return None
            break  # the header has not all arrived
        digits = head[1:line]
        if head[:1] != b"$" or not digits.isdigit():
            return None
        end = at + line + 2 + int(digits) + 2
        if end > received:
            break
        if bytes(data[end - 2 : end]) != b"\r\n":
            return None
        at = end
        left -= 1
    return at, left


#: "$", the 10 digits of any Redis string length, "\r\n".
_LONGEST_HEADER = 13
