"""Redis RDB dump files: read every Redis version, write portable files.

Reading is done by :meth:`telstate.TelescopeState.load_from_file` and
:meth:`telstate.TelescopeState.open`; writing by :class:`RDBWriter`.
"""

from .._save import RDBWriter

__all__ = ["RDBWriter"]
