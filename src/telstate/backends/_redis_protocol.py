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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ImmutableKeyError, TelstateError
from .._keys import KeyType, wrong_type
from .._ranges import RangeQuery, pack_timestamp, split_member
from .._redis.rules import is_access_refusal
from .._redis.session import Script
from .._samples import EMPTY_BATCH, SampleBatch
from .._updates import CHANNEL_PREFIX, KeyUpdate, Recheck, decode_update
from .base import ALL_SAMPLES, Found, KeyStats, Snapshot, Write

if TYPE_CHECKING:
    from ..rdb._reader import RdbIndex

__all__ = [
    "SCRIPTS",
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


def parse_found(reply: Any) -> Found | None:
    """Reply of the ``get`` script as a :data:`Found`."""
    if not reply:
        return None
    index, code, payload = reply
    key_type = KeyType(code)
    if key_type is KeyType.IMMUTABLE:
        return index, key_type, payload, None
    if key_type is KeyType.MUTABLE:
        value, ts = split_member(payload)
        return index, key_type, value, ts
    fields = iter(payload)
    return index, key_type, dict(zip(fields, fields, strict=True)), None


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


def parse_range(keys: Sequence[bytes], query: RangeQuery, replies: list[Any]) -> SampleBatch | None:
    """Result of :func:`range_commands`: the samples of the first key that exists."""
    per_key = 1 + query.previous + query.scan
    for i, key in enumerate(keys):
        kind = replies[i * per_key]
        kind = kind.encode() if isinstance(kind, str) else kind
        if kind == b"none":
            continue
        key_type = TYPE_NAMES.get(kind)  # None here: a Redis type telstate does not use
        if key_type is not KeyType.MUTABLE:
            if per_key > 1:
                raise wrong_type(key, KeyType.MUTABLE, key_type)
            return EMPTY_BATCH
        members: list[bytes] = []
        for reply in replies[i * per_key + 1 : (i + 1) * per_key]:
            members.extend(answer(reply, key))
        return SampleBatch.from_members(members)
    return None


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


def batch_calls(writes: Sequence[Write]) -> list[BatchCall]:
    """Script calls carrying a batch's writes, in order.

    Neighbouring writes of the same kind share a call (immutables of any keys,
    samples or sub-keys of one key), so a sensor's run of samples costs one call
    per :data:`BATCH_CHUNK`; the order of the writes is kept exactly, so "write
    the data, then set the flag that says it is there" stays safe.
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
            and (name == "set_immutable_many" or calls[-1][1][0] == write.key)
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
    from ..rdb._crc64 import crc64

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


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent in one round trip; `writes` if they change data (see ``min_replicas``)."""

    commands: Sequence[Sequence[Any] | Script]
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


def get_plan(keys: Sequence[bytes]) -> Plan[Found | None]:
    (reply,) = yield Batch([Script("get", keys)])
    return parse_found(answer(reply, keys[0]))


def key_type_plan(keys: Sequence[bytes]) -> Plan[KeyType | None]:
    kinds = yield Batch([("TYPE", key) for key in keys])
    for kind in kinds:
        if answer(kind) != b"none":
            return TYPE_NAMES.get(kind)
    return None


def exists_plan(keys: Sequence[bytes]) -> Plan[bool]:
    (count,) = yield Batch([("EXISTS", *keys)])
    return bool(answer(count))


def keys_plan(pattern: bytes) -> Plan[list[bytes]]:
    found: set[bytes] = set()
    cursor: Any = b"0"
    while True:
        (reply,) = yield Batch([("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)])
        cursor, batch = answer(reply)
        found.update(batch)
        if cursor in (b"0", 0):
            return list(found)


def get_indexed_plan(
    keys: Sequence[bytes], sub_key: bytes
) -> Plan[tuple[int, bytes | None] | None]:
    (reply,) = yield Batch([Script("get_indexed", keys, [sub_key])])
    return parse_get_indexed(answer(reply, keys[0]))


def get_range_plan(keys: Sequence[bytes], query: RangeQuery) -> Plan[SampleBatch | None]:
    replies = yield Batch([("MULTI",), *range_commands(keys, query), ("EXEC",)])
    for reply in replies[:-1]:
        answer(reply)  # a command refused while queueing aborts EXEC
    return parse_range(keys, query, answer(replies[-1]))


def set_immutable_plan(key: bytes, value: bytes) -> Plan[bytes | None]:
    (reply,) = yield Batch([Script("set_immutable", [key], [value])], writes=True)
    return answer(reply, key)  # type: ignore[no-any-return]


def add_mutable_plan(key: bytes, value: bytes, timestamp: float) -> Plan[None]:
    (reply,) = yield Batch([Script("add_mutable", [key], [member(timestamp, value)])], writes=True)
    answer(reply, key)


def set_indexed_plan(key: bytes, sub_key: bytes, value: bytes) -> Plan[bytes | None]:
    (reply,) = yield Batch([Script("set_indexed", [key], [sub_key, value])], writes=True)
    return answer(reply, key)  # type: ignore[no-any-return]


def write_batch_plan(writes: Sequence[Write]) -> Plan[list[bytes | ImmutableKeyError | None]]:
    calls = batch_calls(writes)
    replies = yield Batch(
        [Script(script, keys, args) for script, keys, args, _ in calls], writes=True
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
        elif found[1] is KeyType.MUTABLE:
            batch = yield from get_range_plan([key], ALL_SAMPLES)
            result.append(None if batch is None else (KeyType.MUTABLE, batch))
        else:
            result.append((found[1], found[2]))
    return result


def dumps_plan(keys: Sequence[bytes]) -> Plan[list[bytes | None]]:
    """DUMP payloads of `keys` (None where absent)."""
    replies = yield Batch([("DUMP", key) for key in keys])
    return [
        reply if isinstance(answer(reply, key), bytes) else None
        for key, reply in zip(keys, replies, strict=True)
    ]


def delete_plan(keys: Sequence[bytes]) -> Plan[None]:
    (reply,) = yield Batch([("UNLINK", *keys)], writes=True)
    answer(reply)


def clear_plan() -> Plan[None]:
    (reply,) = yield Batch([("FLUSHDB", "ASYNC")], writes=True)
    answer(reply)


def restore_plan(batch: Sequence[tuple[bytes, bytes]]) -> Plan[list[bytes]]:
    """RESTORE a batch of (key, payload); returns the keys that must be merged instead.

    A key that exists already (BUSYKEY), or whose encoding the server does not know,
    is merged with ordinary writes by the caller.
    """
    replies = yield Batch([("RESTORE", key, 0, payload) for key, payload in batch], writes=True)
    return [key for (key, _), reply in zip(batch, replies, strict=True) if not restored(reply)]


def update_plan(
    key: bytes, payload: bytes, types: dict[bytes, KeyType | None]
) -> Plan[KeyUpdate | Recheck]:
    """A notification as a :class:`KeyUpdate` (asking for the key's type if the payload
    does not say it; `types` caches the answers), or Recheck if it cannot be read."""
    key_type = None
    if needs_type(payload):
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
    server, memory, size = yield Batch([("INFO", "server"), ("INFO", "memory"), ("DBSIZE",)])
    fields = {**parse_info(answer(server)), **parse_info(answer(memory))}
    valkey = "valkey_version" in fields
    return {
        "product": "Valkey" if valkey else "Redis",
        "version": fields.get("valkey_version" if valkey else "redis_version", "?"),
        "used_memory": fields.get("used_memory_human", "?"),
        "db": str(db),
        "keys": str(answer(size)),
    }


def ping_plan() -> Plan[None]:
    (reply,) = yield Batch([("PING",)])
    answer(reply)
