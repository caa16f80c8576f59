"""The backend contract: a small Redis-shaped vocabulary over bytes.

Backends know nothing of values, views or defaults: the front ends encode
values, resolve views into candidate keys and resolve time ranges before
calling them.  Each method is one step that Redis can take atomically and in
one round trip (a Lua script or a pipeline): reads take the view's candidate
keys in priority order and answer for the first one that exists, so a read
through a view never needs more than one round trip.

Writes are check-and-set: ``set_immutable`` and ``set_indexed`` store the value
only if absent and otherwise return what is there, for the front end to
compare; ``add_mutable`` adds a sample unless that exact sample exists.  A key
of another type raises :class:`~telstate.ImmutableKeyError` (Redis's WRONGTYPE).  A write
that changes data tells the key's subscribers (see ``telstate._updates``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._arrays import SampleArrays, batch_arrays
from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._ranges import RangeQuery, resolve_range
from .._samples import SampleBatch
from .._updates import KeyUpdate, Recheck

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = [
    "ALL_SAMPLES",
    "AsyncBackend",
    "AsyncSubscription",
    "Backend",
    "Found",
    "KeyStats",
    "Snapshot",
    "Subscription",
    "Write",
]

#: A key's whole content (immutable bytes, every sample of a sensor, an indexed key's dict).
Snapshot = tuple[KeyType, "bytes | SampleBatch | dict[bytes, bytes]"]
#: The query for every sample of a sensor.
ALL_SAMPLES = resolve_range(0.0, None, False, False)

#: What a read finds, as (type, payload, timestamp) of the first candidate key that
#: exists.  The payload is the value (immutable), the latest value (sensor, with its
#: timestamp) or a dict of encoded sub-key to encoded value (indexed).
Found = tuple[KeyType, bytes | dict[bytes, bytes], float | None]


@dataclass(slots=True)  # not frozen: made on every add, and frozen makes it 4x slower to make
class Write:
    """One write of a batch: an immutable, a sensor sample or an indexed sub-key."""

    key_type: KeyType
    key: bytes
    value: bytes
    timestamp: float | None = None
    sub_key: bytes | None = None

    def to(self, backend: Any) -> Any:
        """Make this write on `backend` with the single-write method of its type.

        Returns the method's reply from a sync backend (None, or the value
        already stored for immutables and sub-keys), an awaitable of it from an
        asyncio backend (the method names are the same).
        """
        if self.key_type is KeyType.IMMUTABLE:
            return backend.set_immutable(self.key, self.value)
        if self.key_type is KeyType.MUTABLE:
            return backend.add_mutable(self.key, self.value, self.timestamp)
        return backend.set_indexed(self.key, self.sub_key, self.value)


@dataclass(frozen=True, slots=True)
class KeyStats:
    """What a key holds, for listings (``telstate keys``, ``telstate info``).

    Attributes
    ----------
    key_type
        The key's type.
    count
        Samples of a sensor, sub-keys of an indexed key, 1 for an immutable.
    nbytes
        Storage size in bytes as the backend counts it: the data held in memory,
        Redis's ``MEMORY USAGE``, or the bytes of the value in an RDB file.
    first, last
        Timestamps of a sensor's first and last samples (None otherwise).
    """

    key_type: KeyType
    count: int
    nbytes: int
    first: float | None = None
    last: float | None = None


class Subscription(ABC):
    """Updates to a set of keys, from the moment of subscribing until closed."""

    @abstractmethod
    def get(self, timeout: float | None) -> KeyUpdate | Recheck | None:
        """Next update, :class:`.Recheck` if updates may have been lost, None on timeout."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving updates."""


class Backend(ABC):
    """Storage for a telescope state (synchronous).

    Attributes
    ----------
    supports_dump
        Whether :meth:`dumps` gives Redis ``DUMP`` payloads (a real Redis
        server), which a file writer copies as they are.
    """

    @property
    def supports_dump(self) -> bool:
        return False

    @abstractmethod
    def get(self, keys: Sequence[bytes]) -> Found | None:
        """Value of the first of `keys` that exists, or None."""

    @abstractmethod
    def key_type(self, keys: Sequence[bytes]) -> KeyType | None:
        """Type of the first of `keys` that exists, or None."""

    @abstractmethod
    def exists(self, keys: Sequence[bytes]) -> bool:
        """Whether any of `keys` exists."""

    @abstractmethod
    def keys(self, pattern: bytes) -> list[bytes]:
        """All keys matching the Redis glob `pattern`, in no particular order."""

    def write_batch(self, writes: Sequence[Write]) -> list[bytes | ImmutableKeyError | None]:
        """Apply many writes, each with the semantics of its single-write method.

        Returns, for each write in order, what its method returns (None, or the
        value already stored for immutables and sub-keys) or the
        ImmutableKeyError it raised: one failed write does not stop the others.
        Backends override this to send the whole batch in one round trip.
        """
        results: list[bytes | ImmutableKeyError | None] = []
        for write in writes:
            try:
                results.append(self.write(write))
            except ImmutableKeyError as exc:
                results.append(exc)
        return results

    def write(self, write: Write) -> bytes | None:
        """One write, by the method of its type (see ``Write.to``)."""
        return write.to(self)  # type: ignore[no-any-return]

    @abstractmethod
    def delete(self, keys: Sequence[bytes]) -> None:
        """Remove `keys` (absent ones are ignored)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every key."""

    @abstractmethod
    def set_immutable(self, key: bytes, value: bytes) -> bytes | None:
        """Store `value` if `key` is absent (returning None), else return the stored value."""

    @abstractmethod
    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None:
        """Add the sample (`timestamp`, `value`) to the sensor `key`."""

    @abstractmethod
    def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None:
        """Store `value` under `sub_key` if absent (returning None), else return the stored one."""

    @abstractmethod
    def get_indexed(self, keys: Sequence[bytes], sub_key: bytes) -> tuple[int, bytes | None] | None:
        """For the first of `keys` that exists: (its index, value of `sub_key` or None).

        None if no key exists; ImmutableKeyError if that key is not indexed.
        """

    @abstractmethod
    def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None:
        """Samples of the first of `keys` that exists, or None if none exists.

        ImmutableKeyError if that key is not a sensor and the query reads samples.
        """

    def get_ranges(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleBatch | None]:
        """:meth:`get_range` of many sensors (each given by its candidate keys) at once.

        Backends override this to answer in one round trip.
        """
        return [self.get_range(keys, query) for keys in candidates]

    def get_range_arrays(self, keys: Sequence[bytes], query: RangeQuery) -> SampleArrays | None:
        """:meth:`get_range`'s samples as arrays (see ``telstate._arrays.batch_arrays``).

        Backends holding the samples in the process override this to convert
        them from their own storage, without copying them first.
        """
        batch = self.get_range(keys, query)
        return None if batch is None else batch_arrays(batch)

    def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        """:meth:`get_ranges`, each sensor's samples as arrays."""
        return [
            None if batch is None else batch_arrays(batch)
            for batch in self.get_ranges(candidates, query)
        ]

    @abstractmethod
    def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]:
        """The whole content of each of `keys` (None where absent), for writing files."""

    def dumps(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Redis ``DUMP`` payloads of `keys` (None where absent); only if :attr:`supports_dump`."""
        raise NotImplementedError(f"{type(self).__name__} cannot DUMP keys")

    @abstractmethod
    def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]:
        """A :class:`.KeyStats` for each of `keys` (None for keys that do not exist)."""

    @abstractmethod
    def load_new_keys(self, index: RdbIndex) -> list[bytes]:
        """Create each key of an RDB file that does not exist; return those that do.

        Everything is checked (decoded, or its checksum verified) before anything
        is written, so a damaged file changes nothing.  The keys returned are
        merged by ordinary writes (see ``telstate._plans.load``).
        """

    @abstractmethod
    def subscribe(self, keys: Sequence[bytes]) -> Subscription:
        """Start collecting the updates to `keys`."""

    def close(self) -> None:  # noqa: B027  (optional for backends without resources)
        """Release resources (connections); the backend is unusable afterwards."""


# --------------------------------------------------------------------------- asyncio
#
# The same contract for asyncio (``telstate.aio.AsyncBackend``): same vocabulary and
# semantics, each method a coroutine.  Backends are closed with ``close()`` then
# ``await wait_closed()``, or used as an async context manager.


class AsyncSubscription(ABC):
    """Updates to a set of keys, from the moment of subscribing until closed."""

    @abstractmethod
    async def get(self) -> KeyUpdate | Recheck:
        """Next update, or :class:`.Recheck` if updates may have been lost (waits as needed)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving updates."""


class AsyncBackend(ABC):
    """Storage for a telescope state (asyncio).

    Attributes
    ----------
    supports_dump
        As for :class:`telstate.backends.Backend`.
    """

    @property
    def supports_dump(self) -> bool:
        return False

    @abstractmethod
    async def get(self, keys: Sequence[bytes]) -> Found | None: ...

    @abstractmethod
    async def key_type(self, keys: Sequence[bytes]) -> KeyType | None: ...

    @abstractmethod
    async def exists(self, keys: Sequence[bytes]) -> bool: ...

    @abstractmethod
    async def keys(self, pattern: bytes) -> list[bytes]: ...

    @abstractmethod
    async def delete(self, keys: Sequence[bytes]) -> None: ...

    @abstractmethod
    async def clear(self) -> None: ...

    @abstractmethod
    async def set_immutable(self, key: bytes, value: bytes) -> bytes | None: ...

    @abstractmethod
    async def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> None: ...

    @abstractmethod
    async def set_indexed(self, key: bytes, sub_key: bytes, value: bytes) -> bytes | None: ...

    @abstractmethod
    async def get_indexed(
        self, keys: Sequence[bytes], sub_key: bytes
    ) -> tuple[int, bytes | None] | None: ...

    @abstractmethod
    async def get_range(self, keys: Sequence[bytes], query: RangeQuery) -> SampleBatch | None: ...

    async def get_ranges(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleBatch | None]:
        """:meth:`telstate.backends.Backend.get_ranges`, awaited."""
        return [await self.get_range(keys, query) for keys in candidates]

    async def get_range_arrays(
        self, keys: Sequence[bytes], query: RangeQuery
    ) -> SampleArrays | None:
        """:meth:`telstate.backends.Backend.get_range_arrays`, awaited."""
        batch = await self.get_range(keys, query)
        return None if batch is None else batch_arrays(batch)

    async def get_ranges_arrays(
        self, candidates: Sequence[Sequence[bytes]], query: RangeQuery
    ) -> list[SampleArrays | None]:
        """:meth:`telstate.backends.Backend.get_ranges_arrays`, awaited."""
        return [
            None if batch is None else batch_arrays(batch)
            for batch in await self.get_ranges(candidates, query)
        ]

    @abstractmethod
    async def write_batch(
        self, writes: Sequence[Write]
    ) -> list[bytes | ImmutableKeyError | None]: ...

    @abstractmethod
    async def stats(self, keys: Sequence[bytes]) -> list[KeyStats | None]: ...

    @abstractmethod
    async def snapshot(self, keys: Sequence[bytes]) -> list[Snapshot | None]: ...

    async def write(self, write: Write) -> bytes | None:
        """One write, by the method of its type (see ``Write.to``)."""
        return await write.to(self)  # type: ignore[no-any-return]

    async def dumps(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Redis ``DUMP`` payloads of `keys`; only if :attr:`supports_dump`."""
        raise NotImplementedError(f"{type(self).__name__} cannot DUMP keys")

    @abstractmethod
    async def load_new_keys(self, index: RdbIndex) -> list[bytes]: ...

    @abstractmethod
    async def subscribe(self, keys: Sequence[bytes]) -> AsyncSubscription: ...

    def close(self) -> None:  # noqa: B027  (optional for backends without resources)
        """Start closing (connections, background tasks)."""

    async def wait_closed(self) -> None:  # noqa: B027
        """Finish closing."""

    async def __aenter__(self) -> AsyncBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()
