"""``telstate serve``: a telescope state in the browser, live on Redis.

``pip install 'telstate[web]'`` brings aiohttp; the page itself (plain
JavaScript, no build step) and its plotting library, uPlot (MIT, vendored in
``static/`` with its licence), ship inside the package, so the page works
offline and loads nothing from elsewhere.

Layout: the pure rules (key rows and groups, value trees with truncation,
request parameters, plot data) live in I/O-free modules with their own tests;
:mod:`._server` is the aiohttp edge; :func:`serve` opens the SOURCE as the other
commands do, binds, prints the address and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import socket
import sys
from typing import Final

from .._sources import open_source
from .._text import CommandError

__all__ = ["DEFAULT_PORT", "serve"]

#: Port of ``telstate serve`` unless ``--port`` says otherwise.
DEFAULT_PORT: Final = 8765
_LOOPBACK: Final = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    """Run ``telstate serve`` with parsed arguments until Ctrl-C (status 0).

    Parameters
    ----------
    args
        ``source``, ``port``, ``host`` (None: 127.0.0.1) and ``view`` (a list or None).
    """
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise CommandError(
            "serving needs aiohttp, which is not installed: pip install 'telstate[web]'"
        ) from None
    host = args.host or _LOOPBACK
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port: {args.port} is not a port number (0 to 65535)")
    source = open_source(args.source)
    try:
        from ._server import Site

        site = Site(
            source.ts,
            source.label,
            views=args.view or (),
            live_url=source.url if source.kind == "redis" else None,
        )
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), args.port))
        except OSError as exc:
            sock.close()
            raise CommandError(f"cannot listen on {host}:{args.port}: {exc.strerror}") from None
        if not _is_loopback(host):
            print(
                f"telstate: warning: serving on {host}: anyone who can reach this address can "
                "read the whole telescope state (read-only, no password)",
                file=sys.stderr,
                flush=True,
            )
        port = sock.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
        allowed = None
        if args.host is None:
            allowed = frozenset(f"{name}:{port}" for name in (_LOOPBACK, "localhost"))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the normal end
            asyncio.run(_run(site, sock, f"http://{shown}:{port}/", allowed))
    finally:
        source.close()
    return 0


async def _run(
    site: object, sock: socket.socket, address: str, allowed: frozenset[str] | None
) -> None:
    from aiohttp import web

    from ._server import Site, make_app

    assert isinstance(site, Site)
    runner = web.AppRunner(make_app(site, allowed), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
        print(f"serving {site.label} on {address} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
