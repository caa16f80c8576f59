"""Keys, key types and views.

A key is text for the user and bytes for the database: ``str`` keys are encoded
as UTF-8 with ``surrogateescape`` so that any byte string survives the round
trip.  A view is an ordered tuple of byte prefixes; a read looks for
``prefix + key`` under each prefix in turn and uses the first that exists, and
a write goes to ``prefixes[0] + key``.  ``view(name)`` puts ``name`` (plus the
separator ``_`` unless it already ends with one) in front.
"""

from __future__ import annotations

import enum

from ._errors import ImmutableKeyError

__all__ = [
    "SEPARATOR",
    "KeyType",
    "display_str",
    "ensure_bytes",
    "ensure_str",
    "view_prefixes",
    "wrong_type",
]

SEPARATOR = "_"
_SEPARATOR_BYTES = SEPARATOR.encode()


class KeyType(enum.Enum):
    """The three kinds of key (values match katsdptelstate's ``KeyType``)."""

    IMMUTABLE = 1
    MUTABLE = 2
    INDEXED = 3


def ensure_bytes(key: str | bytes) -> bytes:
    """Key as bytes: ``str`` is encoded as UTF-8 (surrogates escape raw bytes)."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be str or bytes, not {type(key).__name__}")


def ensure_str(key: str | bytes) -> str:
    """Key as text, the inverse of :func:`ensure_bytes`."""
    if isinstance(key, str):
        return key
    return key.decode("utf-8", "surrogateescape")


def display_str(key: str | bytes) -> str:
    """A readable and unambiguous rendering of a key for messages."""
    if isinstance(key, str):
        return repr(key)
    try:
        return repr(key.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(key)


def view_prefixes(
    prefixes: tuple[bytes, ...], name: str | bytes, add_separator: bool, exclusive: bool
) -> tuple[bytes, ...]:
    """Prefixes of the view ``view(name)`` made from a view with ``prefixes``."""
    prefix = ensure_bytes(name)
    if prefix and add_separator and not prefix.endswith(_SEPARATOR_BYTES):
        prefix += _SEPARATOR_BYTES
    return (prefix,) if exclusive else (prefix, *prefixes)


_TYPE_NAMES = {
    KeyType.IMMUTABLE: "an immutable key",
    KeyType.MUTABLE: "a sensor (mutable key)",
    KeyType.INDEXED: "an indexed key",
}


def wrong_type(key: bytes, wanted: KeyType, found: KeyType | None = None) -> ImmutableKeyError:
    """The error for using `key` as a `wanted` key when it exists as another type."""
    what = _TYPE_NAMES[found] if found is not None else "a key of another type"
    return ImmutableKeyError(f"{display_str(key)} is {what}, not {_TYPE_NAMES[wanted]}")
