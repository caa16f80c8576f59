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
:meth:`TelescopeState.load_from_file` replaces it.  The aliases are plain module
objects: ``katsdptelstate.TelescopeState is telstate.TelescopeState``.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    installed: dict[str, types.ModuleType] = {}
    for suffix, (source_name, names) in _ALIASES.items():
        try:
            source = importlib.import_module(source_name)
        except ImportError:
            continue  # not provided (yet) by telstate
        full_name = "katsdptelstate" + ("." + suffix if suffix else "")
        module = types.ModuleType(full_name, source.__doc__)
        exported = names if names is not None else tuple(getattr(source, "__all__", ()))
        for name in exported:
            if hasattr(source, name):
                setattr(module, name, getattr(source, name))
        module.__telstate_compat__ = True  # type: ignore[attr-defined]
        installed[full_name] = module
    utils = types.ModuleType("katsdptelstate.utils")
    for name, value in _utils_names().items():
        setattr(utils, name, value)
    utils.__telstate_compat__ = True  # type: ignore[attr-defined]
    installed["katsdptelstate.utils"] = utils
    installed["katsdptelstate"].__version__ = KATSDPTELSTATE_VERSION  # type: ignore[attr-defined]
    for full_name, module in installed.items():
        parent_name, _, child = full_name.rpartition(".")
        if parent_name in installed:
            parent = installed[parent_name]
            setattr(parent, child, module)
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
