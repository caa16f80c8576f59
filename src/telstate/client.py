"""The synchronous :class:`TelescopeState`: the rules of :mod:`._logic` and
:mod:`._plans`, with blocking I/O.

Each method is the twin of the asyncio one in :mod:`telstate.aio` (they differ
by ``await``; ``tests/test_aio.py`` checks that the two APIs match).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import _plans as plans
from ._arrays import SampleArrays
from ._codec import ENCODING_DEFAULT, decode_value, encode_value
from ._drivers import Driver
from ._keys import KeyType, display_str, ensure_bytes, ensure_str
from ._logic import (
    PipelineBase,
    TelescopeStateBase,
    check_batch,
    check_written,
    decode_found,
    describe,
    encode_sub_key,
    make_indexed_write,
    make_sample,
    range_arrays,
    range_result,
    ranges_result,
)
from ._plans import IndexedCondition, KeyCondition
from ._ranges import resolve_range
from .backends.base import Backend, Write
from .backends.memory import MemoryBackend
from .backends.rdb import RdbBackend
from .endpoint import Endpoint, endpoint_parser
from .rdb import RDBWriter
from .rdb._reader import RdbIndex
from .rdb._source import RdbSource, read_source

__all__ = ["TelescopeState"]


class TelescopeState(TelescopeStateBase[Backend]):
    """A view of a telescope state: attributes, sensors and indexed keys.

    Parameters
    ----------
    endpoint
        Where the data lives: ``''`` (the default) for a new in-memory
        backend; a :class:`~telstate.backends.Backend` instance; or a Redis
        server as ``'host'``, ``'host:port'``, an :class:`~telstate.endpoint.Endpoint`
        or a ``redis://`` URL.
    db
        Redis database number (only with a Redis server).
    prefixes
        The view's namespaces, highest priority first; reads try each in turn,
        writes go to the first.
    base
        Another TelescopeState whose backend this one shares (no `endpoint` or
        `db` then).

    Raises
    ------
    ConnectionError
        If a Redis server cannot be reached.
    ValueError
        If the arguments conflict.
    """

    def __init__(
        self,
        endpoint: str | Endpoint | Backend = "",
        db: int = 0,
        prefixes: Sequence[str | bytes] = (b"",),
        base: TelescopeState | None = None,
    ) -> None:
        backend: Backend | None
        if base is not None:
            if endpoint != "":
                raise ValueError("Cannot specify both base and endpoint")
            if db != 0:
                raise ValueError("Cannot specify both base and db")
            backend = None
        elif isinstance(endpoint, Backend):
            if db != 0:
                raise ValueError("Cannot specify both a backend and a db")
            backend = endpoint
        elif not endpoint:
            if db != 0:
                raise ValueError("Cannot specify a db when using the default backend")
            backend = MemoryBackend()
        else:
            backend = _redis_backend(endpoint, db)
        self._init_view(backend, prefixes, base)

    @classmethod
    def open(cls, source: RdbSource, verify_checksum: bool = False) -> TelescopeState:
        """Open an RDB file read-only, decoding each key only when it is read.

        Parameters
        ----------
        source
            Path (memory-mapped), binary file object or the file's bytes.
        verify_checksum
            Check the file's CRC-64 now (reads the whole file); see
            :meth:`telstate.backends.rdb.RdbBackend.verify`.

        Raises
        ------
        RdbParseError
            If the file is not a valid RDB file.
        """
        return cls(RdbBackend(source, verify_checksum=verify_checksum))

    def load_from_file(self, file: RdbSource) -> int:
        """Add the keys of an RDB file (path, binary file object or bytes).

        Keys the database lacks are created whole; existing keys are merged as
        if each item were written (samples added, immutables and sub-keys set
        if absent).  Keys of other Redis types are skipped.  The whole file is
        parsed and checked (checksum included) before anything is written.

        Returns
        -------
        int
            Number of keys loaded.

        Raises
        ------
        RdbParseError
            If the file is not a valid RDB file (nothing is written then).
        ImmutableKeyError
            If an immutable or sub-key in the file conflicts with the database
            (everything else is loaded).
        """
        data, name = read_source(file)
        index = RdbIndex(data, name, verify_checksum=True)
        return Driver(self._backend, plans.load(index)).run()  # type: ignore[no-any-return]

    def save_to_file(
        self, filename: str | os.PathLike[str], keys: Iterable[str | bytes] | None = None
    ) -> int:
        """Write keys (default: all, whatever the view) to an RDB file; return how many.

        The file is RDB version 9 in encodings every reader knows (katsdptelstate
        1.0, Redis >= 5), whichever backend holds the data; see
        :class:`telstate.rdb.RDBWriter` for more control.  All or nothing: a save
        that raises removes its file.
        """
        writer = RDBWriter(filename)
        try:
            writer.save(self._backend, keys)
            writer.close()
        except BaseException:
            writer.abandon()
            raise
        return writer.keys_written

    # -- attribute and item access

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._get(key)
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            super().__setattr__(key, value)
        elif any(key in cls.__dict__ for cls in type(self).__mro__):
            raise AttributeError(
                f"{key!r} is the name of a TelescopeState attribute; set it with ts[{key!r}] = ..."
            )
        else:
            self.add(key, value, immutable=True)

    def __getitem__(self, key: str | bytes) -> Any:
        # The hot path of attribute reads: _get() inlined.
        found = self._backend.get(self._full_keys(key))
        if found is None:
            raise KeyError(f"{display_str(key)} not found")
        payload = found[1]
        if type(payload) is bytes:
            return decode_value(payload)
        return decode_found(found, False)

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        self.add(key, value, immutable=True)

    def __contains__(self, key: str | bytes) -> bool:
        return self._backend.exists(self._full_keys(key))

    def _ipython_key_completions_(self) -> list[str]:
        """Keys without their view prefixes, for IPython's tab completion."""
        keys = self._backend.keys(b"*")
        return [
            ensure_str(key[len(prefix) :])
            for prefix in self._prefixes
            for key in keys
            if key.startswith(prefix)
        ]

    # -- whole keys

    def exists(self, key: str | bytes) -> bool:
        """Whether `key` exists under any prefix of the view."""
        return self._backend.exists(self._full_keys(key))

    def key_type(self, key: str | bytes) -> KeyType | None:
        """Type of `key` (for the first prefix that has it), or None if absent."""
        return self._backend.key_type(self._full_keys(key))

    def is_immutable(self, key: str | bytes) -> bool:
        """Whether `key` is an immutable (attribute); False if it is absent.

        .. deprecated:: 0.10
            Use :meth:`key_type`.
        """
        warnings.warn(
            "is_immutable is deprecated; use key_type instead", FutureWarning, stacklevel=2
        )
        return self.key_type(key) == KeyType.IMMUTABLE

    def keys(self, filter: str | bytes = "*") -> list[str]:
        """All full keys (whatever the view) matching the Redis glob `filter`, sorted."""
        return sorted(ensure_str(key) for key in self._backend.keys(ensure_bytes(filter)))

    def delete(self, key: str | bytes) -> None:
        """Remove `key` under every prefix of the view (this breaks immutability: use sparingly)."""
        self._backend.delete(self._full_keys(key))

    def clear(self) -> None:
        """Remove every key in the database, whatever the view."""
        self._backend.clear()

    # -- writes

    def add(
        self,
        key: str | bytes,
        value: Any,
        ts: float | None = None,
        immutable: bool = False,
        encoding: bytes = ENCODING_DEFAULT,
    ) -> None:
        """Add a sensor sample, or set an immutable (attribute).

        Parameters
        ----------
        key
            Key name (the view's first prefix is prepended).
        value
            Any encodable value.
        ts
            Sample time in seconds since the epoch (default: now); ignored for
            immutables.  Must be finite and non-negative.
        immutable
            Set an attribute instead: allowed only if the key is absent or
            already holds an equal value.
        encoding
            See :func:`telstate.encode_value`.

        Raises
        ------
        ImmutableKeyError
            If an immutable would change, or the key exists with another type.
        InvalidTimestampError
            If `ts` is negative, infinite or NaN.
        EncodeError
            If `value` cannot be encoded.
        """
        if not immutable:  # the hot path: a sample, which never conflicts
            self._backend.add_mutable(self._write_key(key), *make_sample(value, ts, encoding))
            return
        full_key = self._write_key(key)
        encoded = encode_value(value, encoding)  # what make_write makes of an immutable
        stored = self._backend.set_immutable(full_key, encoded)
        if stored is not None:  # the key held a value already
            check_written(Write(KeyType.IMMUTABLE, full_key, encoded), value, stored)

    def set(self, key: str | bytes, value: Any, encoding: bytes = ENCODING_DEFAULT) -> None:
        """Set an immutable: ``add(key, value, immutable=True)``."""
        self.add(key, value, immutable=True, encoding=encoding)

    def set_indexed(
        self, key: str | bytes, sub_key: Any, value: Any, encoding: bytes = ENCODING_DEFAULT
    ) -> None:
        """Set `sub_key` of the indexed key `key` (each sub-key is immutable).

        Parameters
        ----------
        key
            Key name.
        sub_key
            Any hashable, encodable value.
        value
            Any encodable value.
        encoding
            Encoding of `value` (sub-keys are always MessagePack).

        Raises
        ------
        ImmutableKeyError
            If the sub-key holds a different value, or the key is not indexed.
        """
        write = make_indexed_write(self._write_key(key), sub_key, value, encoding)
        stored = self._backend.write(write)
        if stored is not None:  # an immutable or sub-key was there already
            check_written(write, value, stored)

    def pipeline(self) -> Pipeline:
        """A batch of writes sent together when the ``with`` block ends.

        Each write keeps its own semantics (immutables and sub-keys are set
        only if absent, samples are added unless present) and notifications,
        but the whole batch costs one round trip to a Redis server.  Values are
        encoded and checked as they are added, so bad input raises before
        anything is sent.  Example::

            with ts.pipeline() as batch:
                for t, value in samples:
                    batch.add('wind_speed', value, ts=t)
                batch['n_samples'] = len(samples)

        Raises
        ------
        ImmutableKeyError
            On leaving the block, if any immutable would have changed (the
            other writes are applied).
        """
        return Pipeline(self)

    # -- reads

    def _get(self, key: str | bytes, return_encoded: bool = False) -> Any:
        found = self._backend.get(self._full_keys(key))
        if found is None:
            raise KeyError(f"{display_str(key)} not found")
        return decode_found(found, return_encoded)

    def get(self, key: str | bytes, default: Any = None, return_encoded: bool = False) -> Any:
        """Value of `key`: an attribute's value, a sensor's latest value, an indexed key's dict.

        Parameters
        ----------
        key
            Key name, looked up under each prefix of the view in turn.
        default
            Returned if the key does not exist.
        return_encoded
            Return the stored bytes (a dict of bytes for an indexed key) undecoded.
        """
        found = self._backend.get(self._full_keys(key))
        if found is None:
            return default
        return decode_found(found, return_encoded)

    def get_indexed(
        self, key: str | bytes, sub_key: Any, default: Any = None, return_encoded: bool = False
    ) -> Any:
        """Value of `sub_key` in the indexed key `key`, or `default`.

        The first prefix holding `key` decides, even when it lacks the sub-key.

        Raises
        ------
        ImmutableKeyError
            If the key exists but is not indexed.
        """
        found = self._backend.get_indexed(self._full_keys(key), encode_sub_key(sub_key))
        if found is None or found[1] is None:
            return default
        return found[1] if return_encoded else decode_value(found[1])

    def get_range(
        self,
        key: str | bytes,
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
        return_encoded: bool = False,
    ) -> list[tuple[Any, float]]:
        """Samples of a sensor in a time range, as ascending (value, timestamp) pairs.

        Parameters
        ----------
        key
            Sensor name.
        st
            Start time (inclusive); default: `et`, so ``get_range(key)`` is the
            latest sample and ``get_range(key, st=0)`` is all of them.
        et
            End time (exclusive unless `include_end`); default: +inf.
        include_previous
            Also return the last sample before `st`, if any; default: True when
            `st` is None, else False.
        include_end
            Include samples at exactly `et`.
        return_encoded
            Return the stored bytes of each value undecoded.

        Raises
        ------
        KeyError
            If the key does not exist under any prefix.
        ImmutableKeyError
            If the key is not a sensor.
        InvalidTimestampError
            If `st` or `et` is NaN.
        """
        query = resolve_range(st, et, include_previous, include_end)
        return range_result(
            key, self._backend.get_range(self._full_keys(key), query), return_encoded
        )

    def get_range_arrays(
        self,
        key: str | bytes,
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
    ) -> SampleArrays:
        """Samples of a sensor in a time range, as numpy arrays ``(values, timestamps)``.

        The range is :meth:`get_range`'s, with the same bounds and defaults.
        `timestamps` is float64; `values` is a numeric array when every sample is
        a number (float64, int64 or uint64, bool, complex128) or numpy scalar of
        one kind, a fixed-width ``str_`` / ``bytes_`` array for strings and bytes,
        else an object array.  Fixed-size and string samples are converted in
        bulk, without a Python object per sample.

        Returns
        -------
        SampleArrays
            A named tuple ``(values, timestamps)``.

        Raises
        ------
        KeyError, ImmutableKeyError, InvalidTimestampError
            As for :meth:`get_range`.
        """
        query = resolve_range(st, et, include_previous, include_end)
        return range_arrays(key, self._backend.get_range_arrays(self._full_keys(key), query))

    def get_ranges(
        self,
        keys: Iterable[str | bytes],
        st: float | None = None,
        et: float | None = None,
        include_previous: bool | None = None,
        include_end: bool = False,
        arrays: bool = False,
    ) -> dict[str | bytes, Any]:
        """:meth:`get_range` (or, with `arrays`, :meth:`get_range_arrays`) of many sensors.

        One round trip to a Redis server for all of them (one per node of a
        cluster), e.g. to read every sensor of a live telescope state.

        Returns
        -------
        dict
            The samples of each sensor found, by the name it was asked by; keys
            that do not exist are left out.

        Raises
        ------
        ImmutableKeyError
            If one of the keys is not a sensor (and the range reads samples).
        InvalidTimestampError
            If `st` or `et` is NaN.
        """
        names = list(keys)
        query = resolve_range(st, et, include_previous, include_end)
        candidates = [self._full_keys(key) for key in names]
        if arrays:
            return ranges_result(names, self._backend.get_ranges_arrays(candidates, query))
        return ranges_result(names, self._backend.get_ranges(candidates, query))

    # -- waits

    def wait_key(
        self,
        key: str | bytes,
        condition: KeyCondition | None = None,
        timeout: float | None = None,
        cancel_future: Any = None,
    ) -> None:
        """Block until `key` exists and, if given, ``condition(value, ts)`` holds.

        Parameters
        ----------
        key
            Key name (any prefix of the view counts).
        condition
            Called with the value and its timestamp (None for non-sensors; an
            indexed key's value is its dict) on the current value and then on
            each update; the wait ends when it returns true.
        timeout
            Seconds to wait before raising TimeoutError (default: forever).
        cancel_future
            A future (e.g. :class:`concurrent.futures.Future`); the wait raises
            CancelledError once it is done.  The key is looked at first, so a
            wait whose condition already holds returns even if it is done.

        Raises
        ------
        TimeoutError
            If the timeout expires.
        CancelledError
            If `cancel_future` is done.
        """
        plan = plans.wait_key(self._full_keys(key), condition)
        Driver(self._backend, plan, describe(key), timeout, cancel_future).run()

    def wait_indexed(
        self,
        key: str | bytes,
        sub_key: Any,
        condition: IndexedCondition | None = None,
        timeout: float | None = None,
        cancel_future: Any = None,
    ) -> None:
        """Block until `sub_key` of `key` exists and, if given, ``condition(value)`` holds.

        Parameters are as for :meth:`wait_key`.

        Raises
        ------
        TimeoutError, CancelledError
            As for :meth:`wait_key`.
        ImmutableKeyError
            If the key exists (or is created while waiting) and is not indexed.
        """
        what = describe(key, sub_key, indexed=True)
        plan = plans.wait_indexed(self._full_keys(key), encode_sub_key(sub_key), condition, what)
        Driver(self._backend, plan, what, timeout, cancel_future).run()

    def watch(self, key: str | bytes, initial: bool = True) -> Iterator[tuple[Any, Any]]:
        """Every update of `key`, as it happens: ``for value, ts in ts.watch(key)``.

        Yields ``(value, timestamp)`` for each sensor sample, ``(value, None)``
        for an immutable (and then stops: it cannot change), and
        ``({sub_key: value}, None)`` for each new sub-key of an indexed key.
        With `initial`, the key's current state comes first (a sensor's latest
        sample, an immutable's value, an indexed key's whole dict).  Only the
        view's first prefix is watched.  Updates missed while a connection was
        down are recovered: a sensor's samples since the last one seen, an
        indexed key's new sub-keys, an immutable that appeared.  Break out of
        the loop (or close the iterator) to stop watching.
        """
        driver = Driver(self._backend, plans.watch(self._write_key(key), initial), describe(key))
        try:
            while True:
                done, item = driver.step()
                if done:
                    return
                yield item
        finally:
            driver.close()


class Pipeline(PipelineBase):
    """Writes collected for one round trip (see :meth:`telstate.TelescopeState.pipeline`)."""

    def execute(self) -> None:
        """Send the queued writes now (the ``with`` block does this on exit)."""
        writes, values = self._take()
        if writes:
            check_batch(writes, values, self._ts._backend.write_batch(writes))

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.execute()


def _redis_backend(endpoint: str | Endpoint, db: int) -> Backend:
    """Backend for a Redis server given as a URL, ``host[:port]`` or an Endpoint."""
    # Imported here: redis-py and the transport (~50 ms) are for Redis users only.
    from .backends.redis import RedisBackend

    if isinstance(endpoint, str) and "://" in endpoint:
        return RedisBackend.from_url(endpoint, db=db)
    if "@" in (endpoint if isinstance(endpoint, str) else str(endpoint.host)):
        # "user:password@host": no host has an @, and the error must not repeat a password
        raise ValueError(
            "a Redis host cannot contain '@': give credentials in a URL, "
            "redis://user:password@host:port"
        )
    if not isinstance(endpoint, Endpoint):
        endpoint = endpoint_parser(default_port=None)(endpoint)
    port = None if endpoint.port is None else int(endpoint.port)
    return RedisBackend.from_address(str(endpoint.host), port, db)
