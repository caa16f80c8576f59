"""Operations of several steps, written once for the sync and asyncio front ends.

A *plan* is a generator that yields requests and is sent the replies (the
sans-I/O pattern of h11 and psycopg 3): it holds the rules, and a driver
(:mod:`telstate._drivers`) does the I/O, with a sync or an asyncio backend,
and owns the clocks (timeouts, cancellation).  A plan yields

* a :class:`Request` — one backend call, whose reply type mypy knows through
  :func:`ask` (``found = yield from ask(Get(keys))`` types ``found``);
* :class:`Subscribe` / :class:`NextUpdate` — start receiving a key's updates,
  then wait for the next one (as long as the wait's deadline allows);
* :class:`Emit` — hand an item to the caller (``watch`` yields it);
* :class:`InThread` — run a pure, CPU-heavy function (encoding a file's worth
  of keys) where it does not block an event loop.

Operations of ONE backend call (get, add, get_range…) are not plans: the front
ends call the backend method directly between pure helpers of :mod:`._logic`
(the method's signature types the reply).  Creating and running a generator
costs ~0.5 µs, 40 % of an in-memory ``get``; one call needs no driver.

Wait semantics: ``wait_key`` returns once the key exists under some prefix of
the view and ``condition(value, timestamp)`` holds for the first prefix that
has it (timestamp None for non-sensors, the dict of an indexed key).  When an
update arrives for that key, the condition sees the value the update carries,
so a waiter for "a sample above 5" is woken by such a sample even if a later
one is already stored.  ``wait_indexed`` is the same for one sub-key.  The
plans look at the key, subscribe, look again (so no write between the two is
missed), then react to updates; a :class:`~._updates.Recheck` (updates may have
been lost) makes them look again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._codec import decode_value
from ._errors import ImmutableKeyError
from ._keys import KeyType
from ._logic import check_batch, decode_found, decode_payload
from ._ranges import RangeQuery, resolve_range
from ._samples import SampleBatch
from ._updates import KeyUpdate
from .backends.base import Found, Snapshot, Write

if TYPE_CHECKING:
    from .rdb._reader import RdbIndex

__all__ = [
    "Emit",
    "Exists",
    "Get",
    "GetIndexed",
    "GetRange",
    "InThread",
    "NextUpdate",
    "Plan",
    "Request",
    "Subscribe",
    "ask",
    "load",
    "wait_indexed",
    "wait_key",
    "watch",
]

T = TypeVar("T")

KeyCondition = Callable[[Any, float | None], bool]
IndexedCondition = Callable[[Any], bool]


# --------------------------------------------------------------------------- requests


class Request(Generic[T]):
    """One backend call whose reply is a ``T``.

    :meth:`to` makes the call on a backend: on a sync backend it returns the
    reply, on an asyncio backend (same method names) an awaitable of it.
    """

    __slots__ = ()

    def to(self, backend: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Get(Request[Found | None]):
    """:meth:`~telstate.backends.Backend.get`."""

    keys: Sequence[bytes]

    def to(self, backend: Any) -> Any:
        return backend.get(self.keys)


@dataclass(frozen=True, slots=True)
class Exists(Request[bool]):
    """:meth:`~telstate.backends.Backend.exists`."""

    keys: Sequence[bytes]

    def to(self, backend: Any) -> Any:
        return backend.exists(self.keys)


@dataclass(frozen=True, slots=True)
class GetIndexed(Request[tuple[int, bytes | None] | None]):
    """:meth:`~telstate.backends.Backend.get_indexed`."""

    keys: Sequence[bytes]
    sub_key: bytes

    def to(self, backend: Any) -> Any:
        return backend.get_indexed(self.keys, self.sub_key)


@dataclass(frozen=True, slots=True)
class GetRange(Request[SampleBatch | None]):
    """:meth:`~telstate.backends.Backend.get_range`."""

    keys: Sequence[bytes]
    query: RangeQuery

    def to(self, backend: Any) -> Any:
        return backend.get_range(self.keys, self.query)


@dataclass(frozen=True, slots=True)
class Keys(Request[list[bytes]]):
    """:meth:`~telstate.backends.Backend.keys`."""

    pattern: bytes

    def to(self, backend: Any) -> Any:
        return backend.keys(self.pattern)


@dataclass(frozen=True, slots=True)
class WriteBatch(Request[list[bytes | ImmutableKeyError | None]]):
    """:meth:`~telstate.backends.Backend.write_batch`."""

    writes: Sequence[Write]

    def to(self, backend: Any) -> Any:
        return backend.write_batch(self.writes)


@dataclass(frozen=True, slots=True)
class Snapshots(Request[list[Snapshot | None]]):
    """:meth:`~telstate.backends.Backend.snapshot`."""

    keys: Sequence[bytes]

    def to(self, backend: Any) -> Any:
        return backend.snapshot(self.keys)


@dataclass(frozen=True, slots=True)
class Dumps(Request[list[bytes | None]]):
    """:meth:`~telstate.backends.Backend.dumps` (only if the backend ``supports_dump``)."""

    keys: Sequence[bytes]

    def to(self, backend: Any) -> Any:
        return backend.dumps(self.keys)


@dataclass(frozen=True, slots=True)
class LoadNewKeys(Request[list[bytes]]):
    """:meth:`~telstate.backends.Backend.load_new_keys`."""

    index: RdbIndex

    def to(self, backend: Any) -> Any:
        return backend.load_new_keys(self.index)


def ask(request: Request[T]) -> Generator[Request[T], Any, T]:
    """Yield `request` and return its reply, typed: ``reply = yield from ask(request)``."""
    reply: T = yield request
    return reply


# --------------------------------------------------------------------------- driver requests


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Start receiving the updates of `keys` (reply: None)."""

    keys: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class NextUpdate:
    """The next update (a KeyUpdate or Recheck), waiting as long as the deadline allows."""


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand `item` to the caller (reply: None)."""

    item: Any


@dataclass(frozen=True, slots=True)
class InThread:
    """Call ``func()`` away from an event loop (in a worker thread); reply: its result."""

    func: Callable[[], Any]


_NEXT = NextUpdate()
Step = Request[Any] | Subscribe | NextUpdate | Emit | InThread
#: A plan returning a ``T``.
Plan = Generator[Step, Any, T]


# --------------------------------------------------------------------------- waits


def _key_holds(found: Found | None, condition: KeyCondition | None) -> bool:
    if found is None:
        return False
    if condition is None:
        return True
    return condition(decode_payload(found[1]), found[2])


def wait_key(keys: Sequence[bytes], condition: KeyCondition | None) -> Plan[None]:
    """``wait_key``: finishes when the key exists and the condition holds."""
    if _key_holds((yield from ask(Get(keys))), condition):
        return
    yield Subscribe(keys)
    if _key_holds((yield from ask(Get(keys))), condition):
        return
    while True:
        update = yield _NEXT
        if isinstance(update, KeyUpdate):
            if condition is None:
                return  # a write to any of the keys: the key exists now
            if update.key_type is not KeyType.INDEXED and update.key in keys:
                pos = list(keys).index(update.key)
                shadowed = pos > 0 and (yield from ask(Exists(keys[:pos])))
                if not shadowed:
                    if condition(decode_value(update.value), update.timestamp):
                        return
                    continue
        if _key_holds((yield from ask(Get(keys))), condition):
            return


def _indexed_holds(
    found: tuple[int, bytes | None] | None, condition: IndexedCondition | None
) -> bool:
    if found is None or found[1] is None:
        return False
    return condition is None or condition(decode_value(found[1]))


def wait_indexed(
    keys: Sequence[bytes], sub_key: bytes, condition: IndexedCondition | None, what: str
) -> Plan[None]:
    """``wait_indexed``: finishes when the sub-key exists and the condition holds."""
    if _indexed_holds((yield from ask(GetIndexed(keys, sub_key))), condition):
        return
    yield Subscribe(keys)
    if _indexed_holds((yield from ask(GetIndexed(keys, sub_key))), condition):
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
        if _indexed_holds((yield from ask(GetIndexed(keys, sub_key))), condition):
            return


# --------------------------------------------------------------------------- watch


def watch(key: bytes, initial: bool) -> Plan[None]:
    """Every update of `key` as :class:`Emit` of ``(value, timestamp)``.

    A sensor sample is ``(value, timestamp)``, an immutable ``(value, None)``
    (and the end of the watch), a new sub-key of an indexed key
    ``({sub_key: value}, None)``.  With `initial`, the key's current state comes
    first.  After a :class:`~._updates.Recheck` the stored data fills the gap:
    a sensor's samples since the last one seen, an indexed key's new sub-keys,
    an immutable that appeared.

    The subscription starts before the first read, and catch-up reads overlap
    notifications, so a sample may be read before its notification arrives:
    each one read ahead is remembered and skipped once when it does.
    """
    keys = (key,)
    yield Subscribe(keys)
    last_ts: float | None = None
    seen: set[bytes] = set()  # sub-keys already emitted
    read_ahead: set[tuple[float, bytes]] = set()
    found = yield from ask(Get(keys))
    if found is not None:
        kind, payload, stamp = found
        last_ts = stamp
        if isinstance(payload, dict):
            seen.update(payload)
        elif stamp is not None:
            read_ahead.add((stamp, payload))
        if initial:
            yield Emit((decode_found(found, False), stamp))
        if kind is KeyType.IMMUTABLE:
            return
    while True:
        update = yield _NEXT
        if isinstance(update, KeyUpdate):
            if update.key_type is KeyType.INDEXED:
                assert update.sub_key is not None
                if update.sub_key not in seen:
                    seen.add(update.sub_key)
                    yield Emit(({decode_value(update.sub_key): decode_value(update.value)}, None))
                continue
            if update.timestamp is not None:
                if (update.timestamp, update.value) in read_ahead:
                    read_ahead.discard((update.timestamp, update.value))
                    continue
                last_ts = max(update.timestamp, last_ts or 0.0)
            yield Emit((decode_value(update.value), update.timestamp))
            if update.key_type is KeyType.IMMUTABLE:
                return
            continue
        # Updates may have been missed: catch up from the stored data.
        found = yield from ask(Get(keys))
        if found is None:
            continue
        if found[0] is KeyType.MUTABLE:
            since = resolve_range(last_ts if last_ts is not None else 0.0, None, False, False)
            batch = yield from ask(GetRange(keys, since))
            for raw, stamp in batch.encoded() if batch is not None else []:
                if last_ts is None or stamp > last_ts:
                    last_ts = stamp
                    read_ahead.add((stamp, raw))
                    yield Emit((decode_value(raw), stamp))
        elif isinstance(found[1], dict):
            for sub_key, value in found[1].items():
                if sub_key not in seen:
                    seen.add(sub_key)
                    yield Emit(({decode_value(sub_key): decode_value(value)}, None))
        else:
            yield Emit((decode_found(found, False), None))
            return


# --------------------------------------------------------------------------- RDB files


def load(index: RdbIndex) -> Plan[int]:
    """Add the keys of a parsed RDB file; return how many the file holds.

    Loading adds the file's keys as if each of its values were written with
    the ordinary write calls.  A key the backend lacks is created whole (the
    fast path: the backend's :meth:`~telstate.backends.Backend.load_new_keys`,
    which decodes or checks everything before it changes anything); a key that
    exists is merged item by item: sensor samples are added, sub-keys and
    immutables are set if absent and must otherwise be equal (an
    ImmutableKeyError names the conflicts once everything else is loaded).
    Keys of types telstate does not use are skipped by the index.  Loading
    notifies no waiters (katsdptelstate does not either).
    """
    existing = yield from ask(LoadNewKeys(index))
    if existing:
        writes: list[Write] = yield InThread(lambda: merge_writes(index, existing))
        check_batch(writes, None, (yield from ask(WriteBatch(writes))))
    return len(index.entries)


def merge_writes(index: RdbIndex, keys: Iterable[bytes]) -> list[Write]:
    """The writes that merge `keys` from the file into existing keys."""
    writes: list[Write] = []
    for key in keys:
        kind = index.key_type(index.entries[key])
        if kind is KeyType.IMMUTABLE:
            value = index.read(key)
            assert isinstance(value, bytes)
            writes.append(Write(kind, key, value))
        elif kind is KeyType.MUTABLE:
            batch = index.read_samples(key)
            writes += [Write(kind, key, value, ts) for value, ts in batch.encoded()]
        else:
            fields = index.read(key)
            assert isinstance(fields, dict)
            writes += [Write(kind, key, value, sub_key=sub) for sub, value in fields.items()]
    return writes


#: Keys read from the backend per batch when saving a file.
SAVE_CHUNK = 256


def save(
    names: Iterable[bytes] | None,
    dumps: bool,
    write_dumps: Callable[[Sequence[bytes], list[bytes | None]], None],
    write_snapshots: Callable[[Sequence[bytes], list[Snapshot | None]], None],
) -> Plan[None]:
    """Read keys (default: all) in batches and hand each batch to a file writer.

    With `dumps` (the backend ``supports_dump``), the batches are DUMP payloads
    for `write_dumps`; otherwise snapshots for `write_snapshots`.  The writer
    runs in a worker thread under asyncio.
    """
    keys = list(names) if names is not None else (yield from ask(Keys(b"*")))
    for start in range(0, len(keys), SAVE_CHUNK):
        chunk = keys[start : start + SAVE_CHUNK]
        if dumps:
            payloads = yield from ask(Dumps(chunk))
            yield InThread(lambda c=chunk, p=payloads: write_dumps(c, p))  # type: ignore[misc]
        else:
            snapshots = yield from ask(Snapshots(chunk))
            yield InThread(lambda c=chunk, s=snapshots: write_snapshots(c, s))  # type: ignore[misc]
