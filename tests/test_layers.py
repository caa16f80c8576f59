"""The package's imports point one way (docs/architecture.md): no cycle, no layer reaching up.

Read from the source with ``ast``: every import a module makes when it is loaded (its
top level, outside ``if TYPE_CHECKING:``) and every import inside a function, each an
edge between two modules of the package.  A package's ``__init__`` counts as the module
that its dotted name names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Layers from the top; a module may import from its own layer or any layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("telstate.__main__", "telstate.cli"),
    ("telstate.web",),
    ("telstate._sources", "telstate._text", "telstate._demo"),
    ("telstate", "telstate.client", "telstate.aio", "telstate.compat", "telstate.rdb"),
    ("telstate._drivers", "telstate._save"),
    ("telstate._plans",),
    ("telstate._logic",),
    (
        "telstate.backends",
        "telstate.aio.backend",
        "telstate.aio.memory",
        "telstate.aio.rdb",
        "telstate.aio.redis",
    ),
    ("telstate._redis", "telstate.rdb._"),
    ("telstate._arrays", "telstate._reply", "telstate._decimate"),
    ("telstate._samples", "telstate._updates"),
    ("telstate._codec", "telstate._ranges", "telstate._keys", "telstate._namespaces"),
    (
        "telstate._errors",
        "telstate._deadline",
        "telstate._glob",
        "telstate._version",
        "telstate._strided",
    ),
    ("telstate.endpoint",),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom, modules: set[str]) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts.pop()
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # "from . import x" imports the submodule x when it is one, else a name of the module
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
        for alias in node.names
    ]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> dict[str, int]:
    """The package's modules that `path` imports when run (name -> line)."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            for child in ast.walk(node):
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    names = _resolve(module, is_package, child, modules)
                for name in names:
                    # the longest prefix that is a module of the package
                    while name and name not in modules:
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        found.setdefault(name, child.lineno)

    visit(ast.parse(path.read_text()).body)
    return found


def _graph() -> dict[str, dict[str, int]]:
    paths = sorted((SRC / "telstate").rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {_module_name(path): _imports(path, modules) for path in paths}


def _layer(module: str) -> int:
    """The layer of `module`: the longest entry of LAYERS naming it or a package holding it.

    ``telstate`` names the package's ``__init__`` only, and an entry ending in ``_`` (like
    ``telstate.rdb._``) names every module whose name starts with it.
    """
    best = (-1, len(LAYERS))  # (length of the matching entry, -layer)
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if entry.endswith("_"):
                hit = module.startswith(entry)
            elif entry == "telstate":
                hit = module == entry
            else:
                hit = module == entry or module.startswith(entry + ".")
            if hit:
                best = max(best, (len(entry), -i))
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    return -best[1]


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph.get(module, {}):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)


def test_imports_point_down() -> None:
    upward = []
    for module, targets in _graph().items():
        if module == "telstate.rdb":
            continue  # the face of the public telstate.rdb: hands on RDBWriter (see docs)
        for target, line in targets.items():
            if _layer(target) < _layer(module):
                upward.append(f"{module}:{line} imports {target}")
    assert upward == []


def test_the_checker_sees_imports() -> None:
    # The checker itself: it must find the imports it is there to judge.
    graph = _graph()
    assert "telstate._plans" in graph["telstate.client"]
    assert "telstate._drivers" in graph["telstate.aio"]
    assert "telstate.backends.base" in graph["telstate._logic"]
    assert "telstate.rdb._reader" not in graph["telstate._plans"]  # TYPE_CHECKING only
    assert _layer("telstate.cli.main") < _layer("telstate.client") < _layer("telstate._errors")
