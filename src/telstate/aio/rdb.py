"""A read-only asyncio backend over an RDB file (see :mod:`telstate.backends.rdb`)."""

from __future__ import annotations

from ..backends.rdb import RdbBackend as SyncRdbBackend
from ..rdb._source import RdbSource
from .memory import LocalBackend

__all__ = ["RdbBackend"]


class RdbBackend(LocalBackend):
    """Telescope state read lazily from an RDB file, for asyncio.

    Parameters
    ----------
    source
        A path (memory-mapped), an open binary file or the file's bytes.
    verify_checksum
        Check the file's CRC-64 first (reads the whole file).
    """

    sync: SyncRdbBackend

    def __init__(self, source: RdbSource, verify_checksum: bool = False) -> None:
        super().__init__(SyncRdbBackend(source, verify_checksum))

    def __repr__(self) -> str:
        return f"<telstate.aio.rdb.RdbBackend {self.sync.name!r}: {len(self.sync.index)} keys>"
