"""The two drivers of plans (:mod:`telstate._plans`): one sync, one asyncio.

A driver sends a plan's requests to a backend and the replies back, until the
plan emits an item (:meth:`step` returns ``(False, item)``) or finishes
(``(True, result)``).  The drivers are twins that differ only where the I/O
does — blocking calls and a polled cancellation future in :class:`Driver`,
``await`` and task cancellation in :class:`AsyncDriver` — and both enforce the
same deadline: a wait's timeout bounds its whole life, and every backend call
made on its behalf stops retrying at that deadline (:mod:`telstate._deadline`).
A satisfied wait returns whatever its timeout (even 0): the timeout bounds the
waiting for updates, not the first look at the key.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import TYPE_CHECKING, Any

from . import _deadline
from ._errors import CancelledError, TimeoutError
from ._plans import Emit, InThread, NextUpdate, Plan, Request, Subscribe

if TYPE_CHECKING:
    from .backends.base import AsyncBackend, AsyncSubscription, Backend, Subscription

__all__ = ["AsyncDriver", "Driver", "wait_timed_out"]

# How often a sync wait looks at its cancellation future, which cannot wake a blocked thread.
_CANCEL_POLL = 0.05


def wait_timed_out(
    what: str, timeout: float | None, cause: Exception | None = None
) -> TimeoutError:
    """The error of a wait whose timeout passed (`cause`: a call that gave up at it)."""
    detail = f" ({cause})" if cause is not None else ""
    return TimeoutError(f"Timed out waiting for {what} after {timeout}s{detail}")


class Driver:
    """Runs a plan against a sync backend.

    Parameters
    ----------
    backend
        The sync backend.
    plan
        The plan to run.
    what
        How errors name the operation (``"key 'x'"``).
    timeout
        Seconds the whole operation may take (None: no limit).
    cancel_future
        A future whose completion cancels the operation (checked before
        subscribing and while waiting for updates).
    """

    def __init__(
        self,
        backend: Backend,
        plan: Plan[Any],
        what: str = "",
        timeout: float | None = None,
        cancel_future: Any = None,
    ) -> None:
        self._backend = backend
        self._plan = plan
        self._what = what
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._cancel_future = cancel_future
        self._subscription: Subscription | None = None
        self._reply: Any = None

    def step(self) -> tuple[bool, Any]:
        """Run until the plan emits ``(False, item)`` or finishes ``(True, result)``."""
        with _deadline.until(self._deadline):
            while True:
                try:
                    request = self._plan.send(self._reply)
                except StopIteration as done:
                    return True, done.value
                self._reply = None
                if isinstance(request, Emit):
                    return False, request.item
                self._reply = self._answer(request)

    def run(self) -> Any:
        """Run the plan to its end and return its result (emitted items are dropped)."""
        try:
            done, result = self.step()
            while not done:
                done, result = self.step()
            return result
        finally:
            self.close()

    def _answer(self, request: Any) -> Any:
        try:
            if isinstance(request, Request):
                return request.to(self._backend)
            if isinstance(request, NextUpdate):
                return self._next_update()
            if isinstance(request, Subscribe):
                # The key was looked at first (a satisfied wait returns even if
                # cancelled, as in katsdptelstate); one that must block is cancelled
                # before subscribing.
                self._check_cancelled()
                self._subscription = self._backend.subscribe(request.keys)
                return None
            assert isinstance(request, InThread)
            return request.func()
        except TimeoutError as exc:  # a call gave up at the deadline
            raise wait_timed_out(self._what, self._timeout, exc) from exc

    def _next_update(self) -> Any:
        assert self._subscription is not None
        poll = None if self._cancel_future is None else _CANCEL_POLL
        while True:
            self._check_cancelled()
            remaining = None if self._deadline is None else self._deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise wait_timed_out(self._what, self._timeout)
            if poll is not None:
                remaining = poll if remaining is None else min(remaining, poll)
            update = self._subscription.get(remaining)
            if update is not None:
                return update

    def _check_cancelled(self) -> None:
        if self._cancel_future is not None and self._cancel_future.done():
            raise CancelledError(f"Wait for {self._what} cancelled")

    def close(self) -> None:
        """Stop the plan and its subscription."""
        self._plan.close()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None


class AsyncDriver:
    """Runs a plan against an asyncio backend (the twin of :class:`Driver`).

    Cancel the task to give up; `timeout` is as for :class:`Driver`.
    """

    def __init__(
        self,
        backend: AsyncBackend,
        plan: Plan[Any],
        what: str = "",
        timeout: float | None = None,
    ) -> None:
        self._backend = backend
        self._plan = plan
        self._what = what
        self._timeout = timeout
        self._deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self._subscription: AsyncSubscription | None = None
        self._reply: Any = None

    async def step(self) -> tuple[bool, Any]:
        """Run until the plan emits ``(False, item)`` or finishes ``(True, result)``."""
        with _deadline.until(self._deadline):
            while True:
                try:
                    request = self._plan.send(self._reply)
                except StopIteration as done:
                    return True, done.value
                self._reply = None
                if isinstance(request, Emit):
                    return False, request.item
                self._reply = await self._answer(request)

    async def run(self) -> Any:
        """Run the plan to its end and return its result (emitted items are dropped)."""
        try:
            done, result = await self.step()
            while not done:
                done, result = await self.step()
            return result
        finally:
            await self.close()

    async def _answer(self, request: Any) -> Any:
        try:
            if isinstance(request, Request):
                return await request.to(self._backend)
            if isinstance(request, NextUpdate):
                assert self._subscription is not None
                async with asyncio.timeout_at(self._deadline):
                    return await self._subscription.get()
            if isinstance(request, Subscribe):
                async with asyncio.timeout_at(self._deadline):
                    self._subscription = await self._backend.subscribe(request.keys)
                return None
            assert isinstance(request, InThread)
            return await asyncio.to_thread(request.func)
        except builtins.TimeoutError:
            raise wait_timed_out(self._what, self._timeout) from None
        except TimeoutError as exc:  # a call gave up at the deadline
            raise wait_timed_out(self._what, self._timeout, exc) from exc

    async def close(self) -> None:
        """Stop the plan and its subscription."""
        self._plan.close()
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
