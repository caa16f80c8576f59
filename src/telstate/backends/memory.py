"""The in-memory backend: a small Redis inside the process.

It keeps Redis's three data types with Redis's semantics, so that everything
above it behaves the same on both backends::

    immutable  bytes                   (a Redis string)
    sensor     SampleStore             (a sorted set of members, see _samples)
    indexed    dict[bytes, bytes]      (a Redis hash)

The read rules over values held like this are written once, in
:class:`HeldValues`, for this backend and for the read-only RDB file backend,
which decodes each key into the same objects when it is first read.

One lock guards the data; every method is one atomic step, like a Lua script
on a Redis server.  Writers hand a :class:`KeyUpdate` to the subscribers of
the key while holding the lock, so a waiter that subscribed before checking
the key can never miss a write.  Each subscription is a queue that the waiter
blocks on: a write wakes exactly the waiters of its key, at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._arrays import SampleArrays, batch_arrays, fixed_arrays
from .._glob import compile_glob
from .._keys import KeyType, wrong_type
from .._ranges import RangeQuery
from .._samples import EMPTY_BATCH, SampleBatch, SampleStore
from .._updates import KeyUpdate, Recheck
from .base import ALL_SAMPLES, Backend, Found, KeyStats, Snapshot, Subscription

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["HeldValues", "MemoryBackend", "snapshot_of"]

_Value = bytes | SampleStore | dict[bytes, bytes]


def _type_of(value: _Value) -> KeyType:
    if type(value) is bytes:
        return KeyType.IMMUTABLE
    if type(value) is SampleStore:
        return KeyType.MUTABLE
    return KeyType.INDEXED


# Ranges longer than this are converted to arrays from views of the store (shorter
# ones are copied first: numpy's fixed cost per call outweighs the copy).
_BORROW = 64

#: Receives a key's updates; called with the backend's lock held, so it must be quick.
Sink = Callable[[KeyUpdate], None]


def found(value: _Value) -> Found:
    """What ``get`` answers for a stored value (a copy where the value is mutable)."""
    if type(value) is bytes:  # the common case first
        return KeyType.IMMUTABLE, value, None
    if type(value) is SampleStore:
        latest, ts = value.latest()
        return KeyType.MUTABLE, latest, ts
    assert isinstance(value, dict)
    return KeyType.INDEXED, dict(value), None


def _stats(value: _Value) -> KeyStats:
    if type(value) is bytes:
        return KeyStats(KeyType.IMMUTABLE, 1, len(value))
    if type(value) is SampleStore:
        first, last = value.span()
        return KeyStats(KeyType.MUTABLE, len(value), value.nbytes, first, last)
    assert isinstance(value, dict)
    size = sum(len(field) + len(item) for field, item in value.items())
    return KeyStats(KeyType.INDEXED, len(value), size)


def snapshot_of(value: _Value | SampleBatch) -> Snapshot:
    """A key's whole content from its held value (or from a batch of all its samples)."""
    if type(value) is bytes:
        return KeyType.IMMUTABLE, value
    if type(value) is SampleStore:
        return KeyType.MUTABLE, value.query(ALL_SAMPLES)
    if type(value) is SampleBatch:
        return KeyType.MUTABLE, value
    assert isinstance(value, dict)
    return KeyType.INDEXED, dict(value)


class HeldValues(Backend):
    """The read rules over values held in this process (see the module's comment).

    Subclasses set ``_lock``, ``_lookup`` (a key's value, decoded if need be:
    a plain function, as it is on the hot path of every read) and ``_peek``
    (the same, for a snapshot: it need not keep what it decodes), and provide
    :meth:`_kind` and :meth:`_names`; all are used with the lock held.
    """

    _lock: threading.Lock
    _lookup: Callable[[bytes], _Value | None]
    _peek: Callable[[bytes], _Value | SampleBatch | None]

    def _kind(self, key: bytes) -> KeyType | None:
        value = self._lookup(key)
        return None if value is None else _type_of(value)

    def _names(self) -> list[bytes]:
        raise NotImplementedError

    def get(self, keys: Sequence[bytes]) -> Found | None:
        with self._lock:
            for key in keys:
                value = self._lookup(key)
                if value is not None:
                    return found(value)
        return None

    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        with self._lock:
            for key in keys:
                kind = self._kind(key)
                if kind is not None:
                    return kind
        return None

    def exists(self, keys: Sequence[bytes]) -> bool:
        with self._lock:
            return any(self._kind(key) is not None for key in keys)

    def keys(self, pattern: bytes) -> list[bytes]:
        with self._lock:
            keys = self._names()
        if pattern == b"*":
            return keys
        match = compile_glob(pattern)
        return [key for key in keys if match(key)]

    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        with self._lock:
            for i, key in enumerate(keys):
                value = self._lookup(key)
                if value is None:
                    continue
                if type(value) is not dict:
                    raise wrong_type(key, KeyType.INDEXED, _type_of(value))
                return i, value.get(sub_key)
        return None

    def _sensor(self, keys: Sequence[bytes], query: RangeQuery) -> SampleStore | SampleBatch | None:
        # The store of the first key that exists (an empty batch for a non-sensor the
        # query does not read); called with the lock held.
        for key in keys:
            kind = self._kind(key)
            if kind is None:
                continue
            if kind is not KeyType.MUTABLE:
                if query.scan or query.previous:
                    raise wrong_type(key, KeyType.MUTABLE, kind)
                return EMPTY_BATCH
            value = self._lookup(key)
            assert type(value) is SampleStore
            return value
        return None

    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        with self._lock:
            found = self._sensor(keys, query)
            return found.query(query) if isinstance(found, SampleStore) else found

    def get_range_arrays(self, keys: Sequence[bytes], query: RangeQuery) -> SampleArrays | None:
        with self._lock:
            found = self._sensor(keys, query)
            if isinstance(found, SampleStore):
                lo, hi = found.bounds(query)
                if hi - lo > _BORROW:
                    # Values of one size are converted straight from the store's buffers.
                    arrays = found.borrow(lo, hi, fixed_arrays)
                    if arrays is not None:
                        return arrays
                found = found.query(query)
        return None if found is None else batch_arrays(found)

    def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        return [self.get_range_arrays(keys, query) for keys in candidates]

    def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        with self._lock:
            return [
                None if (value := self._peek(key)) is None else snapshot_of(value) for key in keys
            ]

    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        with self._lock:
            return [None if (value := self._lookup(key)) is None else _stats(value) for key in keys]


class _MemorySubscription(Subscription):
    def __init__(self, backend: MemoryBackend, keys: Sequence[bytes]) -> None:
        self._queue: queue.SimpleQueue[KeyUpdate | Recheck] = queue.SimpleQueue()
        self._unsubscribe = backend.add_sink(keys, self._queue.put)

    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._unsubscribe()


class MemoryBackend(HeldValues):
    """Telescope state held in this process's memory (the default backend).

    Thread-safe.  Share one instance between several TelescopeState objects
    (sync or asyncio) to give them the same data.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, _Value] = {}
        self._lookup = self._peek = self._data.get
        self._lock = threading.Lock()
        self._subscribers: dict[bytes, list[Sink]] = {}

    # -- notifications

    def _publish(self, update: KeyUpdate) -> None:
        # Called with the lock held, only when the key has subscribers.
        for sink in self._subscribers.get(update.key, ()):
            sink(update)

    def add_sink(self, keys: Sequence[bytes], sink: Sink) -> Callable[[], None]:
        """Call `sink` with every update to `keys`; returns the function that stops it.

        The sync subscriptions put updates in a queue; the asyncio backend hands
        them to its event loop.
        """
        unique = tuple(dict.fromkeys(keys))
        with self._lock:
            for key in unique:
                self._subscribers.setdefault(key, []).append(sink)

        def remove() -> None:
            with self._lock:
                for key in unique:
                    sinks = self._subscribers.get(key, [])
                    if sink in sinks:
                        sinks.remove(sink)
                    if not sinks:
                        self._subscribers.pop(key, None)

        return remove

    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        return _MemorySubscription(self, keys)

    # -- reads: the rules of HeldValues, over the dict

    def _kind(self, key: bytes) -> KeyType | None:
        value = self._data.get(key)
        return None if value is None else _type_of(value)

    def _names(self) -> list[bytes]:
        return list(self._data)

    # -- writes

    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        with self._lock:
            old = self._data.get(key)
            if old is None:
                self._data[key] = value
                if key in self._subscribers:
                    self._publish(KeyUpdate(key, KeyType.IMMUTABLE, value))
                return None
            if type(old) is not bytes:
                raise wrong_type(key, KeyType.IMMUTABLE, _type_of(old))
            return old

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        with self._lock:
            store = self._data.get(key)
            if store is None:
                store = self._data[key] = SampleStore()
            elif type(store) is not SampleStore:
                raise wrong_type(key, KeyType.MUTABLE, _type_of(store))
            if store.add(timestamp, value) and key in self._subscribers:
                self._publish(KeyUpdate(key, KeyType.MUTABLE, value, timestamp))

    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        with self._lock:
            hash_ = self._data.get(key)
            if hash_ is None:
                hash_ = self._data[key] = {}
            elif type(hash_) is not dict:
                raise wrong_type(key, KeyType.INDEXED, _type_of(hash_))
            old = hash_.get(sub_key)
            if old is not None:
                return old
            hash_[sub_key] = value
            if key in self._subscribers:
                self._publish(KeyUpdate(key, KeyType.INDEXED, value, sub_key=sub_key))
            return None

    def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        # Decode everything first: a corrupt file must leave the data untouched.
        staged: dict[bytes, _Value] = {}
        for key, entry in index.entries.items():
            kind = index.key_type(entry)
            if kind is KeyType.MUTABLE:
                staged[key] = SampleStore.from_batch(index.read_samples(key))
            else:
                raw = index.read(key)
                assert isinstance(raw, bytes | dict)
                staged[key] = raw
        existing = []
        with self._lock:
            for key, value in staged.items():
                if key in self._data:
                    existing.append(key)
                else:
                    self._data[key] = value
        return existing

    def delete(self, keys: Sequence[bytes]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
