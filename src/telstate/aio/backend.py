"""The asyncio backend contract: :class:`telstate.backends.Backend`, awaited.

Same vocabulary and semantics as the sync contract (see
:mod:`telstate.backends.base`), each method a coroutine.  Backends are
closed with ``close()`` then ``await wait_closed()``, or used as an async
context manager.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._ranges import RangeQuery
from .._samples import SampleBatch
from .._updates import KeyUpdate, Recheck
from ..backends.base import Found, KeyStats, Snapshot, Write

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = ["AsyncBackend", "AsyncSubscription"]


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
