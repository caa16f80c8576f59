# Sphinx configuration for telstate's API reference.
#
# The reference is built from the docstrings alone (autodoc imports the installed package).
# Docstrings follow the numpydoc layout; they are read with ``sphinx.ext.napoleon`` rather
# than the numpydoc extension because napoleon ships with Sphinx (one dependency fewer to
# pin), feeds autodoc's ``:members:`` directly (numpydoc wants autosummary stubs for class
# members), and lets the signatures' type hints stand in for types a docstring leaves out
# (``autodoc_typehints = "description"``).
#
# CI builds with ``-W --keep-going -n``: every warning is an error and every cross-reference
# must resolve.  The machines have no network, so no intersphinx: references to other
# projects (the standard library beyond builtins, numpy, redis-py) cannot be resolved and are
# listed in ``_EXTERNAL`` below.  Build: see README.md ("Documentation").

from __future__ import annotations

import sys
from typing import Any, Generic, TypeVar

import telstate

project = "telstate"
author = "telstate developers"
copyright = "telstate developers"
version = release = telstate.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

nitpicky = True

# Other projects' names: no inventory of theirs can be fetched here (see the top).  The
# standard library's modules and redis-py, as the docstrings and signatures name them.
_EXTERNAL = [
    "abc",
    "argparse",
    "collections",
    "concurrent",
    "enum",
    "numpy",
    "os",
    "redis",
    "socket",
    "sys",
]
nitpick_ignore_regex = [(r"py:.*", rf"{module}(\..*)?") for module in _EXTERNAL]

# Broken references in docstrings of modules being reworked on another branch, each a name
# that is private (write it as ``literal``), unqualified (``~telstate.ImmutableKeyError``)
# or misspelt.  (*): napoleon reads an alias's one-line description "Text: more" as type
# "Text".  Once those docstrings are fixed, remove this list (the line below it).
nitpick_ignore: list[tuple[str, str]] = []


# Shared implementation classes that are not part of the API: a class's "Bases:" line names
# their own bases instead, and their public members are shown on each subclass.
_IMPLEMENTATION_BASES = {
    "telstate._logic.TelescopeStateBase",  # the sync and asyncio front ends' rules
    "telstate._logic.PipelineBase",
    "telstate.backends.memory.HeldValues",  # the memory and RDB file backends' read rules
    "telstate.backends.redis.RedisBackendCommon",  # the sync and asyncio Redis backends'
}


def _public_bases(bases: list[Any]) -> list[Any]:
    """`bases` with each implementation class replaced by its own public bases."""
    public: list[Any] = []
    for base in bases:
        origin = getattr(base, "__origin__", base)  # Generic[...] subscriptions
        if origin is Generic or origin is object:
            continue
        if f"{origin.__module__}.{origin.__qualname__}" in _IMPLEMENTATION_BASES:
            public.extend(_public_bases(list(origin.__bases__)))
        elif base not in public:
            public.append(base)
    return public


def _process_bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    bases[:] = _public_bases(bases) or [object]


def _type_variable(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    # A signature's type variable (e.g. the backend type of the front ends' generic base)
    # has no page of its own: show its name as plain text instead of a broken link.
    module_name, _, name = node.get("reftarget", "").rpartition(".")
    module = sys.modules.get(module_name)
    if module is not None and isinstance(getattr(module, name, None), TypeVar):
        return contnode
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _process_bases)
    app.connect("missing-reference", _type_variable)


html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build"]
