"""A value as a JSON tree for the page: pretty, bounded, never markup (pure, no I/O).

The page draws a value as a tree of nodes, each one a plain JSON object that
its script turns into DOM text nodes (never HTML), so a value cannot inject
anything whatever it holds.  Node kinds:

``{"t": "scalar", "text": repr}``
    anything that is not a container or an array; ``repr`` keeps ``'4096'`` and
    ``4096`` apart, as ``telstate get`` does.
``{"t": "list", "open": "[", "close": "]", "items": [...]}``
    lists and tuples; dicts are ``{"t": "dict", "items": [[key, value], ...]}``.
``{"t": "array", "summary": ..., "full": ...}``
    a numpy array: its one-line summary (shape, dtype, min, max, first items),
    and its full text for the page to expand on demand.

Huge values are cut rather than sent whole: a string past :data:`MAX_TEXT`
characters, a container past :data:`MAX_ITEMS` items, an array's text past
:data:`MAX_ARRAY_TEXT` characters, and the whole tree past :data:`MAX_NODES`
nodes; each cut node says how much it left out in ``"more"``, which the page
shows as a note.  Key names and values are escaped for display by
:func:`telstate._text.printable` only where they are names (control
characters); everything else is plain text that the page inserts as text.
"""

from __future__ import annotations

import sys
from typing import Any, Final

import numpy as np

from .. import _text as text

__all__ = ["MAX_ARRAY_TEXT", "MAX_ITEMS", "MAX_NODES", "MAX_TEXT", "render", "render_text"]

#: Characters of a scalar's text shown before it is cut.
MAX_TEXT: Final = 4000
#: Items of a list, tuple or dict shown before it is cut.
MAX_ITEMS: Final = 500
#: Characters of an array's full text sent for expansion.
MAX_ARRAY_TEXT: Final = 100_000
#: Nodes in one value's tree: past this, containers are cut.
MAX_NODES: Final = 5000


class _Budget:
    def __init__(self, nodes: int) -> None:
        self.left = nodes


def render_text(shown: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    """A scalar node of `shown`, cut at `limit` characters."""
    node: dict[str, Any] = {"t": "scalar", "text": shown[:limit]}
    if len(shown) > limit:
        node["more"] = len(shown) - limit
    return node


def _array_text(array: np.ndarray[Any, Any]) -> str:
    # numpy writes the array in full only below its threshold: give it the element
    # count that keeps the text near MAX_ARRAY_TEXT, and cut what is still longer
    threshold = min(sys.maxsize, max(1000, MAX_ARRAY_TEXT // 4))
    with np.printoptions(threshold=threshold, linewidth=100):
        return repr(array)


def render(value: Any, budget: int = MAX_NODES) -> dict[str, Any]:
    """The node tree of `value` (see the module's comment)."""
    return _render(value, _Budget(budget))


def _render(value: Any, budget: _Budget) -> dict[str, Any]:
    budget.left -= 1
    node: dict[str, Any]
    if isinstance(value, np.ndarray):
        full = _array_text(value)
        node = {
            "t": "array",
            "summary": text.array_summary(value),
            "full": full[:MAX_ARRAY_TEXT],
        }
        if len(full) > MAX_ARRAY_TEXT:
            node["more"] = len(full) - MAX_ARRAY_TEXT
        return node
    if isinstance(value, dict):
        items = list(value.items())
        shown = _take(len(items), budget)
        node = {
            "t": "dict",
            "items": [[_render(k, budget), _render(v, budget)] for k, v in items[:shown]],
        }
        if shown < len(items):
            node["more"] = len(items) - shown
        return node
    if isinstance(value, list | tuple):
        shown = _take(len(value), budget)
        is_tuple = isinstance(value, tuple)
        node = {
            "t": "list",
            "open": "(" if is_tuple else "[",
            "close": ",)" if is_tuple and len(value) == 1 else ")" if is_tuple else "]",
            "items": [_render(item, budget) for item in value[:shown]],
        }
        if shown < len(value):
            node["more"] = len(value) - shown
        return node
    return render_text(repr(value.item() if isinstance(value, np.generic) else value))


def _take(n: int, budget: _Budget) -> int:
    """How many of `n` items a container may show (at most MAX_ITEMS, within the budget)."""
    shown = max(0, min(n, MAX_ITEMS, budget.left // 2))
    budget.left -= shown
    return shown
