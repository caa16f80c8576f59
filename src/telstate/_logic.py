"""The rules of the telescope state above the backends, shared by both front ends.

Nothing here does I/O.  An operation of one backend call is "prepare, call,
finish": a front-end method resolves the view into candidate keys
(:class:`TelescopeStateBase`), encodes and checks a write (:func:`make_write`)
or resolves a time range, makes the one call, and finishes with a helper below
(:func:`check_written`, :func:`decode_found`), so the sync and asyncio methods
differ only by ``await``.  Operations of several steps (waits, ``watch``,
loading and saving files) are plans in :mod:`telstate._plans`.

Immutables are check-and-set: the backend stores a value only if the key (or
sub-key) is absent and otherwise returns what it holds; the front end then
accepts an equal value (:func:`check_immutable_change`) and raises otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from ._arrays import SampleArrays
from ._codec import (
    ENCODING_DEFAULT,
    ENCODING_MSGPACK,
    decode_value,
    encode_value,
    equal_encoded_values,
)
from ._errors import DecodeError, ImmutableKeyError
from ._keys import SEPARATOR, KeyType, display_str, ensure_bytes, ensure_str, view_prefixes
from ._ranges import check_timestamp
from ._samples import SampleBatch, _young_collections_paused, decode_batch
from .backends.base import Found, Write

__all__ = [
    "PipelineBase",
    "TelescopeStateBase",
    "check_batch",
    "check_immutable_change",
    "check_written",
    "decode_found",
    "describe",
    "encode_sub_key",
    "make_indexed_write",
    "make_sample",
    "make_write",
    "range_arrays",
    "range_result",
    "ranges_result",
]

logger = logging.getLogger("telstate")

_B = TypeVar("_B")
_Self = TypeVar("_Self", bound="TelescopeStateBase[Any]")


class TelescopeStateBase(Generic[_B]):
    """Views and key naming, common to the sync and asyncio TelescopeState."""

    SEPARATOR = SEPARATOR
    SEPARATOR_BYTES = SEPARATOR.encode()

    _backend: _B
    _prefixes: tuple[bytes, ...]

    def _init_view(
        self, backend: _B | None, prefixes: Sequence[str | bytes], base: Any | None
    ) -> None:
        if base is not None and backend is not None:
            raise ValueError("cannot specify both base and backend")
        if base is not None:
            backend = base._backend
        if backend is None:
            raise ValueError("must specify either base or backend")
        if isinstance(prefixes, str | bytes):
            raise TypeError("prefixes must be a sequence of str or bytes, not a single one")
        self._backend = backend
        self._prefixes = tuple(ensure_bytes(prefix) for prefix in prefixes)
        if not self._prefixes:
            raise ValueError("a view needs at least one prefix")
        self._write_prefix = self._prefixes[0]
        self._single = self._prefixes == (b"",)

    def _full_keys(self, key: str | bytes) -> tuple[bytes, ...]:
        """The keys a read of `key` tries, in order."""
        key_b = key.encode() if type(key) is str and key.isascii() else ensure_bytes(key)
        if self._single:
            return (key_b,)
        return tuple(prefix + key_b for prefix in self._prefixes)

    def _write_key(self, key: str | bytes) -> bytes:
        """The full key that a write of `key` goes to."""
        key_b = key.encode() if type(key) is str and key.isascii() else ensure_bytes(key)
        return self._write_prefix + key_b

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The view's prefixes, highest priority first."""
        return tuple(ensure_str(prefix) for prefix in self._prefixes)

    @property
    def backend(self) -> _B:
        """The backend holding the data."""
        return self._backend

    @classmethod
    def join(cls, *names: str) -> str:
        """Join key name parts with the separator (``_``)."""
        return cls.SEPARATOR.join(names)

    def view(
        self: _Self, name: str | bytes, add_separator: bool = True, exclusive: bool = False
    ) -> _Self:
        """A view with `name` as its first prefix.

        Parameters
        ----------
        name
            Namespace; the separator is appended unless it is empty, already ends
            with one, or `add_separator` is false.
        add_separator
            Whether to append the separator.
        exclusive
            If true, `name` is the only prefix; otherwise the existing prefixes
            follow it (reads fall back to them, writes go to `name`).
        """
        prefixes = view_prefixes(self._prefixes, name, add_separator, exclusive)
        return type(self)(prefixes=prefixes, base=self)  # type: ignore[call-arg]

    def root(self: _Self) -> _Self:
        """A view with only the root (empty) prefix."""
        return type(self)(base=self)  # type: ignore[call-arg]

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{name} prefixes={self.prefixes!r} backend={self._backend!r}>"


# --------------------------------------------------------------------------- simple operations


def check_immutable_change(what: str, old: bytes, new: bytes, new_value: Any) -> None:
    """Accept re-setting an immutable value to an equal one; raise otherwise."""
    try:
        if equal_encoded_values(new, old):
            logger.debug("%s set again to the same value", what)
            return
        raise ImmutableKeyError(
            f"Attempt to change value of immutable key {what} from "
            f"{decode_value(old)!r} to {new_value!r}"
        )
    except DecodeError as exc:
        raise ImmutableKeyError(
            f"Attempt to set immutable key {what} to {new_value!r}, but failed to decode "
            f"the previous value to compare (its stored value cannot be decoded: {exc})"
        ) from exc


def encode_sub_key(sub_key: Any) -> bytes:
    """Encoded sub-key: always MessagePack, so lookups need not know how it was written."""
    hash(sub_key)  # unhashable sub-keys could never be found again in the dict from get()
    return encode_value(sub_key, ENCODING_MSGPACK)


def decode_payload(payload: bytes | dict[bytes, bytes]) -> Any:
    """Decoded value of a key's payload (a dict for an indexed key)."""
    if isinstance(payload, dict):
        return {decode_value(k): decode_value(v) for k, v in payload.items()}
    return decode_value(payload)


def decode_found(found: Found, return_encoded: bool) -> Any:
    """The value :meth:`get` returns for what the backend found."""
    payload = found[1]
    if return_encoded:
        return payload
    return decode_payload(payload)


def make_sample(value: Any, ts: float | None, encoding: bytes) -> tuple[bytes, float]:
    """Validate and encode a sensor sample: its value's bytes and its timestamp (default now)."""
    return encode_value(value, encoding), time.time() if ts is None else check_timestamp(ts)


def make_write(
    full_key: bytes, value: Any, ts: float | None, immutable: bool, encoding: bytes
) -> Write:
    """Validate and encode one ``add`` into a :class:`Write` (nothing is written yet)."""
    if immutable:
        return Write(KeyType.IMMUTABLE, full_key, encode_value(value, encoding))
    return Write(KeyType.MUTABLE, full_key, *make_sample(value, ts, encoding))


def make_indexed_write(full_key: bytes, sub_key: Any, value: Any, encoding: bytes) -> Write:
    """Validate and encode one ``set_indexed`` into a :class:`Write`."""
    return Write(
        KeyType.INDEXED, full_key, encode_value(value, encoding), sub_key=encode_sub_key(sub_key)
    )


def check_written(write: Write, value: Any, stored: bytes | None) -> None:
    """Raise ImmutableKeyError if a write of an immutable or sub-key met another value.

    `stored` is what the backend answered: None (written, or a sample), or the
    value it already holds; `value` is the value before encoding, for messages.
    """
    if stored is None or stored == write.value:  # equal bytes: nothing to check
        return
    what = display_str(write.key)
    if write.sub_key is not None:
        what = f"{what}[{_describe_value(write.sub_key)!r}]"
    check_immutable_change(what, stored, write.value, value)


def check_batch(
    writes: Sequence[Write], values: Sequence[Any] | None, results: Sequence[Any]
) -> None:
    """Raise the first error of a written batch (all its other writes stand).

    `values` are the values before encoding, for messages (decoded if None).
    """
    errors: list[ImmutableKeyError] = []
    for i, (write, result) in enumerate(zip(writes, results, strict=True)):
        if isinstance(result, ImmutableKeyError):
            errors.append(result)
            continue
        if result is None or result == write.value:
            continue
        try:
            value = values[i] if values is not None else _describe_value(write.value)
            check_written(write, value, result)
        except ImmutableKeyError as exc:
            errors.append(exc)
    if errors:
        more = f" (and {len(errors) - 1} more failed writes)" if len(errors) > 1 else ""
        raise ImmutableKeyError(f"{errors[0]}{more}; the batch's other writes were applied")


def _describe_value(encoded: bytes) -> Any:
    try:
        return decode_value(encoded)
    except DecodeError:
        return encoded


class PipelineBase:
    """Writes queued for one round trip: the part shared by the sync and asyncio pipelines.

    Each write is checked and encoded when it is queued, so bad input raises
    before anything is sent; subclasses send the batch (:func:`check_batch` then
    raises the first conflict).
    """

    def __init__(self, ts: TelescopeStateBase[Any]) -> None:
        self._ts = ts
        self._writes: list[Write] = []
        self._values: list[Any] = []

    def __len__(self) -> int:
        return len(self._writes)

    def add(
        self,
        key: str | bytes,
        value: Any,
        ts: float | None = None,
        immutable: bool = False,
        encoding: bytes = ENCODING_DEFAULT,
    ) -> None:
        """Queue ``add`` (see :meth:`telstate.TelescopeState.add`)."""
        full_key = self._ts._write_key(key)
        self._writes.append(make_write(full_key, value, ts, immutable, encoding))
        self._values.append(value)

    def set(self, key: str | bytes, value: Any, encoding: bytes = ENCODING_DEFAULT) -> None:
        """Queue ``set``: an immutable."""
        self.add(key, value, immutable=True, encoding=encoding)

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        self.add(key, value, immutable=True)

    def set_indexed(
        self, key: str | bytes, sub_key: Any, value: Any, encoding: bytes = ENCODING_DEFAULT
    ) -> None:
        """Queue ``set_indexed`` (see :meth:`telstate.TelescopeState.set_indexed`)."""
        full_key = self._ts._write_key(key)
        self._writes.append(make_indexed_write(full_key, sub_key, value, encoding))
        self._values.append(value)

    def _take(self) -> tuple[list[Write], list[Any]]:
        """The queued writes and their values, leaving the queue empty."""
        taken = self._writes, self._values
        self._writes, self._values = [], []
        return taken


def range_result(
    key: str | bytes, batch: SampleBatch | None, return_encoded: bool
) -> list[tuple[Any, float]]:
    """What ``get_range`` returns for what the backend found."""
    if batch is None:
        raise KeyError(f"{display_str(key)} not found")
    return batch.encoded() if return_encoded else decode_batch(batch)


def range_arrays(key: str | bytes, arrays: SampleArrays | None) -> SampleArrays:
    """What ``get_range_arrays`` returns for what the backend found."""
    if arrays is None:
        raise KeyError(f"{display_str(key)} not found")
    return arrays


def ranges_result(
    keys: Sequence[str | bytes], found: Sequence[SampleBatch | SampleArrays | None]
) -> dict[str | bytes, Any]:
    """What ``get_ranges`` returns: each sensor found, by the name it was asked by.

    `found` holds batches (decoded here) or, for ``arrays=True``, the backend's arrays.
    """
    items = [(key, item) for key, item in zip(keys, found, strict=True) if item is not None]
    samples = sum(len(item) for _, item in items if isinstance(item, SampleBatch))
    # Many tuples to build: as decode_batch does for one big batch
    with _young_collections_paused() if samples >= _MANY_SAMPLES else contextlib.nullcontext():
        return {
            key: decode_batch(item) if isinstance(item, SampleBatch) else item
            for key, item in items
        }


# Samples from which get_ranges pauses young garbage collections while it builds tuples.
_MANY_SAMPLES = 10_000


def describe(key: str | bytes, sub_key: Any = None, indexed: bool = False) -> str:
    """How messages name a key (and sub-key)."""
    return f"{display_str(key)}[{sub_key!r}]" if indexed else display_str(key)
