"""``telstate get SOURCE KEY``: one key's value.

An attribute's value, a sensor's latest sample (its time, then its value) or an
indexed key's whole dict in sub-key order, read through the ``--view`` prefixes
like any read.  Values are shown with ``repr`` (so ``'4096'`` and ``4096``
differ), numpy arrays summarised on one line unless ``--full``.
"""

from __future__ import annotations

import argparse

from .. import _text as text
from .._keys import KeyType
from .._sources import not_found, opened, with_views

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """``telstate get``."""
    with opened(args.source) as source:
        ts = with_views(source.ts, args.view)
        kind = ts.key_type(args.key)
        if kind is None:
            raise not_found(ts, args.key, source)
        if kind is KeyType.MUTABLE:
            samples = ts.get_range(args.key)
            if not samples:  # pragma: no cover - Redis has no empty sorted sets
                print("(no samples)")
                return 0
            value, stamp = samples[-1]
            shown = text.pretty(value, args.full)
            sep = "\n" if "\n" in shown else "  "
            print(f"{text.utc(stamp)}{sep}{shown}")
        elif kind is KeyType.INDEXED:
            print(text.pretty(text.sorted_dict(ts.get(args.key)), args.full))
        else:
            print(text.pretty(ts.get(args.key), args.full))
    return 0
