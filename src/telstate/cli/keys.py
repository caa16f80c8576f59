"""``telstate keys SOURCE [PATTERN]``: a table of keys, or their names for scripts.

Each row is a key with its type, count (samples or sub-keys), stored size and, for
sensors, its time span.  Without ``--view`` PATTERN is matched against full key
names; with views, against the names a reader of the view sees (see
``telstate._text.view_listing``), and a VIEW column says which prefix
each name resolves to.  ``--names`` prints the bare names, one a line, as their
own bytes, so that each can be given back as an argument.
"""

from __future__ import annotations

import argparse
import sys

from .. import _text as text
from .._glob import compile_glob
from .._keys import KeyType
from .._sources import all_stats, opened, with_views

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``telstate keys``."""
    wanted = text.TYPE_CHOICES[args.type] if args.type else None
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        if args.view:
            match = compile_glob(args.pattern.encode("utf-8", "surrogateescape"))
            listing = text.view_listing(source.ts.keys(), ts.prefixes)
            names = {
                name: full
                for name, full in listing.items()
                if match(name.encode("utf-8", "surrogateescape"))
            }
        else:
            names = {key: key for key in source.ts.keys(args.pattern)}
        stats = all_stats(source.ts, list(names.values()))
        rows = []
        for (name, full), s in zip(names.items(), stats, strict=True):
            if s is None or (wanted is not None and s.key_type is not wanted):
                continue
            if args.names:  # for scripts: the name itself, bytes that are not UTF-8 too
                print(name)
                continue
            count = "" if s.key_type is KeyType.IMMUTABLE else str(s.count)
            row = [text.printable(name), text.TYPE_NAMES[s.key_type], count, text.size(s.nbytes)]
            if args.view:
                prefix = full[: len(full) - len(name)]
                row.insert(1, text.printable(prefix.rstrip("_")) or "(root)")
            row.append(text.span(s.first, s.last))
            rows.append(row)
    if rows:
        header = ["KEY", "TYPE", "COUNT", "SIZE", "SENSOR SPAN (UTC)"]
        right = [2, 3]
        if args.view:
            header.insert(1, "VIEW")
            right = [3, 4]
        print("\n".join(text.table(rows, header, right)))
    elif not args.names:
        print("(no matching keys)", file=sys.stderr)
    return 0
