"""``telstate watch SOURCE KEY...``: print the updates of keys as they happen.

One asyncio task per key, each following :meth:`telstate.aio.TelescopeState.watch`
over one shared Redis connection (plus its pub/sub connection), inside a task
group so that one failing key stops them all.  Each update is one line, flushed
at once so that pipes see it::

    2019-04-23T09:39:05.000Z  m000_activity  'track'

The time is a sensor sample's own timestamp; for immutables and indexed
sub-keys, which carry none, the time the update arrived.  A key is looked up
through the ``--view`` prefixes like a read (the highest prefix that has it);
a key that does not exist yet is watched under the first prefix, where a
writer using the same view would put it.

Ctrl-C is the normal way to stop: asyncio cancels the tasks, the connections
close, and the command exits with status 0.  Watching only immutables ends by
itself once they all have values.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from .. import _text as text
from .._keys import KeyType
from .._sources import classify
from .._text import CommandError
from ..aio import TelescopeState
from ..aio.redis import RedisBackend

__all__ = ["run"]


async def _resolve(ts: TelescopeState, key: str) -> str:
    """The full key that `key` names through the view `ts`."""
    root = ts.root()
    for prefix in ts.prefixes:
        if await root.exists(prefix + key):
            return prefix + key
    return ts.prefixes[0] + key


async def _follow(ts: TelescopeState, key: str, indexed: bool, initial: bool) -> None:
    shown = text.printable(key)
    async for value, stamp in ts.watch(key, initial=initial):
        when = text.utc(stamp if stamp is not None else time.time())
        if indexed and isinstance(value, dict) and len(value) != 1:
            # An indexed key's current dict comes first, whole: show it a sub-key
            # a line, like the updates that follow.
            for sub_key, item in text.sorted_dict(value).items():
                print(f"{when}  {shown}  {text.one_line({sub_key: item})}", flush=True)
        else:
            print(f"{when}  {shown}  {text.one_line(value)}", flush=True)


async def _watch(url: str, keys: Sequence[str], views: Sequence[str], initial: bool) -> None:
    backend = await RedisBackend.from_url(url)
    async with backend:
        view = TelescopeState(backend)
        for name in views:
            view = view.view(name)
        full_keys = [await _resolve(view, key) for key in keys]
        root = view.root()
        kinds = {key: await root.key_type(key) for key in full_keys}
        # Tasks subscribe in the order of the keys (the subscriptions share one
        # connection), so once a key's current value is printed, the keys before
        # it are being watched too.
        async with asyncio.TaskGroup() as group:
            for key, kind in kinds.items():
                group.create_task(_follow(root, key, kind is KeyType.INDEXED, initial))


def run(args: argparse.Namespace) -> int:
    """``telstate watch``: runs until Ctrl-C (status 0) or until only immutables were watched."""
    kind, where = classify(args.source)
    if kind != "redis":
        what = (
            "an RDB file, which never changes"
            if kind == "rdb"
            else "a state in this process's memory, which nothing else can write to"
        )
        raise CommandError(f"watch needs a Redis server, and {args.source} is {what}")
    try:
        asyncio.run(_watch(where, args.keys, args.view or (), args.initial))
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:  # from the task group: report the first failure
        raise group.exceptions[0] from None
    return 0
