"""``telstate serve SOURCE``: a telescope state in the browser, live on Redis.

The page and its server are the web front end, :mod:`telstate.web`; this
command only hands it the parsed arguments.
"""

from __future__ import annotations

import argparse

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Serve SOURCE until Ctrl-C (see :func:`telstate.web.serve`)."""
    # aiohttp (the web extra) and the server are imported by this command alone.
    from ..web import serve

    return serve(args)
