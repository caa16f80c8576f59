"""Merge pip constraint files: a package pinned in a later file replaces its earlier pin.

Usage: python .ci/constraints.py BASE.txt OVERRIDE.txt... > merged.txt
"""

import re
import sys


def pins(path: str) -> dict[str, str]:
    found = {}
    with open(path) as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            if line:
                name = re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0]
                found[re.sub(r"[-_.]+", "-", name).lower()] = line
    return found


merged: dict[str, str] = {}
for path in sys.argv[1:]:
    merged.update(pins(path))
print("\n".join(merged[name] for name in sorted(merged)))
