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
from typing import Any

import hiredis

__all__ = ["ProtocolError", "ReplyError", "Reader", "error_code", "pack", "words"]

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
