"""Getting the bytes of an RDB file: a path (memory-mapped), a file object or bytes."""

from __future__ import annotations

import mmap
import os
from typing import IO, Any

from .._errors import RdbParseError

__all__ = ["RdbSource", "read_source"]

#: What an RDB file can be given as.
RdbSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


def read_source(source: RdbSource) -> tuple[Any, str]:
    """The file's contents as a buffer, and a name for messages.

    Paths are memory-mapped (read-only), so only the pages actually read are
    loaded; file objects are read whole; bytes-like objects are used as they are.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        If a path cannot be opened.
    RdbParseError
        If the file is empty.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return source, "bytes"
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        with open(name, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise RdbParseError(name, 0, None, "the file is empty")
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), name
    name = str(getattr(source, "name", "file object"))
    data = source.read()
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{name} must be opened in binary mode")
    return data, name
