"""The HTTP side of ``telstate serve``: an aiohttp application over one SOURCE.

Read-only by construction: every route is a GET (aiohttp answers anything else
with 405), and nothing here calls a backend method that writes or deletes.
Reads go through the synchronous :class:`telstate.TelescopeState` of the
opened SOURCE, in worker threads, each under a short deadline so that a Redis
server that is down fails a request in seconds (and the page says
"disconnected") instead of after the backend's whole retry window.

Live updates (Redis sources only) use server-sent events: simpler than a
WebSocket for a one-way stream, reconnected by the browser by itself, and
plain HTTP.  Each event stream follows its keys with
:meth:`telstate.aio.TelescopeState.watch`, one watch per key, all over the
backend's one shared pub/sub hub; a separate monitor task pings the server
and broadcasts "live" or "disconnected" to every open stream, and a watch that
fails restarts once the server answers again (the watch itself catches up on
what was written meanwhile, and the page reloads its view on reconnection).

Safety: a strict Content-Security-Policy (scripts and styles only from this
server, no inline code, no frames), ``nosniff``, no referrer, and, when bound
to loopback, a Host check that refuses other names (DNS rebinding).  Values are
sent as JSON trees (:mod:`._render`) that the page inserts as text only.
Sensors in RDB files and the demo never change, so their sample arrays are
cached (a few keys) between plot requests; on Redis each request reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar

import numpy as np
from aiohttp import web

from .. import _deadline
from .. import _text as text
from .._errors import TelstateError
from .._keys import KeyType
from ..client import TelescopeState
from ._listing import group_rows, key_id, make_rows
from ._params import (
    MAX_BUCKETS,
    MAX_ROWS,
    ParamError,
    Window,
    download_format,
    keys_param,
    one_key,
    positive_int,
    window,
)
from ._render import render, render_text
from ._series import is_numeric, plot_payload, sensor_arrays, state_label

__all__ = ["CSP", "READ_DEADLINE", "Site", "make_app", "update_json"]

#: Seconds a read may take (retries included) before the request fails.
READ_DEADLINE: Final = 3.0
#: Seconds between the monitor's pings of a Redis server.
PING_INTERVAL: Final = 0.5
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE: Final = 15.0
#: Sensors whose arrays an unchanging source keeps between requests.
CACHED_SENSORS: Final = 8

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_STATIC_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

_T = TypeVar("_T")
Arrays = tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, Any]]


class NotFound(TelstateError):
    """A key that is not (or no longer) there."""


class Site:
    """What the server serves: one opened SOURCE, seen through its views.

    Parameters
    ----------
    ts
        The SOURCE's root telescope state (synchronous).
    label
        The SOURCE for the page's title.
    views
        ``--view`` names, as for the other commands.
    live_url
        The Redis URL to watch for live updates, or None for a source that never
        changes (an RDB file, the demo).
    """

    def __init__(
        self,
        ts: TelescopeState,
        label: str,
        views: Sequence[str] = (),
        live_url: str | None = None,
    ) -> None:
        self.ts = ts
        self.label = label
        self.views = list(views)
        view = ts
        for name in views:
            view = view.view(name)
        self.prefixes = view.prefixes
        self.live_url = live_url
        self.status = "live" if live_url else "static"
        self._listeners: set[asyncio.Queue[tuple[str, Any]]] = set()
        self._arrays: OrderedDict[str, Arrays] = OrderedDict()
        self._arrays_lock = threading.Lock()
        self._listing: tuple[dict[str, str], list[Any], Any] | None = None
        self.aio: Any = None  # the asyncio TelescopeState of a live source, once started

    # -- status

    def set_status(self, status: str) -> None:
        """Record the connection state and tell every open event stream if it changed."""
        if self.live_url is None or status == self.status:
            return
        self.status = status
        for queue in self._listeners:
            queue.put_nowait(("status", {"status": status}))

    async def read(self, func: Callable[..., _T], *args: Any) -> _T:
        """`func(*args)` in a worker thread, under the read deadline.

        A lost server shows as "disconnected" (and a read that works again as
        "live"); the error is raised for the request to report.
        """

        def bounded() -> _T:
            with _deadline.until(time.monotonic() + READ_DEADLINE):
                return func(*args)

        try:
            result = await asyncio.to_thread(bounded)
        except (TelstateError, OSError) as exc:
            if _is_connection_error(exc):
                self.set_status("disconnected")
            raise
        self.set_status("live")
        return result

    # -- reads (run in worker threads)

    def _names(self) -> dict[str, str]:
        keys = self.ts.keys()
        if not self.views:
            return {key: key for key in keys}
        return text.view_listing(keys, self.prefixes)

    def _read_listing(self) -> tuple[dict[str, str], list[Any], Any]:
        if self._listing is not None:
            return self._listing
        names = self._names()
        stats = self.ts.backend.stats(
            [full.encode("utf-8", "surrogateescape") for full in names.values()]
        )
        config = None
        if "sdp_config" in names.values() and self.ts.key_type("sdp_config") is KeyType.IMMUTABLE:
            with contextlib.suppress(TelstateError, ValueError):
                config = self.ts.get("sdp_config")
        listing = names, stats, config
        if self.live_url is None:  # an unchanging source: list it once
            self._listing = listing
        return listing

    def keys_json(self, pattern: str) -> dict[str, Any]:
        names, stats, config = self._read_listing()
        rows = make_rows(names, stats, config, pattern)
        return {
            "total": sum(s is not None for s in stats),
            "shown": len(rows),
            "groups": group_rows(rows),
        }

    def _kind(self, key: str) -> KeyType:
        kind = self.ts.key_type(key)
        if kind is None:
            raise NotFound(f"key {text.printable(key)!r} not found")
        return kind

    def value_json(self, key: str) -> dict[str, Any]:
        kind = self._kind(key)
        result: dict[str, Any] = {
            "id": key_id(key),
            "name": text.printable(key),
            "type": text.TYPE_NAMES[kind],
        }
        if kind is KeyType.IMMUTABLE:
            result["value"] = render(self.ts.get(key))
        elif kind is KeyType.INDEXED:
            result["value"] = render(text.sorted_dict(self.ts.get(key)))
        else:
            (stats,) = self.ts.backend.stats([key.encode("utf-8", "surrogateescape")])
            samples = self.ts.get_range(key)  # the latest sample only
            result["count"] = stats.count if stats is not None else len(samples)
            result["span"] = text.span(stats.first, stats.last) if stats is not None else ""
            if stats is not None:
                result["first"], result["last"] = stats.first, stats.last
            if samples:
                value, stamp = samples[-1]
                result["value"] = render(value)
                result["time"] = text.utc(stamp)
                result["numeric"] = bool(
                    isinstance(value, int | float) and not isinstance(value, bool)
                )
        return result

    def _sensor_arrays(self, key: str, span: Window) -> Arrays:
        if self._kind(key) is not KeyType.MUTABLE:
            raise ParamError(f"{text.printable(key)!r} is not a sensor")
        if self.live_url is not None:
            # a changing source: read the window (and the state before it) each time
            samples = self.ts.get_range_arrays(
                key,
                st=0.0 if span.start is None else span.start,
                et=span.end,
                include_previous=span.start is not None,
                include_end=True,
            )
            return sensor_arrays(samples)
        with self._arrays_lock:  # the plot and the table ask at once: decode once
            if key in self._arrays:
                self._arrays.move_to_end(key)
                return self._arrays[key]
            arrays = sensor_arrays(self.ts.get_range_arrays(key, st=0.0))
            self._arrays[key] = arrays
            while len(self._arrays) > CACHED_SENSORS:
                self._arrays.popitem(last=False)
            return arrays

    def series_json(self, key: str, span: Window, buckets: int) -> dict[str, Any]:
        times, values = self._sensor_arrays(key, span)
        payload = plot_payload(times, values, buckets, span.start, span.end)
        payload["id"] = key_id(key)
        payload["name"] = text.printable(key)
        return payload

    def samples_json(self, key: str, span: Window, limit: int) -> dict[str, Any]:
        times, values = self._sensor_arrays(key, span)
        lo = 0 if span.start is None else int(np.searchsorted(times, span.start, side="left"))
        hi = len(times) if span.end is None else int(np.searchsorted(times, span.end, side="right"))
        numeric = is_numeric(values)
        rows = [
            [text.utc(float(times[i])), repr(float(values[i])) if numeric else str(values[i])]
            for i in range(lo, min(hi, lo + limit))
        ]
        return {"count": max(0, hi - lo), "rows": rows, "cut": hi - lo > limit}

    def download_rows(self, key: str, span: Window) -> list[tuple[Any, float]]:
        self._kind(key)
        return self.ts.get_range(
            key, st=0.0 if span.start is None else span.start, et=span.end, include_end=True
        )

    # -- event streams

    def listen(self) -> asyncio.Queue[tuple[str, Any]]:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._listeners.add(queue)
        return queue

    def unlisten(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        self._listeners.discard(queue)


def _is_connection_error(exc: BaseException) -> bool:
    from .._errors import ConnectionError as TelstateConnectionError

    return isinstance(exc, TelstateConnectionError | ConnectionError | TimeoutError)


def update_json(key: str, value: Any, stamp: float | None) -> dict[str, Any]:
    """The event for one update of `key`: the page adds it to a plot or reloads the value."""
    number = None
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    ):
        number = float(value) if np.isfinite(value) else None
    return {
        "id": key_id(key),
        "time": stamp,
        "number": number,
        "label": state_label(value)[:200],
        "text": render_text(text.one_line(value), 200),
    }


# --------------------------------------------------------------------------- handlers


def _json(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return web.Response(text=body, status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": text.printable(message)}, status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(func: Callable[[Site, web.Request], Awaitable[web.StreamResponse]]) -> Handler:
    """A handler with the site, and our errors as JSON: 400 bad input, 404, 503 lost server."""

    async def handler(request: web.Request) -> web.StreamResponse:
        site: Site = request.app[SITE]
        try:
            return await func(site, request)
        except ParamError as exc:
            return _error(str(exc), 400)
        except NotFound as exc:
            return _error(str(exc), 404)
        except (TelstateError, OSError, ValueError, KeyError) as exc:
            if _is_connection_error(exc):
                return _error(f"the server is unreachable: {text.first_line(exc)}", 503)
            return _error(text.first_line(exc), 422)

    return handler


@_api
async def _info(site: Site, request: web.Request) -> web.StreamResponse:
    return _json(
        {
            "label": text.printable(site.label),
            "live": site.live_url is not None,
            "status": site.status,
        }
    )


@_api
async def _keys(site: Site, request: web.Request) -> web.StreamResponse:
    pattern = request.query.get("filter", "")
    return _json(await site.read(site.keys_json, pattern))


@_api
async def _value(site: Site, request: web.Request) -> web.StreamResponse:
    return _json(await site.read(site.value_json, one_key(request.query)))


@_api
async def _series(site: Site, request: web.Request) -> web.StreamResponse:
    query = request.query
    buckets = positive_int(query, "buckets", 1000, MAX_BUCKETS)
    return _json(await site.read(site.series_json, one_key(query), window(query), buckets))


@_api
async def _samples(site: Site, request: web.Request) -> web.StreamResponse:
    query = request.query
    limit = positive_int(query, "limit", 200, MAX_ROWS)
    return _json(await site.read(site.samples_json, one_key(query), window(query), limit))


@_api
async def _download(site: Site, request: web.Request) -> web.StreamResponse:
    query = request.query
    key, span, shown = one_key(query), window(query), download_format(query)
    samples = await site.read(site.download_rows, key, span)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in key)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if shown == "csv" else "application/json",
            "Content-Disposition": f'attachment; filename="{safe[:100] or "sensor"}.{shown}"',
        }
    )
    await response.prepare(request)
    chunk: list[str] = []
    if shown == "csv":
        chunk.append(text.csv_line(["timestamp", "time", "value"]))
    else:
        chunk.append("[")
    for i, (value, stamp) in enumerate(samples):
        if shown == "csv":
            chunk.append(text.csv_line([repr(stamp), text.utc(stamp), text.csv_value(value)]))
        else:
            item = {"timestamp": stamp, "time": text.utc(stamp), "value": text.to_json(value)}
            chunk.append(("\n" if i == 0 else ",\n") + json.dumps(item, allow_nan=False))
        if len(chunk) >= 2000:
            await response.write("".join(chunk).encode("utf-8", "surrogateescape"))
            chunk = []
    if shown == "json":
        chunk.append("\n]\n" if samples else "]\n")
    await response.write("".join(chunk).encode("utf-8", "surrogateescape"))
    await response.write_eof()
    return response


def _event(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n".encode()


async def _follow(site: Site, key: str, queue: asyncio.Queue[tuple[str, Any]]) -> None:
    """Put every update of `key` on `queue`, forever; a lost server is waited out."""
    while True:
        try:
            async for value, stamp in site.aio.watch(key, initial=False):
                queue.put_nowait(("update", update_json(key, value, stamp)))
            return  # an immutable that got its value: nothing more will come
        except (TelstateError, OSError) as exc:
            if not _is_connection_error(exc):
                queue.put_nowait(("problem", {"id": key_id(key), "error": text.first_line(exc)}))
                return
            site.set_status("disconnected")
            await asyncio.sleep(PING_INTERVAL)


@_api
async def _events(site: Site, request: web.Request) -> web.StreamResponse:
    keys = keys_param(request.query.getall("key", []))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue = site.listen()
    tasks: list[asyncio.Task[None]] = []
    try:
        await response.write(b"retry: 1000\n\n" + _event("status", {"status": site.status}))
        if site.aio is not None:
            tasks = [asyncio.create_task(_follow(site, key, queue)) for key in keys]
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    kind, data = await queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await response.write(_event(kind, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the page went away (or the server is stopping)
    finally:
        site.unlisten(queue)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return response


def _static(name: str) -> Handler:
    suffix = name[name.rfind(".") :]

    async def handler(request: web.Request) -> web.StreamResponse:
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return web.Response(body=body, headers={"Content-Type": _STATIC_TYPES[suffix]})

    return handler


STATIC_FILES: Final = ("index.html", "app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css")


def _host_check(allowed: frozenset[str] | None) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if allowed is not None and request.host not in allowed:
            return web.Response(status=421, text="misdirected request: unknown Host")
        response = await handler(request)
        response.headers.update(_HEADERS)
        return response

    return middleware


SITE: Final = web.AppKey("site", Site)


async def _monitor(site: Site) -> None:
    """Ping the live server for as long as the app runs, keeping ``site.status`` true."""
    while True:
        try:
            with _deadline.until(time.monotonic() + 2 * PING_INTERVAL):
                async with asyncio.timeout(4 * PING_INTERVAL):
                    await site.aio.backend.exists([b"telstate-serve-ping"])
            site.set_status("live")
        except (TelstateError, OSError, TimeoutError):
            site.set_status("disconnected")
        await asyncio.sleep(PING_INTERVAL)


def make_app(site: Site, allowed_hosts: frozenset[str] | None = None) -> web.Application:
    """The application serving `site`; `allowed_hosts` are the Host headers accepted (None: any)."""
    app = web.Application(middlewares=[_host_check(allowed_hosts)])
    app[SITE] = site
    app.router.add_get("/", _static("index.html"))
    for name in STATIC_FILES[1:]:
        app.router.add_get(f"/static/{name}", _static(name))
    for path, handler in [
        ("info", _info),
        ("keys", _keys),
        ("value", _value),
        ("series", _series),
        ("samples", _samples),
        ("download", _download),
        ("events", _events),
    ]:
        app.router.add_get(f"/api/{path}", handler)

    async def live(app: web.Application) -> AsyncIterator[None]:
        if site.live_url is None:
            yield
            return
        from ..aio import TelescopeState as AioTelescopeState
        from ..aio.redis import RedisBackend

        backend = await RedisBackend.from_url(site.live_url)
        site.aio = AioTelescopeState(backend)
        monitor = asyncio.create_task(_monitor(site))
        try:
            yield
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            await backend.wait_closed()

    app.cleanup_ctx.append(live)
    return app
