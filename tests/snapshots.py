"""Everything a telescope state holds, as comparable data (for round-trip checks)."""

from __future__ import annotations

from typing import Any

import telstate.aio
from telstate import KeyType, TelescopeState

Contents = dict[str, tuple[KeyType, Any]]


def contents(ts: TelescopeState) -> Contents:
    """Every telstate key's type and stored bytes (all samples of a sensor)."""
    out: Contents = {}
    root = ts.root()
    for key in root.keys():
        kind = root.key_type(key)
        if kind is KeyType.MUTABLE:
            out[key] = (kind, root.get_range(key, st=0, return_encoded=True))
        elif kind is not None:  # None: a Redis type telstate does not use
            out[key] = (kind, root.get(key, return_encoded=True))
    return out


async def aio_contents(ts: telstate.aio.TelescopeState) -> Contents:
    """:func:`contents` of an asyncio telescope state."""
    out: Contents = {}
    root = ts.root()
    for key in await root.keys():
        kind = await root.key_type(key)
        if kind is KeyType.MUTABLE:
            out[key] = (kind, await root.get_range(key, st=0, return_encoded=True))
        elif kind is not None:
            out[key] = (kind, await root.get(key, return_encoded=True))
    return out
