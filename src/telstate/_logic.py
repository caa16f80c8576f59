"""The rules of the telescope state, shared by the sync and asyncio front ends.

Nothing here does I/O.  Simple operations are "prepare, one backend call,
finish": the front ends call the pure helpers below around a single backend
call, adding only ``await`` in the asyncio version.  Waits take several steps
(check, subscribe, check again, then react to updates), so they are written
once as generators that *yield* requests and receive the replies (the h11 /
sans-I/O pattern); :mod:`telstate.client` and :mod:`telstate.aio` each drive
them with their own kind of I/O and own the clocks (timeouts, cancellation).

Wait semantics: ``wait_key`` returns once the key exists under some prefix of
the view and ``condition(value, timestamp)`` holds for the first prefix that
has it (timestamp None for non-sensors, the dict of an indexed key).  When an
update arrives for that key, the condition sees the value the update carries,
so a waiter for "a sample above 5" is woken by such a sample even if a later
one is already stored.  ``wait_indexed`` is the same for one sub-key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._codec import (
    ENCODING_DEFAULT,
    ENCODING_MSGPACK,
    decode_value,
    encode_value,
    equal_encoded_values,
)
from ._errors import DecodeError, ImmutableKeyError, TimeoutError
from ._keys import SEPARATOR, KeyType, display_str, ensure_bytes, ensure_str, view_prefixes
from ._ranges import check_timestamp
from ._updates import KeyUpdate
from .backends.base import Write

__all__ = [
    "Call",
    "NextUpdate",
    "PipelineBase",
    "Subscribe",
    "TelescopeStateBase",
    "check_immutable_change",
    "decode_found",
    "encode_sub_key",
    "wait_indexed_steps",
    "wait_key_steps",
]

logger = logging.getLogger("telstate")

_B = TypeVar("_B")
_Self = TypeVar("_Self", bound="TelescopeStateBase[Any]")

KeyCondition = Callable[[Any, float | None], bool]
IndexedCondition = Callable[[Any], bool]


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


def decode_payload(key_type: KeyType, payload: bytes | dict[bytes, bytes]) -> Any:
    """Decoded value of a key's payload (a dict for an indexed key)."""
    if isinstance(payload, dict):
        return {decode_value(k): decode_value(v) for k, v in payload.items()}
    return decode_value(payload)


def decode_found(
    found: tuple[int, KeyType, bytes | dict[bytes, bytes], float | None], return_encoded: bool
) -> Any:
    """The value :meth:`get` returns for what the backend found."""
    payload = found[2]
    if return_encoded:
        return payload
    if type(payload) is bytes:
        return decode_value(payload)
    return decode_payload(found[1], payload)


def make_write(
    full_key: bytes,
    value: Any,
    ts: float | None,
    immutable: bool,
    encoding: bytes,
    now: Callable[[], float],
) -> Write:
    """Validate and encode one ``add`` into a :class:`Write` (nothing is written yet)."""
    encoded = encode_value(value, encoding)
    if immutable:
        return Write(KeyType.IMMUTABLE, full_key, encoded)
    timestamp = now() if ts is None else check_timestamp(ts)
    return Write(KeyType.MUTABLE, full_key, encoded, timestamp)


def make_indexed_write(full_key: bytes, sub_key: Any, value: Any, encoding: bytes) -> Write:
    """Validate and encode one ``set_indexed`` into a :class:`Write`."""
    return Write(
        KeyType.INDEXED, full_key, encode_value(value, encoding), sub_key=encode_sub_key(sub_key)
    )


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
        elif result is not None and result != write.value:  # equal bytes: nothing to check
            what = display_str(write.key)
            if write.sub_key is not None:
                what = f"{what}[{_describe_value(write.sub_key)!r}]"
            try:
                value = values[i] if values is not None else _describe_value(write.value)
                check_immutable_change(what, result, write.value, value)
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
        self._writes.append(make_write(full_key, value, ts, immutable, encoding, time.time))
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


# --------------------------------------------------------------------------- waits


@dataclass(frozen=True, slots=True)
class Call:
    """Request: call ``backend.<method>(*args)`` and send back the result."""

    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Request: subscribe to the updates of ``keys`` (reply: None)."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NextUpdate:
    """Request: the next update (a KeyUpdate or Recheck), waiting as long as allowed."""


_NEXT = NextUpdate()
Step = Generator[Call | Subscribe | NextUpdate, Any, None]


def _key_holds(found: Any, condition: KeyCondition | None) -> bool:
    if found is None:
        return False
    if condition is None:
        return True
    return condition(decode_payload(found[1], found[2]), found[3])


def wait_key_steps(keys: tuple[bytes, ...], condition: KeyCondition | None) -> Step:
    """Steps of ``wait_key``: finishes when the key exists and the condition holds."""
    if _key_holds((yield Call("get", (keys,))), condition):
        return
    yield Subscribe(keys)
    if _key_holds((yield Call("get", (keys,))), condition):
        return
    while True:
        update = yield _NEXT
        if isinstance(update, KeyUpdate):
            if condition is None:
                return  # a write to any of the keys: the key exists now
            if update.key_type is not KeyType.INDEXED and update.key in keys:
                pos = keys.index(update.key)
                shadowed = pos > 0 and (yield Call("exists", (keys[:pos],)))
                if not shadowed:
                    if condition(decode_value(update.value), update.timestamp):
                        return
                    continue
        if _key_holds((yield Call("get", (keys,))), condition):
            return


def _indexed_holds(found: Any, condition: IndexedCondition | None) -> bool:
    if found is None or found[1] is None:
        return False
    return condition is None or condition(decode_value(found[1]))


def wait_indexed_steps(
    keys: tuple[bytes, ...], sub_key: bytes, condition: IndexedCondition | None, what: str
) -> Step:
    """Steps of ``wait_indexed``: finishes when the sub-key exists and the condition holds."""
    if _indexed_holds((yield Call("get_indexed", (keys, sub_key))), condition):
        return
    yield Subscribe(keys)
    if _indexed_holds((yield Call("get_indexed", (keys, sub_key))), condition):
        return
    while True:
        update = yield _NEXT
        if isinstance(update, KeyUpdate):
            if update.key_type is not KeyType.INDEXED:
                raise ImmutableKeyError(f"wait_indexed called on non-indexed key {what}")
            if update.sub_key != sub_key:
                continue
            if update.key == keys[0]:
                if condition is None or condition(decode_value(update.value)):
                    return
                continue
        if _indexed_holds((yield Call("get_indexed", (keys, sub_key))), condition):
            return


def wait_timed_out(
    what: str, timeout: float | None, cause: Exception | None = None
) -> TimeoutError:
    """The error of a wait whose timeout passed (`cause`: a call that gave up at it)."""
    detail = f" ({cause})" if cause is not None else ""
    return TimeoutError(f"Timed out waiting for {what} after {timeout}s{detail}")


def describe(key: str | bytes, sub_key: Any = None, indexed: bool = False) -> str:
    """How messages name a key (and sub-key)."""
    return f"{display_str(key)}[{sub_key!r}]" if indexed else display_str(key)
