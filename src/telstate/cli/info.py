"""``telstate info SOURCE``, and the summary ``telstate demo`` prints too.

One summary of a whole telescope state (whatever view it is given through), in
sections of aligned lines:

* **Source**: what holds the state — an RDB file's format and AUX fields, a Redis
  server's product, version, memory and key count, or the demo;
* **Keys**: counts by type, and the keys of other Redis types left out;
* **Namespaces**: keys per capture block, capture stream, stream, the antennas
  together, and the rest (the rule of :mod:`telstate._namespaces`);
* **Sensors**: their number, samples, first and last sample times and span;
* **Biggest keys**: the ten that take the most bytes.

Every number comes from one ``stats`` call of the backend (two round trips on
Redis), so nothing but ``sdp_config`` is decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence

from .. import _text as text
from .._errors import TelstateError
from .._keys import KeyType
from .._namespaces import count_namespaces
from .._sources import Source, all_stats, opened
from ..backends.base import KeyStats
from ..client import TelescopeState

__all__ = ["run", "summary"]

#: Namespace kinds listed one by one, in this order (antennas and global keys follow).
_LISTED_KINDS = ("capture block", "capture stream", "stream")
_N_BIGGEST = 10


def run(args: argparse.Namespace) -> int:
    """``telstate info SOURCE``."""
    with opened(args.source) as source:
        shown = summary(source)
    print(shown)
    return 0


def summary(source: Source) -> str:
    """The summary of the whole state of `source`, lines joined by ``\\n``."""
    root = source.ts.root()
    keys = root.keys()
    stats = all_stats(root, keys)
    found = {key: s for key, s in zip(keys, stats, strict=True) if s is not None}
    lines = _source_lines(source)
    lines += _key_lines(source, found, n_others=len(keys) - len(found))
    lines += _namespace_lines(root, found)
    lines += _sensor_lines(found)
    lines += _biggest_lines(found)
    return "\n".join(lines)


def _section(title: str, rows: Sequence[Sequence[str]]) -> list[str]:
    return [title] + ["  " + line for line in text.table(rows)]


def _source_lines(source: Source) -> list[str]:
    if source.file is not None:
        assert source.path is not None
        info = source.file.file_info
        file_size = text.size(os.path.getsize(source.path))
        rows = [["format", f"{info.format} (RDB version {info.version})"]]
        for field, value in info.aux.items():
            name = field.decode("utf-8", "replace")
            shown = value.decode("utf-8", "replace")
            if name == "ctime" and shown.isdigit():
                shown = text.utc(float(shown)).replace(".000Z", "Z")
            elif name == "used-mem" and shown.isdigit():
                shown = text.size(int(shown))
            rows.append([name, shown])
        return _section(f"Source  {source.path} (RDB file, {file_size})", rows)
    if source.server is not None:
        server = source.server.server_info()
        rows = [
            ["version", server["version"]],
            ["used memory", server["used_memory"]],
            [f"keys in db {server['db']}", server["keys"]],
        ]
        return _section(f"Source  {source.label} ({server['product']} server)", rows)
    return [f"Source  {source.label} (a synthetic MeerKAT-like state in memory)"]


def _key_lines(source: Source, found: Mapping[str, KeyStats], n_others: int) -> list[str]:
    by_type = Counter(s.key_type for s in found.values())
    rows = [[text.TYPE_NAMES[kind], str(by_type[kind])] for kind in KeyType]
    skipped: Counter[str] = Counter()
    if source.file is not None:
        skipped.update(source.file.file_info.skipped)
    elif n_others:
        skipped["other Redis types"] = n_others
    if skipped:
        detail = ", ".join(f"{name} {count}" for name, count in sorted(skipped.items()))
        rows.append(["skipped", f"{sum(skipped.values())} non-telstate keys ({detail})"])
    return _section(f"Keys  {len(found)}", rows)


def _namespace_lines(root: TelescopeState, found: Mapping[str, KeyStats]) -> list[str]:
    config = None
    if found.get("sdp_config") and found["sdp_config"].key_type is KeyType.IMMUTABLE:
        with contextlib.suppress(TelstateError, ValueError):
            config = root.get("sdp_config")
    spaces = count_namespaces(found, config)
    rows = [
        [kind, text.printable(name), str(count), "key" if count == 1 else "keys"]
        for kind in _LISTED_KINDS
        for (k, name), count in sorted(spaces.items())
        if k == kind
    ]
    antennas = sorted(name for kind, name in spaces if kind == "antenna")
    if antennas:
        n_antenna = sum(count for (kind, _), count in spaces.items() if kind == "antenna")
        shown = antennas[0] if len(antennas) == 1 else f"{antennas[0]}..{antennas[-1]}"
        rows.append([f"antennas ({len(antennas)})", shown, str(n_antenna), "keys"])
    n_global = spaces[("global", "")]
    rows.append(["global", "", str(n_global), "key" if n_global == 1 else "keys"])
    return _section("Namespaces", rows)


def _sensor_lines(found: Mapping[str, KeyStats]) -> list[str]:
    sensors = [s for s in found.values() if s.key_type is KeyType.MUTABLE]
    firsts = [s.first for s in sensors if s.first is not None]
    lasts = [s.last for s in sensors if s.last is not None]
    rows = [["sensors", str(len(sensors))], ["samples", str(sum(s.count for s in sensors))]]
    if firsts and lasts:
        first, last = min(firsts), max(lasts)
        rows += [
            ["first", text.utc(first)],
            ["last", text.utc(last)],
            ["duration", text.duration(last - first)],
        ]
    return _section("Sensors", rows)


def _biggest_lines(found: Mapping[str, KeyStats]) -> list[str]:
    biggest = sorted(found.items(), key=lambda item: (-item[1].nbytes, item[0]))[:_N_BIGGEST]
    if not biggest:
        return []
    rows = [
        [text.printable(key), text.TYPE_NAMES[s.key_type], text.size(s.nbytes)]
        for key, s in biggest
    ]
    return _section("Biggest keys", rows)
