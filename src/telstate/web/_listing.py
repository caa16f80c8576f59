"""The key list of ``telstate serve``: rows, groups and the filter (pure, no I/O).

A telescope operator thinks of a state's keys by where they belong rather than
alphabetically, so the page groups them by the namespace rule of ``telstate
info`` (``telstate._namespaces``): global keys, then streams,
capture blocks, capture streams and antennas, each group sorted by name.  Each
row carries what ``telstate keys`` shows (type, count, size, sensor time span)
and an opaque id, the hex of the key's bytes, which is how the page names a key
in requests: key names are arbitrary bytes, which neither URLs nor JSON carry
as they are.

The filter is a Redis glob when it holds a glob character (``*``, ``?`` or
``[``), matched byte-exact on the name as Redis would; otherwise a plain,
case-insensitive substring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .. import _text as text
from .._glob import compile_glob
from .._keys import KeyType
from .._namespaces import find_streams, namespace
from ..backends.base import KeyStats

__all__ = [
    "GROUP_ORDER",
    "KeyRow",
    "group_rows",
    "key_id",
    "key_from_id",
    "make_rows",
    "matches",
]

#: Group kinds in the order the page shows them.
GROUP_ORDER: Final = ("global", "stream", "capture block", "capture stream", "antenna")
_GLOB_CHARS: Final = frozenset("*?[")


def key_id(key: str) -> str:
    """The id of a full key: the hex of its bytes (surrogate escapes undone)."""
    return key.encode("utf-8", "surrogateescape").hex()


def key_from_id(ident: str) -> str:
    """The full key an id names.

    Raises
    ------
    ValueError
        If `ident` is not an even number of hex digits.
    """
    if len(ident) % 2 or any(c not in "0123456789abcdefABCDEF" for c in ident):
        raise ValueError(f"bad key id {ident[:40]!r}: expected hex digits")
    return bytes.fromhex(ident).decode("utf-8", "surrogateescape")


def matches(pattern: str, name: str) -> bool:
    """Whether `name` passes the filter `pattern` (a glob if it has ``*?[``, else a substring)."""
    if not pattern:
        return True
    if _GLOB_CHARS.intersection(pattern):
        to_bytes = "utf-8", "surrogateescape"
        return compile_glob(pattern.encode(*to_bytes))(name.encode(*to_bytes))
    return pattern.casefold() in name.casefold()


@dataclass(frozen=True)
class KeyRow:
    """One key of the list, as the page shows it."""

    id: str
    name: str  # as seen through the view (the full key without views)
    group: str  # one of GROUP_ORDER
    group_name: str  # e.g. the stream's name; '' for global keys
    type: str  # 'immutable', 'sensor' or 'indexed'
    count: int
    size: int
    first: float | None
    last: float | None

    def to_json(self) -> dict[str, Any]:
        """The row for the page (times as numbers and as UTC text)."""
        return {
            "id": self.id,
            "name": text.printable(self.name),
            "type": self.type,
            "count": self.count,
            "size": self.size,
            "size_text": text.size(self.size),
            "first": self.first,
            "last": self.last,
            "span": text.span(self.first, self.last),
        }


def make_rows(
    names: Mapping[str, str],
    stats: Sequence[KeyStats | None],
    config: Any = None,
    pattern: str = "",
) -> list[KeyRow]:
    """Rows for the keys `names` (``{shown name: full key}``) and their `stats`.

    Keys without stats (gone meanwhile, or not telstate's) are left out, and so
    are those whose shown name does not pass `pattern`.  Namespaces come from
    the full keys; `config` is the value of ``sdp_config``, if any.
    """
    streams = find_streams(list(names.values()), config)
    rows = []
    for (name, full), s in zip(names.items(), stats, strict=True):
        if s is None or not matches(pattern, name):
            continue
        group, group_name = namespace(full, streams)
        rows.append(
            KeyRow(
                id=key_id(full),
                name=name,
                group=group,
                group_name=group_name,
                type=text.TYPE_NAMES[s.key_type],
                count=0 if s.key_type is KeyType.IMMUTABLE else s.count,
                size=s.nbytes,
                first=s.first,
                last=s.last,
            )
        )
    return rows


def group_rows(rows: Sequence[KeyRow]) -> list[dict[str, Any]]:
    """Rows in groups, in :data:`GROUP_ORDER` then by group name, each sorted by key name."""
    groups: dict[tuple[str, str], list[KeyRow]] = {}
    for row in rows:
        groups.setdefault((row.group, row.group_name), []).append(row)
    ordered = sorted(groups, key=lambda g: (GROUP_ORDER.index(g[0]), g[1]))
    return [
        {
            "kind": kind,
            "name": text.printable(name),
            "keys": [row.to_json() for row in sorted(groups[kind, name], key=lambda r: r.name)],
        }
        for kind, name in ordered
    ]
