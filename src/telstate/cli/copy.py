"""``telstate copy SOURCE DEST`` and ``telstate demo --save``: moving whole states.

Routes, by the kinds of SOURCE and DEST:

* anything → RDB file: :class:`telstate.rdb.RDBWriter`, fed the keys in chunks
  so that a progress bar can follow; an RDB source is thereby re-encoded as a
  file that old readers (katsdptelstate, Redis 4+) load.  The file is written
  under a temporary name beside DEST and renamed over it only when complete, so
  a failed copy leaves no half file and DEST may even be the SOURCE file (which
  stays memory-mapped, intact, until the copy ends).  An existing DEST is
  replaced only with ``--force``.
* RDB file → Redis: :meth:`TelescopeState.load_from_file` (the file's own bytes
  sent as RESTORE payloads; existing keys merged).
* memory (``demo``) or Redis → Redis: the stored bytes of every key read and
  written in pipelined batches with the usual write semantics (keys already
  in DEST are merged; an immutable holding another value is a conflict).

The progress bar (tqdm, from the optional ``[progress]`` extra) is drawn on
stderr only when stderr is a terminal and the copy lasts more than half a
second; without tqdm there is none.  One summary line goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from .._codec import equal_encoded_values
from .._errors import ImmutableKeyError
from .._keys import KeyType
from .._sources import classify, opened, redis_label
from .._text import CommandError, plural
from ..backends.base import Write
from ..client import TelescopeState
from ..rdb import RDBWriter

__all__ = ["run", "write_rdb"]

_KEYS_PER_CHUNK = 64  # keys per RDBWriter.save call / per batch read
_WRITES_PER_BATCH = 5000  # writes per Redis pipeline


class _Bar(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def progress(total: int, description: str) -> Iterator[_Bar]:
    """A tqdm bar on stderr when that is a terminal and tqdm is installed, else nothing."""
    bar: _Bar = _NoBar()
    if sys.stderr.isatty():
        try:  # tqdm: an optional extra, imported only when a bar may be drawn
            from tqdm import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            bar = tqdm(
                total=total, desc=description, unit="key", file=sys.stderr, delay=0.5, leave=False
            )
    try:
        yield bar
    finally:
        bar.close()


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def telstate_keys(ts: TelescopeState) -> tuple[list[str], int]:
    """The keys of `ts` that telstate knows (one stats call), and how many others there are."""
    keys = ts.root().keys()
    stats = ts.backend.stats([key.encode("utf-8", "surrogateescape") for key in keys])
    known = [key for key, found in zip(keys, stats, strict=True) if found is not None]
    return known, len(keys) - len(known)


def write_rdb(ts: TelescopeState, dest: str, *, force: bool, label: str) -> int:
    """Write every key of `ts` to the RDB file `dest`; return how many were written.

    Keys of Redis types that telstate does not use are left out.

    Raises
    ------
    CommandError
        If `dest` exists and not `force`, if it is a directory, if there is
        nothing to write, or if some keys could not be written (vanished since
        listed); no file is left then.
    """
    if os.path.isdir(dest):
        raise CommandError(f"{dest} is a directory")
    if os.path.exists(dest) and not force:
        raise CommandError(f"{dest} exists: use --force to overwrite it")
    keys, _ = telstate_keys(ts)
    if not keys:
        raise CommandError(f"{label} has no telstate keys: no file written")
    directory, name = os.path.split(os.path.abspath(dest))
    partial = os.path.join(directory, f".{name}.{os.getpid()}.partial")
    try:
        with progress(len(keys), f"{label} → {name}") as bar, RDBWriter(partial) as writer:
            for chunk in _chunks(keys, _KEYS_PER_CHUNK):
                writer.save(ts, keys=list(chunk))
                bar.update(len(chunk))
        if writer.keys_failed:
            raise CommandError(
                f"{writer.keys_failed} of {len(keys)} keys could not be read (deleted meanwhile?): "
                f"{dest} not written"
            )
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
    return int(writer.keys_written)


def _reads(ts: TelescopeState, keys: Sequence[str]) -> Iterator[Write]:
    """The writes that recreate `keys` of `ts` elsewhere, from their stored bytes."""
    for key in keys:
        full = key.encode("utf-8", "surrogateescape")
        kind = ts.key_type(key)
        if kind is KeyType.IMMUTABLE:
            value = ts.get(key, return_encoded=True)
            if value is not None:
                yield Write(KeyType.IMMUTABLE, full, value)
        elif kind is KeyType.MUTABLE:
            for value, stamp in ts.get_range(key, st=0, return_encoded=True):
                yield Write(KeyType.MUTABLE, full, value, stamp)
        elif kind is KeyType.INDEXED:
            for sub_key, value in (ts.get(key, return_encoded=True) or {}).items():
                yield Write(KeyType.INDEXED, full, value, sub_key=sub_key)


def _conflicts(writes: Sequence[Write], results: Sequence[Any]) -> set[bytes]:
    """Keys whose write met another type or another immutable value."""
    clashing = set()
    for write, result in zip(writes, results, strict=True):
        other_type = isinstance(result, ImmutableKeyError)
        if other_type or (
            isinstance(result, bytes) and not equal_encoded_values(result, write.value)
        ):
            clashing.add(write.key)
    return clashing


def copy_keys(src: TelescopeState, dest: TelescopeState, label: str) -> tuple[int, set[bytes]]:
    """Copy every telstate key of `src` into `dest` with batched writes: (copied, conflicts)."""
    keys, _ = telstate_keys(src)
    conflicts: set[bytes] = set()
    with progress(len(keys), label) as bar:
        for chunk in _chunks(keys, _KEYS_PER_CHUNK):
            writes = list(_reads(src, chunk))
            for start in range(0, len(writes), _WRITES_PER_BATCH):
                batch = writes[start : start + _WRITES_PER_BATCH]
                conflicts |= _conflicts(batch, dest.backend.write_batch(batch))
            bar.update(len(chunk))
    return len(keys) - len(conflicts), conflicts


def run(args: argparse.Namespace) -> int:
    """``telstate copy SOURCE DEST``."""
    dest_kind, dest_where = classify(args.dest)
    if dest_kind == "demo":
        raise CommandError("DEST cannot be 'demo': give an RDB file or a Redis server")
    start = time.perf_counter()
    with opened(args.source) as source:
        dest_label = args.dest
        if source.file is not None:
            skipped = sum(source.file.file_info.skipped.values())
        else:
            skipped = telstate_keys(source.ts)[1] if source.kind == "redis" else 0
        if dest_kind == "rdb":
            copied = write_rdb(source.ts, dest_where, force=args.force, label=args.source)
            conflicts: set[bytes] = set()
        else:
            if source.kind == "redis" and source.url == dest_where:
                raise CommandError("SOURCE and DEST are the same server")
            dest_label = redis_label(dest_where)
            dest = TelescopeState(dest_where)
            try:
                if source.kind == "rdb":
                    assert source.path is not None
                    copied = dest.load_from_file(source.path)
                    conflicts = set()
                else:
                    copied, conflicts = copy_keys(source.ts, dest, f"→ {dest_label}")
            finally:
                dest.backend.close()
    elapsed = time.perf_counter() - start
    others = f" (left out {plural(skipped, 'key')} of other Redis types)" if skipped else ""
    what = f"{plural(copied, 'key')} from {source.label} to {dest_label}"
    print(f"copied {what} in {elapsed:.2f} s{others}")
    if conflicts:
        names = ", ".join(sorted(key.decode("utf-8", "replace") for key in conflicts)[:5])
        more = ", ..." if len(conflicts) > 5 else ""
        raise CommandError(
            f"{plural(len(conflicts), 'key')} already in {dest_label} with other values or types "
            f"and were not copied: {names}{more}"
        )
    return 0
