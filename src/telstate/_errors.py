"""The exception hierarchy.

Names and base classes are those of katsdptelstate, so that ``except
katsdptelstate.ImmutableKeyError`` in existing code catches ours (see
:mod:`telstate.compat`).  Every error we raise on purpose derives from
:class:`TelstateError`; decoding and encoding problems are also instances of
:exc:`ValueError`.
"""

from __future__ import annotations

import os

__all__ = [
    "CancelledError",
    "ConnectionError",
    "DecodeError",
    "EncodeError",
    "ImmutableKeyError",
    "InvalidKeyError",
    "InvalidTimestampError",
    "RdbParseError",
    "TelstateError",
    "TimeoutError",
    "UnconfirmedWriteError",
]


class TelstateError(RuntimeError):
    """Base class of every error raised by telstate."""


class ConnectionError(TelstateError):
    """The database server could not be reached."""


class UnconfirmedWriteError(ConnectionError):
    """Writes reached the primary but not enough replicas acknowledged them in time.

    Raised by Redis backends with ``min_replicas``: the writes may or may not
    survive the loss of the primary.  They are idempotent, so sending them again
    is safe.
    """


class InvalidKeyError(TelstateError):
    """Kept for compatibility: a key that collides with an attribute is not an error."""


class InvalidTimestampError(TelstateError):
    """A timestamp is negative, infinite or NaN where a sample time is needed."""


class ImmutableKeyError(TelstateError):
    """An immutable key (or sub-key) would change, or a key is used as the wrong type."""


class TimeoutError(TelstateError):
    """A wait did not succeed within its timeout."""


class CancelledError(TelstateError):
    """A wait was cancelled through its cancellation future."""


class DecodeError(ValueError, TelstateError):
    """Stored bytes could not be decoded into a value."""


class EncodeError(ValueError, TelstateError):
    """A value cannot be encoded for storage."""


class RdbParseError(TelstateError):
    """An RDB dump file could not be parsed.

    Parameters
    ----------
    filename
        The file (path or description) being read, if known.
    offset
        Byte offset in the file where the problem was found, if known.
    key
        The key being read at the time, if known.
    reason
        What was wrong.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | bytes | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(filename, offset, key, reason)
        self.filename = filename
        self.offset = offset
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        name = repr(os.fsdecode(self.filename)) if self.filename else "object"
        text = f"Invalid RDB file {name}"
        if self.offset is not None:
            text += f" at offset {self.offset}"
        if self.key is not None:
            text += f" in key {self.key!r}"
        if self.reason:
            text += f": {self.reason}"
        return text
