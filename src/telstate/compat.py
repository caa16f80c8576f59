"""Run code written for katsdptelstate on telstate, unchanged.

``telstate.compat.install()`` registers modules named ``katsdptelstate`` and
its public submodules in :data:`sys.modules`, each holding telstate's
equivalents, so that a later ``import katsdptelstate`` (in katdal, in SDP
services) gets telstate without a line of that code changing::

    import telstate.compat
    telstate.compat.install()

    import katsdptelstate                     # telstate underneath
    ts = katsdptelstate.TelescopeState()

Provided: the package itself, ``errors``, ``encoding``, ``endpoint``,
``utils``, ``backend``, ``memory``, ``redis``, ``rdb_writer``, ``aio``,
``aio.memory``, ``aio.redis`` and ``aio.rdb_writer``.  ``rdb_reader`` is not:
its callback interface belongs to rdbtools, and
:meth:`telstate.TelescopeState.load_from_file` replaces it.

An alias holds telstate's objects (``katsdptelstate.TelescopeState is
telstate.TelescopeState``) as its own names: rebinding or patching one changes
what code importing it from the alias sees, not telstate, just as patching
``katsdptelstate.TelescopeState`` never changed the class that katsdptelstate's
own modules use.  The exception is module state that telstate's code reads as it
runs: the pickle gate, ``katsdptelstate.encoding._allow_pickle`` and
``_warn_on_pickle`` (which katdal's tests patch), with ``_pickle_lock`` that
guards them.  Those names are *live*: the
alias holds no copy, and reading, assigning or deleting them (as
``mock.patch`` does) reads, assigns or deletes telstate's own variables.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterable
from typing import Any

from . import _keys

__all__ = ["KATSDPTELSTATE_VERSION", "install", "uninstall"]

#: The katsdptelstate release whose API and wire format telstate follows.
KATSDPTELSTATE_VERSION = "1.0.0"


def _utils_names() -> dict[str, Any]:
    return {
        "KeyType": _keys.KeyType,
        "ensure_str": _keys.ensure_str,
        "ensure_binary": _keys.ensure_bytes,
        "display_str": _keys.display_str,
    }


class _AliasModule(types.ModuleType):
    """A module standing for a katsdptelstate module, with some names live in `source`."""

    __telstate_compat__ = True

    def __init__(
        self, name: str, doc: str | None, source: types.ModuleType, live: Iterable[str] = ()
    ) -> None:
        super().__init__(name, doc)
        # Set through the base class: these two are the alias's own
        types.ModuleType.__setattr__(self, "_telstate_source", source)
        types.ModuleType.__setattr__(self, "_telstate_live", frozenset(live))

    def __getattr__(self, name: str) -> Any:
        # Only called for names the alias does not hold itself, live ones included
        if name in self._telstate_live:
            return getattr(self._telstate_source, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._telstate_live:
            setattr(self._telstate_source, name, value)
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._telstate_live:
            # The real variable goes (mock.patch restores it by assignment right after)
            delattr(self._telstate_source, name)
        else:
            super().__delattr__(name)

    def __dir__(self) -> list[str]:
        live = [name for name in self._telstate_live if hasattr(self._telstate_source, name)]
        return sorted({*super().__dir__(), *live})


# Module state read by telstate's code as it runs, shared with the alias (see above)
_LIVE: dict[str, tuple[str, ...]] = {
    "encoding": ("_allow_pickle", "_warn_on_pickle", "_pickle_lock"),
}

# katsdptelstate submodule -> (telstate module, names to expose; None for its __all__)
_ALIASES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "": ("telstate", None),
    "errors": ("telstate._errors", None),
    "encoding": ("telstate._codec", None),
    "endpoint": ("telstate.endpoint", None),
    "backend": ("telstate.backends.base", ("Backend",)),
    "memory": ("telstate.backends.memory", ("MemoryBackend",)),
    "redis": ("telstate.backends.redis", ("RedisBackend",)),
    "rdb_writer": ("telstate.rdb", ("RDBWriter",)),
    "aio": ("telstate.aio", None),
    "aio.memory": ("telstate.aio.memory", ("MemoryBackend",)),
    "aio.redis": ("telstate.aio.redis", ("RedisBackend",)),
    "aio.rdb_writer": ("telstate.aio", ("RDBWriter",)),
}


def install(force: bool = False) -> list[str]:
    """Make ``import katsdptelstate`` (and its submodules) resolve to telstate.

    Parameters
    ----------
    force
        Replace the real katsdptelstate even if it has already been imported
        (objects created by it keep working with it, not with telstate).

    Returns
    -------
    list of str
        The module names now provided.

    Raises
    ------
    RuntimeError
        If the real katsdptelstate is already imported and `force` is false.
    """
    existing = sys.modules.get("katsdptelstate")
    if existing is not None and not getattr(existing, "__telstate_compat__", False) and not force:
        raise RuntimeError(
            "katsdptelstate is already imported; call telstate.compat.install() before "
            "anything imports it, or pass force=True"
        )
    uninstall()
    installed: dict[str, _AliasModule] = {}
    for suffix, (source_name, names) in _ALIASES.items():
        try:
            source = importlib.import_module(source_name)
        except ImportError:
            continue  # not provided (yet) by telstate
        full_name = "katsdptelstate" + ("." + suffix if suffix else "")
        module = _AliasModule(full_name, source.__doc__, source, _LIVE.get(suffix, ()))
        exported = names if names is not None else tuple(getattr(source, "__all__", ()))
        for name in exported:
            if hasattr(source, name):
                setattr(module, name, getattr(source, name))
        installed[full_name] = module
    utils = _AliasModule("katsdptelstate.utils", _keys.__doc__, _keys)
    for name, value in _utils_names().items():
        setattr(utils, name, value)
    installed["katsdptelstate.utils"] = utils
    installed["katsdptelstate"].__version__ = KATSDPTELSTATE_VERSION
    for full_name, alias in installed.items():
        parent_name, _, child = full_name.rpartition(".")
        if parent_name in installed:
            parent = installed[parent_name]
            setattr(parent, child, alias)
            parent.__path__ = []  # a package: submodules import
    sys.modules.update(installed)
    return sorted(installed)


def uninstall() -> None:
    """Remove the aliases made by :func:`install` (the real katsdptelstate is not restored)."""
    for name, module in list(sys.modules.items()):
        if (name == "katsdptelstate" or name.startswith("katsdptelstate.")) and getattr(
            module, "__telstate_compat__", False
        ):
            del sys.modules[name]
