"""What loading an RDB file into a telescope state means, for every backend.

Loading adds the file's keys as if each of its values were written with the
ordinary write calls: a key that does not exist yet is created whole (the fast
path: one step per key); a key that exists is merged item by item: sensor
samples are added, sub-keys of an indexed key and immutables are set if absent
and must otherwise be equal (or an ImmutableKeyError lists the conflicts once
everything else is loaded).  Keys of types telstate does not use (lists, sets,
streams) are skipped and counted.  Loading notifies no waiters (katsdptelstate
does not either).
"""

from __future__ import annotations

from .._keys import KeyType
from ..backends.base import Write
from ._reader import RdbIndex

__all__ = ["merge_writes"]


def merge_writes(index: RdbIndex, key: bytes) -> list[Write]:
    """The writes that merge `key` from the file into an existing key."""
    kind = index.key_type(index.entries[key])
    if kind is KeyType.IMMUTABLE:
        value = index.read(key)
        assert isinstance(value, bytes)
        return [Write(kind, key, value)]
    if kind is KeyType.MUTABLE:
        batch = index.read_samples(key)
        return [Write(kind, key, value, ts) for value, ts in batch.encoded()]
    fields = index.read(key)
    assert isinstance(fields, dict)
    return [Write(kind, key, value, sub_key=sub_key) for sub_key, value in fields.items()]
