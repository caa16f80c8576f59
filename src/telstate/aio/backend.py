"""The asyncio backend contract: :class:`telstate.backends.Backend`, awaited.

Same vocabulary and semantics as the sync contract, each method a coroutine;
both are defined side by side in ``telstate.backends.base``, so that what
drives them (``telstate._drivers``) sits below both front ends.
"""

from ..backends.base import AsyncBackend, AsyncSubscription

__all__ = ["AsyncBackend", "AsyncSubscription"]
