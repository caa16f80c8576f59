"""The deadline of the operation in progress, for the calls it makes on its behalf.

A wait with a timeout makes backend calls (to look at its key, to subscribe).  The
calls themselves only take keys, so the wait's deadline travels beside them in a
context variable (per thread, per asyncio task): a backend that retries (the Redis
transport, while a server is down) stops at that deadline instead of its own retry
window, so a wait's timeout holds whatever happens to the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["current", "until"]

_DEADLINE: ContextVar[float | None] = ContextVar("telstate_deadline", default=None)


def current() -> float | None:
    """The monotonic time by which the operation in progress must end, if any."""
    return _DEADLINE.get()


@contextlib.contextmanager
def until(deadline: float | None) -> Iterator[None]:
    """Calls made inside this block stop retrying at `deadline` (monotonic seconds)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)
