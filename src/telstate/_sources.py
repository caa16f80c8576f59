"""SOURCE and DEST arguments: what they name, and opening them.

A SOURCE is an RDB file (opened lazily with :meth:`TelescopeState.open`, so a big
file costs little), a Redis deployment (a ``redis://``, ``rediss://``,
``unix://`` or ``redis+sentinel://`` URL, or ``host:port``) or the word ``demo``
(the synthetic state of :func:`telstate._demo.build_demo`, built in memory).
:func:`classify` is the pure rule; the rest opens what it names.  An existing
file is always a file, whatever its name, and credentials in a URL never appear
in a label or a message.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._demo import build_demo
from ._text import CommandError
from .backends.base import KeyStats
from .backends.rdb import RdbBackend
from .client import TelescopeState

if TYPE_CHECKING:
    from .backends.redis import RedisBackend

__all__ = [
    "Source",
    "all_stats",
    "classify",
    "demo_source",
    "not_found",
    "open_source",
    "opened",
    "redis_label",
    "with_views",
]

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$")
_URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


@dataclass
class Source:
    """An opened SOURCE: its telescope state and what it is.

    Attributes
    ----------
    kind : str
        ``'demo'``, ``'rdb'`` or ``'redis'``.
    label : str
        For messages and titles (a server without its credentials).
    ts : TelescopeState
        The state, seen from its root.
    path : str or None
        The RDB file's path.
    url : str or None
        The Redis URL as given (credentials included, for connecting again).
    file : RdbBackend or None
        The backend of an RDB file (its header: ``file.file_info``).
    server : RedisBackend or None
        The backend of a Redis deployment (``server.server_info()``).
    """

    kind: str
    label: str
    ts: TelescopeState
    path: str | None = None
    url: str | None = None
    file: RdbBackend | None = None
    server: RedisBackend | None = None

    def close(self) -> None:
        """Close the backend (connections of a server, the map of a file)."""
        self.ts.backend.close()


def classify(spec: str) -> tuple[str, str]:
    """What a SOURCE or DEST names: ``('demo', 'demo')``, ``('redis', url)`` or ``('rdb', path)``.

    URLs and ``host:port`` name servers, anything else a file (an existing file
    is always a file, whatever its name).

    Raises
    ------
    CommandError
        For a URL of another scheme (``http://``...).
    """
    if spec == "demo":
        return "demo", spec
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme not in _URL_SCHEMES:
            raise CommandError(
                f"unsupported URL {redis_label(spec)!r}: use redis://, rediss://, unix:// "
                "or redis+sentinel://"
            )
        return "redis", spec
    if not os.path.exists(spec) and _HOST_PORT.match(spec):
        return "redis", f"redis://{spec}"
    return "rdb", spec


def redis_label(url: str) -> str:
    """The URL without credentials (user and password, or a query that may hold one)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1].split('?', 1)[0]}"


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        if "@" in path:  # user:password@host:port without a scheme: don't echo a password
            raise CommandError(
                "no such file; to give a user and password, use a URL: "
                "redis://USER:PASSWORD@HOST:PORT"
            )
        raise CommandError(
            f"{path}: no such file (a SOURCE is an RDB file, a Redis URL, host:port or 'demo')"
        )
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory, not an RDB file")


def demo_source(ts: TelescopeState) -> Source:
    """`ts`, holding a demo state, as the SOURCE ``demo``."""
    return Source("demo", "demo", ts)


def open_source(spec: str) -> Source:
    """Open SOURCE `spec` (see :func:`classify`)."""
    kind, where = classify(spec)
    if kind == "demo":
        ts = TelescopeState()
        build_demo(ts)
        return demo_source(ts)
    if kind == "redis":
        # redis-py, which imports asyncio, only for a server: not at every start-up
        from .backends.redis import RedisBackend

        server = RedisBackend.from_url(where)
        return Source("redis", server.server, TelescopeState(server), url=where, server=server)
    _check_file(where)
    file = RdbBackend(where)
    return Source("rdb", where, TelescopeState(file), path=where, file=file)


@contextlib.contextmanager
def opened(spec: str) -> Iterator[Source]:
    """SOURCE `spec`, open for the ``with`` block."""
    source = open_source(spec)
    try:
        yield source
    finally:
        source.close()


def with_views(ts: TelescopeState, views: Sequence[str] | None) -> TelescopeState:
    """`ts` seen through ``--view`` names, the last one given first (``ts.view(a).view(b)``)."""
    for name in views or ():
        ts = ts.view(name)
    return ts


def not_found(ts: TelescopeState, key: str, source: Source) -> CommandError:
    """'key not found' with the closest names, for typos."""
    names = ts._ipython_key_completions_()
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    prefixes = ", ".join(repr(prefix) for prefix in ts.prefixes)
    where = "" if ts.prefixes == ("",) else f" (view prefixes {prefixes})"
    return CommandError(f"key {key!r} not found in {source.label}{where}{hint}")


def all_stats(ts: TelescopeState, keys: Sequence[str]) -> list[KeyStats | None]:
    """Stats of many full keys in one backend call (two round trips on Redis)."""
    return ts.backend.stats([key.encode("utf-8", "surrogateescape") for key in keys])
