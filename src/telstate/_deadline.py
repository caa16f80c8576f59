"""The deadline of the operation in progress, for the calls it makes on its behalf.

A wait with a timeout makes backend calls (to look at its key, to subscribe).  The
calls themselves only take keys, so the wait's deadline travels beside them in a
context variable (per thread, per asyncio task): a backend that retries (the Redis
transport, while a server is down) stops at that deadline instead of its own retry
window, so a wait's timeout holds whatever happens to the server.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current", "until"]

_DEADLINE: ContextVar[float | None] = ContextVar("telstate_deadline", default=None)


def current() -> float | None:
    """The monotonic time by which the operation in progress must end, if any."""
    return _DEADLINE.get()


class until:  # lower case: used as the function it was, ``with until(deadline):``
    """Calls made inside this block stop retrying at `deadline` (monotonic seconds).

    A class rather than a generator context manager: a wait enters it on every step,
    and a woken wait leaves it on its way back to the caller.
    """

    __slots__ = ("_deadline", "_token")

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(self._deadline)

    def __exit__(self, *exc: object) -> None:
        _DEADLINE.reset(self._token)
