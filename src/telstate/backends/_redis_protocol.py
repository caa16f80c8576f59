"""What telstate says to a Redis server, and how it reads the answers (no I/O).

Shared by the sync and asyncio Redis backends.  Each backend operation is a *plan*
(at the end of this module): a generator that yields the :class:`Batch` of commands
to send in one round trip and receives their replies, so that the two backends
differ only in how they wait (the transport, :mod:`telstate._redis`, adds the
retries, failover and durability rules to every batch).

Key layout (identical to katsdptelstate 1.0)::

    immutable  STRING  key -> encoded value
    sensor     ZSET    key -> members pack(ts) + encoded value, every score 0
    indexed    HASH    key -> field encoded sub-key -> encoded value

Every write is a Lua script, so check-and-set and its notification happen in
one atomic step on the server: concurrent writers on different machines cannot
both "win" an immutable, and no waiter misses a write.  Writes are idempotent
(SETNX, ZADD of an existing member, HSETNX), so a write retried after a lost
reply changes nothing twice.  Reads through a view pass all candidate keys to
one script (or one MULTI/EXEC), so they cost one round trip however many
prefixes the view has.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .._arrays import SampleArrays, batch_arrays, batches_arrays, strided_numbers
from .._errors import ImmutableKeyError, TelstateError
from .._keys import KeyType, wrong_type
from .._ranges import RangeQuery, pack_timestamp, split_member
from .._redis.cluster import Each, key_slot, slot_groups
from .._redis.resp import BULK, RawArray
from .._redis.rules import is_access_refusal
from .._redis.session import Command, Script, Targeted, Transaction
from .._reply import (
    Regular,
    members_table,
    parse_members_replies,
    parse_members_reply,
    tables_times,
)
from .._samples import EMPTY_BATCH, SampleBatch
from .._updates import CHANNEL_PREFIX, KeyUpdate, Recheck, decode_update
from ..rdb._crc64 import crc64
from .base import ALL_SAMPLES, Found, KeyStats, Snapshot, Write

if TYPE_CHECKING:
    from .._redis.session import Scripts
    from ..rdb._reader import RdbIndex

__all__ = [
    "SCRIPTS",
    "IMMUTABLES_KEPT",
    "QuickCalls",
    "TYPE_NAMES",
    "is_wrongtype",
    "parse_found",
    "parse_get_indexed",
    "parse_range",
    "range_commands",
]

TYPE_NAMES: dict[bytes, KeyType | None] = {
    b"none": None,
    b"string": KeyType.IMMUTABLE,
    b"zset": KeyType.MUTABLE,
    b"hash": KeyType.INDEXED,
}

_WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


# Write scripts first make sure the user may also announce the write: a refused
# PUBLISH after the write would leave it applied but unannounced (Redis 7's ACL users
# are created without channel permissions).  Redis < 7 has no acl_check_cmd, and no
# channel permissions to miss.
_MAY_PUBLISH = """
for _, key in ipairs(KEYS) do
    if redis.acl_check_cmd and not redis.acl_check_cmd('PUBLISH', 'update/' .. key, '') then
        return redis.error_reply('NOPERM this user may not publish the updates of ' .. key)
    end
end
"""

# Each script: KEYS are the key(s), ARGV the arguments; comments say what it returns.
SCRIPTS: dict[str, str] = {
    # -> false, or {index of the first existing key, type code, value}
    "get": f"""
for i, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'string' then
        return {{i - 1, 1, redis.call('GET', key)}}
    elseif kind == 'zset' then
        return {{i - 1, 2, redis.call('ZRANGE', key, -1, -1)[1]}}
    elseif kind == 'hash' then
        return {{i - 1, 3, redis.call('HGETALL', key)}}
    elseif kind ~= 'none' then
        return redis.error_reply('{_WRONGTYPE}')
    end
end
return false
""",
    # -> false, or {index of the first existing key, value or false}
    "get_indexed": f"""
for i, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'hash' then
        return {{i - 1, redis.call('HGET', key, ARGV[1])}}
    elseif kind ~= 'none' then
        return redis.error_reply('{_WRONGTYPE}')
    end
end
return false
""",
    # -> false if stored, else the value already there
    "set_immutable": _MAY_PUBLISH
    + """
if redis.call('SETNX', KEYS[1], ARGV[1]) == 1 then
    redis.call('PUBLISH', 'update/' .. KEYS[1], ARGV[1])
    return false
end
return redis.call('GET', KEYS[1])
""",
    # -> 1 if added, 0 if the member was already there
    "add_mutable": _MAY_PUBLISH
    + """
local added = redis.call('ZADD', KEYS[1], 0, ARGV[1])
if added == 1 then
    redis.call('PUBLISH', 'update/' .. KEYS[1], ARGV[1])
end
return added
""",
    # -> number of members added; each added member is published
    "add_mutable_many": _MAY_PUBLISH
    + """
local added = 0
for i = 1, #ARGV do
    if redis.call('ZADD', KEYS[1], 0, ARGV[i]) == 1 then
        redis.call('PUBLISH', 'update/' .. KEYS[1], ARGV[i])
        added = added + 1
    end
end
return added
""",
    # KEYS[i] gets ARGV[i] -> for each, false if stored, else the value there (or an error)
    "set_immutable_many": _MAY_PUBLISH
    + """
local result = {}
for i, key in ipairs(KEYS) do
    if redis.call('SETNX', key, ARGV[i]) == 1 then
        redis.call('PUBLISH', 'update/' .. key, ARGV[i])
        result[i] = false
    else
        result[i] = redis.pcall('GET', key)
    end
end
return result
""",
    # ARGV = sub-key, value, sub-key, value... -> for each pair, false or the value there
    "set_indexed_many": _MAY_PUBLISH
    + """
local result = {}
for i = 1, #ARGV, 2 do
    if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
        redis.call('PUBLISH', 'update/' .. KEYS[1],
                   '\\3' .. string.len(ARGV[i]) .. '\\n' .. ARGV[i] .. ARGV[i + 1])
        result[#result + 1] = false
    else
        result[#result + 1] = redis.call('HGET', KEYS[1], ARGV[i])
    end
end
return result
""",
    # -> false if stored, else the value already there
    "set_indexed": _MAY_PUBLISH
    + """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
    redis.call('PUBLISH', 'update/' .. KEYS[1],
               '\\3' .. string.len(ARGV[1]) .. '\\n' .. ARGV[1] .. ARGV[2])
    return false
end
return redis.call('HGET', KEYS[1], ARGV[1])
""",
}


#: Most samples or sub-keys sent in one script call: bounds how long the server is busy.
BATCH_CHUNK = 2000
#: Keys visited per SCAN call: one round trip for a typical telescope state.
SCAN_COUNT = 10_000
#: Keys, and payload bytes, per pipeline of RESTOREs when loading a file.
RESTORE_CHUNK_KEYS = 256
RESTORE_CHUNK_BYTES = 4 << 20


def member(timestamp: float, value: bytes) -> bytes:
    """Sorted-set member of a sensor sample."""
    return pack_timestamp(timestamp) + value


def wrong_type_for(key: bytes) -> ImmutableKeyError:
    """The error for a WRONGTYPE reply about `key` (its actual type unknown)."""
    return ImmutableKeyError(f"{key!r} exists with another type (Redis answered WRONGTYPE)")


def is_wrongtype(error: BaseException) -> bool:
    """Whether a Redis error is a WRONGTYPE error (also when raised inside a script)."""
    return "WRONGTYPE" in str(error)


# The ``get`` script's type codes (KeyType's values): a lookup is cheaper than KeyType(code)
_FOUND_TYPES = {key_type.value: key_type for key_type in KeyType}


def parse_found(reply: Any) -> Found | None:
    """Reply of the ``get`` script as a :data:`Found`."""
    if not reply:
        return None
    _, code, payload = reply  # the index of the key found: a view read knows it already
    key_type = _FOUND_TYPES[code]
    if key_type is KeyType.IMMUTABLE:
        return key_type, payload, None
    if key_type is KeyType.MUTABLE:
        value, ts = split_member(payload)
        return key_type, value, ts
    fields = iter(payload)
    return key_type, dict(zip(fields, fields, strict=True)), None


def parse_get_indexed(reply: Any) -> tuple[int, bytes | None] | None:
    """Reply of the ``get_indexed`` script."""
    if not reply:
        return None
    return int(reply[0]), reply[1] if len(reply) > 1 else None


def range_commands(keys: Sequence[bytes], query: RangeQuery) -> list[tuple[Any, ...]]:
    """Commands answering `query` for each candidate key, for one MULTI/EXEC.

    A transaction rather than a script: a script would copy every member into Lua
    and back, which costs the server more than the client saves.
    """
    start, stop = query.lex_bounds()
    commands: list[tuple[Any, ...]] = []
    for key in keys:
        commands.append(("TYPE", key))
        if query.previous:
            commands.append(("ZREVRANGEBYLEX", key, start, b"-", "LIMIT", 0, 1))
        if query.scan:
            commands.append(("ZRANGEBYLEX", key, start, stop))
    return commands


def range_hit(
    keys: Sequence[bytes], query: RangeQuery, replies: list[Any]
) -> tuple[int, SampleBatch | Exception] | None:
    """From the replies of :func:`range_commands`: (index, samples) of the first key that
    exists (the error if it is not a sensor), or None."""
    per_key = 1 + query.previous + query.scan
    for i, key in enumerate(keys):
        kind = replies[i * per_key]
        kind = kind.encode() if isinstance(kind, str) else kind
        if kind == b"none":
            continue
        key_type = TYPE_NAMES.get(kind)  # None here: a Redis type telstate does not use
        if key_type is not KeyType.MUTABLE:
            if per_key > 1:
                return i, wrong_type(key, KeyType.MUTABLE, key_type)
            return i, EMPTY_BATCH
        parts = replies[i * per_key + 1 : (i + 1) * per_key]
        if len(parts) == 1 and type(parts[0]) is RawArray:  # as the server sent it
            return i, parse_members_reply(*parts[0])
        if len(parts) == 1 and type(parts[0]) is SampleBatch:  # parsed by _parse_raw
            return i, parts[0]
        members: list[bytes] = []
        for reply in parts:
            members.extend(answer(reply, key))
        return i, SampleBatch.from_members(members)
    return None


def parse_range(keys: Sequence[bytes], query: RangeQuery, replies: list[Any]) -> SampleBatch | None:
    """The samples of the first key that exists, from :func:`range_commands`' replies."""
    hit = range_hit(keys, query, replies)
    if hit is None:
        return None
    if isinstance(hit[1], Exception):
        raise hit[1]
    return hit[1]


def channel_key(channel: bytes) -> bytes:
    """The key that a notification channel is about."""
    return channel[len(CHANNEL_PREFIX) :]


def needs_type(payload: bytes) -> bool:
    """Whether a notification payload is ambiguous without knowing the key's type.

    Payloads starting with a type byte (1, 2, 3) say it themselves; 0xff starts
    an immutable's MessagePack value (a sensor member would need a NaN timestamp).
    Anything else is a sensor member or a legacy pickled immutable.
    """
    return payload[:1] not in (b"\x01", b"\x02", b"\x03", b"\xff")


def parse_message(key: bytes, payload: bytes, key_type: KeyType | None) -> KeyUpdate:
    """A notification as a :class:`KeyUpdate` (`key_type` used only if ambiguous)."""
    if payload[:1] == b"\xff":
        key_type = KeyType.IMMUTABLE
    return decode_update(key, payload, key_type)


# A script call of a batch: (script name, KEYS, ARGV, indices of the writes it carries)
BatchCall = tuple[str, list[bytes], list[bytes], list[int]]


def batch_calls(writes: Sequence[Write], cluster: bool = False) -> list[BatchCall]:
    """Script calls carrying a batch's writes, in order.

    Neighbouring writes of the same kind share a call (immutables of any keys,
    samples or sub-keys of one key; on a cluster, immutables of one slot), so a
    sensor's run of samples costs one call per :data:`BATCH_CHUNK`; the order of the
    writes is kept exactly, so "write the data, then set the flag that says it is
    there" stays safe (see :func:`write_rounds` for a cluster).
    """
    calls: list[BatchCall] = []
    script = ""
    for i, write in enumerate(writes):
        if write.key_type is KeyType.IMMUTABLE:
            name, keys, args = "set_immutable_many", [write.key], [write.value]
        elif write.key_type is KeyType.MUTABLE:
            assert write.timestamp is not None
            name, keys, args = (
                "add_mutable_many",
                [write.key],
                [member(write.timestamp, write.value)],
            )
        else:
            assert write.sub_key is not None
            name, keys, args = "set_indexed_many", [write.key], [write.sub_key, write.value]
        if (
            calls
            and name == script
            and len(calls[-1][3]) < BATCH_CHUNK
            and (
                calls[-1][1][0] == write.key
                or (
                    name == "set_immutable_many"
                    and (not cluster or key_slot(calls[-1][1][0]) == key_slot(write.key))
                )
            )
        ):
            last = calls[-1]
            if name == "set_immutable_many":
                last[1].extend(keys)
            last[2].extend(args)
            last[3].append(i)
        else:
            calls.append((name, keys, args, [i]))
            script = name
    return calls


def parse_batch(
    writes: Sequence[Write], calls: list[BatchCall], replies: list[Any]
) -> list[bytes | ImmutableKeyError | None]:
    """Per-write results (as :meth:`Backend.write_batch` returns them) from the replies."""
    results: list[bytes | ImmutableKeyError | None] = [None] * len(writes)
    for (script, _, _, indices), reply in zip(calls, replies, strict=True):
        if isinstance(reply, BaseException):
            if not is_wrongtype(reply):
                answer(reply)
            for i in indices:
                results[i] = wrong_type_for(writes[i].key)
        elif script != "add_mutable_many":
            for i, item in zip(indices, reply, strict=True):
                if isinstance(item, BaseException):
                    if not is_wrongtype(item):
                        answer(item)
                    results[i] = wrong_type_for(writes[i].key)
                else:
                    results[i] = item
    return results


def restore_payload(index: RdbIndex, key: bytes) -> bytes:
    """A RESTORE payload for `key`: the file's own value bytes in DUMP's envelope.

    DUMP format: type byte, value, RDB version (2 bytes little-endian), CRC-64 of
    all that (8 bytes little-endian).
    """
    entry = index.entries[key]
    version = index.version.to_bytes(2, "little")
    body = bytes([entry.rdb_type]) + bytes(index.raw_value(key)) + version
    return body + crc64(body).to_bytes(8, "little")


def stats_commands(keys: Sequence[bytes], kinds: Sequence[bytes]) -> list[tuple[Any, ...]]:
    """Commands describing each key, given their TYPE replies: 3 per key."""
    commands: list[tuple[Any, ...]] = []
    for key, kind in zip(keys, kinds, strict=True):
        if kind == b"zset":
            commands += [("ZCARD", key), ("ZRANGE", key, 0, 0), ("ZRANGE", key, -1, -1)]
        elif kind == b"hash":
            commands += [("HLEN", key), ("PING",), ("PING",)]
        elif kind == b"string":
            commands += [("STRLEN", key), ("PING",), ("PING",)]
        else:
            commands += [("PING",), ("PING",), ("PING",)]
    return commands


def parse_stats(
    kinds: Sequence[bytes], replies: list[Any], usage: list[Any]
) -> list[KeyStats | None]:
    """KeyStats from TYPE replies, the replies of :func:`stats_commands` and MEMORY USAGE.

    A server without MEMORY USAGE (e.g. fakeredis) gives sizes of strings only.
    """
    result: list[KeyStats | None] = []
    for i, kind in enumerate(kinds):
        key_type = TYPE_NAMES.get(kind)
        if key_type is None:
            result.append(None)
            continue
        count, first, last = replies[3 * i : 3 * i + 3]
        size = usage[i]
        if isinstance(size, Exception) or size is None:
            size = count if key_type is KeyType.IMMUTABLE else 0
        if key_type is KeyType.MUTABLE:
            t0 = split_member(first[0])[1] if first else None
            t1 = split_member(last[0])[1] if last else None
            result.append(KeyStats(key_type, int(count), int(size), t0, t1))
        elif key_type is KeyType.INDEXED:
            result.append(KeyStats(key_type, int(count), int(size)))
        else:
            result.append(KeyStats(key_type, 1, int(size)))
    return result


def restore_batches(index: RdbIndex, keys: Sequence[bytes]) -> Iterator[list[tuple[bytes, bytes]]]:
    """(key, RESTORE payload) pairs in batches of a few MB or a few hundred keys."""
    batch: list[tuple[bytes, bytes]] = []
    size = 0
    for key in keys:
        payload = restore_payload(index, key)
        batch.append((key, payload))
        size += len(payload)
        if len(batch) >= RESTORE_CHUNK_KEYS or size >= RESTORE_CHUNK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def restored(reply: Any) -> bool:
    """Whether a RESTORE reply says OK (raw, or as redis-py's callbacks turn it)."""
    return reply is True or reply == b"OK"


# ------------------------------------------------------------------------------ plans

_T = TypeVar("_T")


class Batch(NamedTuple):  # a tuple: made on every call, it must be cheap
    """Commands sent in one round trip; `writes` if they change data (see ``min_replicas``)."""

    commands: Sequence[Command]
    writes: bool = False


#: A backend operation: yields batches, receives their replies, returns the result.
Plan = Generator[Batch, list[Any], _T]


def answer(reply: Any, key: bytes | None = None) -> Any:
    """`reply`, or the error an error reply stands for."""
    if isinstance(reply, BaseException):
        if is_wrongtype(reply):
            if key is None:
                raise ImmutableKeyError(f"a key exists with another type ({reply})")
            raise wrong_type_for(key)
        if is_access_refusal(reply):
            raise TelstateError(f"the Redis server refused access: {reply}")
        raise TelstateError(f"the Redis server answered: {reply}")
    return reply


# A read through a view on a cluster: the view's candidate keys live in different slots,
# so each candidate is read by a command of its own (all sent at once, each to its
# node) and the highest-priority candidate found wins.  That answer must be one a
# single server could have given.  Keys are only ever created (except by delete and
# clear), so a key seen absent was absent at every earlier moment.  The commands go
# lowest priority first, and a node runs its commands in order: candidates on the
# winner's slot (so its node) were seen absent after the winner was read.  Those in
# other slots are checked again with EXISTS once the winner is known; if all are
# still absent, the answer is what a single server would have said at the moment the
# winner was read, and if one has appeared meanwhile the view is read again (this
# ends: keys only appear).


def _view_read(
    keys: Sequence[bytes], command_for: Any, hit_of: Any
) -> Plan[tuple[int, Any] | None]:
    """On a cluster: the first of `keys` that exists and what reading it gave.

    `command_for(key)` reads one key; `hit_of(key, reply)` is None if the key is absent,
    else the result (an exception, raised only if this key wins).
    """
    order = list(reversed(range(len(keys))))
    while True:
        replies = yield Batch([command_for(keys[i]) for i in order])
        by_index = dict(zip(order, replies, strict=True))
        for winner, key in enumerate(keys):
            result = hit_of(key, by_index[winner])
            if result is not None:
                break
        else:
            return None
        slot = key_slot(keys[winner])
        earlier = [keys[i] for i in range(winner) if key_slot(keys[i]) != slot]
        if earlier:
            rechecks = slot_groups(earlier)
            counts = yield Batch([("EXISTS", *(earlier[i] for i in group)) for group in rechecks])
            if any(answer(count) for count in counts):
                continue  # a candidate of higher priority appeared: read the view again
        if isinstance(result, BaseException):
            raise result
        return winner, result


def _error_or(reply: Any, key: bytes, parse: Any) -> Any:
    """`parse(reply)`, or the error an error reply stands for (not raised)."""
    try:
        return parse(answer(reply, key))
    except TelstateError as exc:
        return exc


class QuickCalls:
    """The hot operations of one key as ready-made payloads, for a driver's quick lane.

    ``get``, ``add_mutable`` and ``set_immutable`` of one key are, on one server, one
    script call whose plan sends it and finishes with the reply; a driver sends
    these bytes (exactly what the plan sends first: ``tests/test_redis_plans.py``
    checks it) without the plan and finishes the same way when the reply is clean
    (no error), and runs the plan otherwise.  Made from the script prefixes of
    :meth:`Scripts.prefix`, one ``%`` per call.

    A key that held an immutable is read with a plain ``GET`` instead
    (:meth:`get_immutable`), which the server answers faster than a script: its
    answer is what the script's would be (the value, or nil if the key is gone);
    a key of another type since answers WRONGTYPE, and the plan reads it.

    Parameters
    ----------
    scripts
        The transport's scripts (:data:`SCRIPTS`).
    """

    __slots__ = ("_add", "_get", "_get_immutable", "_set")

    def __init__(self, scripts: Scripts) -> None:
        self._get = scripts.prefix("get", 1, 0) + BULK
        self._get_immutable = b"*2\r\n" + BULK % (3, b"GET") + BULK
        self._add = scripts.prefix("add_mutable", 1, 1) + BULK + BULK
        self._set = scripts.prefix("set_immutable", 1, 1) + BULK + BULK

    def get(self, key: bytes) -> bytes:
        """:func:`get_plan` of ``[key]``; finish with :func:`parse_found`."""
        return self._get % (len(key), key)

    def get_immutable(self, key: bytes) -> bytes:
        """``GET key``, for a key that held an immutable; finish with :func:`immutable_found`."""
        return self._get_immutable % (len(key), key)

    def read(self, key: bytes, plain: bool) -> bytes:
        """:meth:`get_immutable` if `plain` (the key held an immutable), else :meth:`get`;
        finish with :func:`quick_found`."""
        return (self._get_immutable if plain else self._get) % (len(key), key)

    def add_mutable(self, key: bytes, value: bytes, timestamp: float) -> bytes:
        """:func:`add_mutable_plan`; nothing to finish."""
        data = member(timestamp, value)
        return self._add % (len(key), key, len(data), data)

    def set_immutable(self, key: bytes, value: bytes) -> bytes:
        """:func:`set_immutable_plan`; its result is the reply itself."""
        return self._set % (len(key), key, len(value), value)


def immutable_found(reply: bytes | None) -> Found | None:
    """What :func:`get_plan` finds, from the reply of :meth:`QuickCalls.get_immutable`."""
    return None if reply is None else (KeyType.IMMUTABLE, reply, None)


#: Most keys a backend remembers as immutables (read by ``GET``: see :class:`QuickCalls`).
IMMUTABLES_KEPT = 1 << 16


def quick_found(reply: Any, key: bytes, plain: bool, immutables: set[bytes]) -> Found | None:
    """What :func:`get_plan` finds, from the clean reply to ``QuickCalls.read(key, plain)``.

    `immutables` holds the keys a backend last saw holding an immutable, which it reads
    by ``GET`` (`plain`): a key the script finds immutable joins them (up to
    :data:`IMMUTABLES_KEPT`, then they start again).  A key whose ``GET`` did not answer
    cleanly (WRONGTYPE: it is something else now) is the backend's to discard.
    """
    if plain:
        return None if reply is None else (KeyType.IMMUTABLE, reply, None)
    found = parse_found(reply)
    if found is not None and found[0] is KeyType.IMMUTABLE:
        if len(immutables) >= IMMUTABLES_KEPT:
            immutables.clear()
        immutables.add(key)
    return found


def get_plan(keys: Sequence[bytes], cluster: bool = False) -> Plan[Found | None]:
    if len(keys) == 1 or not cluster:  # the hot path: one script, one round trip
        (reply,) = yield Batch([Script("get", keys)])
        return parse_found(answer(reply, keys[0]))
    best = yield from _view_read(
        keys,
        lambda key: Script("get", [key]),
        lambda key, reply: _error_or(reply, key, parse_found),
    )
    return None if best is None else best[1]


def _bulk(keys: Sequence[bytes], query: RangeQuery) -> bool:
    """Whether a range read is a plain one (a TYPE and a ZRANGEBYLEX of one key), whose
    members a connection may hand over raw."""
    return len(keys) == 1 and query.scan and not query.previous


def _parse_raw(answers: list[Any]) -> list[Any]:
    """`answers` of range reads, their raw members arrays parsed into batches in one go."""
    at = [
        j
        for j, reply in enumerate(answers)
        if type(reply) is list and len(reply) == 2 and type(reply[1]) is RawArray
    ]
    if len(at) > 1:
        for j, batch in zip(at, parse_members_replies([answers[j][1] for j in at]), strict=True):
            answers[j] = [answers[j][0], batch]
    return answers


def get_ranges_plan(
    candidates: Sequence[Sequence[bytes]], query: RangeQuery, cluster: bool = False
) -> Plan[list[SampleBatch | None]]:
    """Many sensors' ranges in one round trip: a MULTI/EXEC per sensor, all sent at once.

    On a cluster each transaction goes to its key's node (one candidate per sensor);
    sensors read through views of several candidates there are read one by one, as
    :func:`get_range_plan` reads them.
    """
    simple = [i for i, keys in enumerate(candidates) if len(keys) == 1 or not cluster]
    results: list[SampleBatch | None] = [None] * len(candidates)
    if simple:
        replies = yield _range_reads([candidates[i] for i in simple], query)
        answers = _parse_raw([answer(reply) for reply in replies])
        for i, reply in zip(simple, answers, strict=True):
            results[i] = parse_range(candidates[i], query, reply)
    for i, keys in enumerate(candidates):
        if len(keys) > 1 and cluster:
            results[i] = yield from get_range_plan(keys, query, cluster)
    return results


def _range_reads(sensors: Sequence[Sequence[bytes]], query: RangeQuery) -> Batch:
    """One transaction per sensor (its candidate keys), all sent in one round trip."""
    return Batch([Transaction(range_commands(keys, query), _bulk(keys, query)) for keys in sensors])


def get_ranges_arrays_plan(
    candidates: Sequence[Sequence[bytes]], query: RangeQuery, cluster: bool = False
) -> Plan[list[SampleArrays | None]]:
    """:func:`get_ranges_plan`'s samples as arrays: the raw reads of numbers of one
    fixed-size encoding converted straight from the replies, those of one member
    length and encoding together (:func:`_raw_arrays_many`); the others from batches."""
    simple = [i for i, keys in enumerate(candidates) if len(keys) == 1 or not cluster]
    results: list[SampleArrays | None] = [None] * len(candidates)
    if simple:
        replies = yield _range_reads([candidates[i] for i in simple], query)
        answers = [answer(reply) for reply in replies]
        direct = _raw_arrays_many(answers)
        rest = [j for j, arrays in enumerate(direct) if arrays is None]
        parsed = _parse_raw([answers[j] for j in rest])
        batches = [
            parse_range(candidates[simple[j]], query, reply)
            for j, reply in zip(rest, parsed, strict=True)
        ]
        for j, arrays in zip(rest, ranges_arrays(batches), strict=True):
            direct[j] = arrays
        for i, arrays in zip(simple, direct, strict=True):
            results[i] = arrays
    for i, keys in enumerate(candidates):
        if len(keys) > 1 and cluster:
            results[i] = yield from get_range_arrays_plan(keys, query, cluster)
    return results


def _raw_arrays_many(answers: list[Any]) -> list[SampleArrays | None]:
    """:func:`_raw_arrays` of each answer; the raw reads of one member layout and value
    encoding are converted together (one table, one conversion, a slice each)."""
    results: list[SampleArrays | None] = [None] * len(answers)
    groups: dict[tuple[int, int, int], list[int]] = {}
    for j, reply in enumerate(answers):
        raw = _raw_read(reply)
        if raw is not None:
            regular = raw.regular
            assert regular is not None
            kind = raw.data[regular.first + regular.head + 9 : regular.first + regular.head + 10]
            groups.setdefault((regular.head, regular.stride, kind[0] if kind else -1), []).append(j)
    for members in groups.values():
        if len(members) > 1:
            tables = [members_table(*_checked(answers[j][1])) for j in members]
            values = strided_numbers([table.values for table in tables], tables[0].size)
            if values is not None:
                times = tables_times(tables)
                row = 0
                for j, table in zip(members, tables, strict=True):
                    count = table.rows.records
                    results[j] = SampleArrays(values[row : row + count], times[row : row + count])
                    row += count
                continue
        for j in members:
            results[j] = _raw_arrays(answers[j])
    return results


def ranges_arrays(batches: list[SampleBatch | None]) -> list[SampleArrays | None]:
    """The arrays of each batch found by :func:`get_ranges_plan`, converted together where
    they allow (``telstate._arrays.batches_arrays``)."""
    converted = iter(batches_arrays([batch for batch in batches if batch is not None]))
    return [None if batch is None else next(converted) for batch in batches]


def key_type_plan(keys: Sequence[bytes], cluster: bool = False) -> Plan[KeyType | None]:
    if len(keys) == 1 or not cluster:
        kinds = yield Batch([("TYPE", key) for key in keys])
        for kind in kinds:
            if answer(kind) != b"none":
                return TYPE_NAMES.get(kind)
        return None
    best = yield from _view_read(
        keys,
        lambda key: ("TYPE", key),
        lambda key, reply: None if answer(reply) == b"none" else (TYPE_NAMES.get(reply),),
    )
    return None if best is None else best[1][0]


def exists_plan(keys: Sequence[bytes], cluster: bool = False) -> Plan[bool]:
    """Whether any of `keys` exists (no recheck needed: each was seen at some moment,
    and if all were absent, all were at the earliest of those moments)."""
    groups = slot_groups(keys) if cluster and len(keys) > 1 else [list(range(len(keys)))]
    counts = yield Batch([("EXISTS", *(keys[i] for i in group)) for group in groups])
    return any(answer(count) for count in counts)


def keys_plan(pattern: bytes) -> Plan[list[bytes]]:
    """Every key matching `pattern`: SCAN on every primary (one, on a single server)."""
    found: set[bytes] = set()
    command = ("SCAN", 0, "MATCH", pattern, "COUNT", SCAN_COUNT)
    (replies,) = yield Batch([Each(command)])
    while True:
        cursors = {}
        for node, reply in replies.items():
            cursor, batch = answer(reply)
            found.update(batch)
            if cursor not in (b"0", 0):
                cursors[node] = cursor
        if not cursors:
            return list(found)
        more = yield Batch(
            [
                Targeted(node, ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT))
                for node, cursor in cursors.items()
            ]
        )
        replies = dict(zip(cursors, more, strict=True))


def get_indexed_plan(
    keys: Sequence[bytes], sub_key: bytes, cluster: bool = False
) -> Plan[tuple[int, bytes | None] | None]:
    if len(keys) == 1 or not cluster:
        (reply,) = yield Batch([Script("get_indexed", keys, [sub_key])])
        return parse_get_indexed(answer(reply, keys[0]))
    best = yield from _view_read(
        keys,
        lambda key: Script("get_indexed", [key], [sub_key]),
        lambda key, reply: _error_or(reply, key, parse_get_indexed),
    )
    return None if best is None else (best[0], best[1][1])


def get_range_plan(
    keys: Sequence[bytes], query: RangeQuery, cluster: bool = False
) -> Plan[SampleBatch | None]:
    if len(keys) == 1 or not cluster:
        replies = yield Batch([Transaction(range_commands(keys, query), _bulk(keys, query))])
        return parse_range(keys, query, answer(replies[0]))

    def hit(key: bytes, reply: Any) -> Any:
        found = range_hit([key], query, answer(reply))
        return None if found is None else found[1]

    best = yield from _view_read(keys, lambda key: Transaction(range_commands([key], query)), hit)
    return None if best is None else best[1]


def get_range_arrays_plan(
    keys: Sequence[bytes], query: RangeQuery, cluster: bool = False
) -> Plan[SampleArrays | None]:
    """:func:`get_range_plan`'s samples as arrays: straight from the reply when it came raw
    and holds numbers of one fixed-size encoding (no batch in between), else converted
    from the batch."""
    if len(keys) > 1 and cluster:
        batch = yield from get_range_plan(keys, query, cluster)
    else:
        replies = yield Batch([Transaction(range_commands(keys, query), _bulk(keys, query))])
        reply = answer(replies[0])
        arrays = _raw_arrays(reply)
        if arrays is not None:
            return arrays
        batch = parse_range(keys, query, reply)
    return None if batch is None else batch_arrays(batch)


def _raw_arrays(reply: Any) -> SampleArrays | None:
    """The arrays of a raw read of one sensor (``[b"zset", RawArray]``) of more than a few
    numbers of one fixed-size encoding, or None."""
    raw = _raw_read(reply)
    if raw is None:
        return None
    assert raw.regular is not None
    table = members_table(raw.data, raw.regular)
    values = strided_numbers([table.values], table.size)
    return None if values is None else SampleArrays(values, tables_times([table]))


def _raw_read(reply: Any) -> RawArray | None:
    """The raw members array of a read's `reply` (``[b"zset", RawArray]``) if its reader
    checked its layout and it holds more than a few members."""
    if not (type(reply) is list and len(reply) == 2 and type(reply[1]) is RawArray):
        return None
    regular = reply[1].regular
    if reply[0] != b"zset" or regular is None or regular.members <= _FEW:
        return None
    return reply[1]


def _checked(raw: RawArray) -> tuple[memoryview, Regular]:
    """A raw members array whose layout its reader checked, and that layout."""
    assert raw.regular is not None
    return raw.data, raw.regular


# Up to this many samples, a batch (of lists) is made first, as for get_range.
_FEW = 64


def set_immutable_plan(key: bytes, value: bytes) -> Plan[bytes | None]:
    (reply,) = yield Batch([Script("set_immutable", [key], [value])], writes=True)
    return answer(reply, key)  # type: ignore[no-any-return]


def add_mutable_plan(key: bytes, value: bytes, timestamp: float) -> Plan[None]:
    (reply,) = yield Batch([Script("add_mutable", [key], [member(timestamp, value)])], writes=True)
    answer(reply, key)


def set_indexed_plan(key: bytes, sub_key: bytes, value: bytes) -> Plan[bytes | None]:
    (reply,) = yield Batch([Script("set_indexed", [key], [sub_key, value])], writes=True)
    return answer(reply, key)  # type: ignore[no-any-return]


def write_rounds(calls: list[BatchCall], cluster: bool) -> list[list[BatchCall]]:
    """The calls of a batch in rounds, each round sent once the previous one is applied.

    One server applies a batch in order (one round).  A cluster applies each node's
    part in order but the nodes in parallel, so an immutable or a sub-key (which
    readers may take as a "done" flag) starts a new round when writes to other
    slots come before it: it is never visible before them.  Sensor samples between
    two such writes go to their nodes in parallel.
    """
    if not cluster:
        return [calls]
    rounds: list[list[BatchCall]] = []
    current: list[BatchCall] = []
    slots: set[int] = set()
    for call in calls:
        slot = key_slot(call[1][0])
        if call[0] != "add_mutable_many" and slots - {slot}:
            rounds.append(current)
            current, slots = [], set()
        current.append(call)
        slots.add(slot)
    if current:
        rounds.append(current)
    return rounds


def write_batch_plan(
    writes: Sequence[Write], cluster: bool = False
) -> Plan[list[bytes | ImmutableKeyError | None]]:
    calls = batch_calls(writes, cluster)
    replies: list[Any] = []
    for round_ in write_rounds(calls, cluster):
        replies += yield Batch(
            [Script(script, keys, args) for script, keys, args, _ in round_], writes=True
        )
    return parse_batch(writes, calls, replies)


def stats_plan(keys: Sequence[bytes]) -> Plan[list[KeyStats | None]]:
    first = yield Batch(
        [command for key in keys for command in (("TYPE", key), ("MEMORY", "USAGE", key))]
    )
    kinds, usage = first[0::2], first[1::2]
    for kind in kinds:
        answer(kind)
    replies = yield Batch(stats_commands(keys, kinds))
    for reply in replies:
        answer(reply)
    return parse_stats(kinds, replies, usage)


def snapshot_plan(keys: Sequence[bytes]) -> Plan[list[Snapshot | None]]:
    result: list[Snapshot | None] = []
    for key in keys:
        found = yield from get_plan([key])
        if found is None:
            result.append(None)
        elif found[0] is KeyType.MUTABLE:
            batch = yield from get_range_plan([key], ALL_SAMPLES)
            result.append(None if batch is None else (KeyType.MUTABLE, batch))
        else:
            result.append((found[0], found[1]))
    return result


def dumps_plan(keys: Sequence[bytes]) -> Plan[list[bytes | None]]:
    """DUMP payloads of `keys` (None where absent)."""
    replies = yield Batch([("DUMP", key) for key in keys])
    return [
        reply if isinstance(answer(reply, key), bytes) else None
        for key, reply in zip(keys, replies, strict=True)
    ]


def delete_plan(keys: Sequence[bytes], cluster: bool = False) -> Plan[None]:
    groups = slot_groups(keys) if cluster and len(keys) > 1 else [list(range(len(keys)))]
    replies = yield Batch([("UNLINK", *(keys[i] for i in group)) for group in groups], writes=True)
    for reply in replies:
        answer(reply)


def clear_plan() -> Plan[None]:
    """Remove every key: FLUSHDB on every primary (one, on a single server)."""
    (replies,) = yield Batch([Each(("FLUSHDB", "ASYNC"))], writes=True)
    for reply in replies.values():
        answer(reply)


def restore_plan(batch: Sequence[tuple[bytes, bytes]]) -> Plan[list[bytes]]:
    """RESTORE a batch of (key, payload); returns the keys that must be merged instead.

    A key that exists already (BUSYKEY), or whose encoding the server does not know,
    is merged with ordinary writes by the caller.
    """
    replies = yield Batch([("RESTORE", key, 0, payload) for key, payload in batch], writes=True)
    return [key for (key, _), reply in zip(batch, replies, strict=True) if not restored(reply)]


def parse_update(key: bytes, payload: bytes) -> KeyUpdate | Recheck | None:
    """A notification whose payload says the key's type, as :func:`update_plan` reads it
    (without a plan: a waiter's wake-up); None if the type must be asked for."""
    if needs_type(payload):
        return None
    try:
        return parse_message(key, payload, None)
    except ValueError:
        return Recheck()


def update_plan(
    key: bytes, payload: bytes, types: dict[bytes, KeyType | None]
) -> Plan[KeyUpdate | Recheck]:
    """A notification as a :class:`KeyUpdate` (asking for the key's type if the payload
    does not say it; `types` caches the answers), or Recheck if it cannot be read."""
    update = parse_update(key, payload)
    if update is not None:
        return update
    if key not in types:
        types[key] = yield from key_type_plan([key])
    key_type = types[key]
    if key_type is None:
        return Recheck()  # deleted since: nothing to learn from this update
    try:
        return parse_message(key, payload, key_type)
    except ValueError:
        return Recheck()


def parse_info(text: bytes) -> dict[str, str]:
    """The fields of an INFO reply (``name:value`` lines; sections and blanks skipped)."""
    fields = {}
    for line in text.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if colon and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    return fields


def server_info_plan(db: int) -> Plan[dict[str, str]]:
    """What the server says of itself: product, version, memory, keys in the database."""
    servers, memories, sizes = yield Batch(
        [Each(("INFO", "server")), Each(("INFO", "memory")), Each(("DBSIZE",))]
    )
    fields = parse_info(answer(next(iter(servers.values()))))
    valkey = "valkey_version" in fields
    used = [parse_info(answer(reply)) for reply in memories.values()]
    info = {
        "product": "Valkey" if valkey else "Redis",
        "version": fields.get("valkey_version" if valkey else "redis_version", "?"),
        "used_memory": used[0].get("used_memory_human", "?"),
        "db": str(db),
        "keys": str(sum(int(answer(size)) for size in sizes.values())),
    }
    if len(servers) > 1:  # a cluster: memory of all its primaries
        total = sum(int(fields.get("used_memory", 0)) for fields in used)
        info["used_memory"] = f"{total / (1 << 20):.2f}M in {len(servers)} primaries"
    return info
