"""Run the sync behaviour suite on the asyncio TelescopeState.

:class:`SyncFacade` gives an asyncio TelescopeState the sync API by running
its coroutines on an event loop in a background thread.  It adds no logic:
each method awaits the asyncio method of the same name, so the suite checks
the asyncio front end and backends, not the facade.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import telstate.aio

_T = TypeVar("_T")


class EventLoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def call(self, func: Callable[[], _T]) -> _T:
        async def wrapper() -> _T:
            return func()

        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class _FacadePipeline:
    def __init__(self, facade: SyncFacade) -> None:
        self._facade = facade
        self._pipeline = facade.aio.pipeline()

    def __enter__(self) -> telstate.aio.Pipeline:
        return self._pipeline

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._facade.runner.run(self._pipeline.__aexit__(exc_type, exc, tb))


class SyncFacade:
    """The sync TelescopeState API over an asyncio TelescopeState."""

    SEPARATOR = telstate.aio.TelescopeState.SEPARATOR

    def __init__(self, aio: telstate.aio.TelescopeState, runner: EventLoopThread) -> None:
        self.aio = aio
        self.runner = runner

    # sync parts of the asyncio API
    @property
    def prefixes(self) -> tuple[str, ...]:
        return self.aio.prefixes

    @property
    def backend(self) -> Any:
        return self.aio.backend

    @staticmethod
    def join(*names: str) -> str:
        return telstate.aio.TelescopeState.join(*names)

    def view(self, *args: Any, **kwargs: Any) -> SyncFacade:
        return SyncFacade(self.aio.view(*args, **kwargs), self.runner)

    def root(self) -> SyncFacade:
        return SyncFacade(self.aio.root(), self.runner)

    def pipeline(self) -> _FacadePipeline:
        return _FacadePipeline(self)

    # coroutines, awaited
    def __getitem__(self, key: str | bytes) -> Any:
        return self.runner.run(self.aio[key])

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        self.runner.run(self.aio.set(key, value))

    def __contains__(self, key: str | bytes) -> bool:
        return self.runner.run(self.aio.exists(key))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("aio", "runner"):
            raise AttributeError(name)
        method = getattr(self.aio, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.runner.run(method(*args, **kwargs))

        return call
