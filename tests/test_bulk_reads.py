"""Sensor reads whose members come over the socket raw (``resp.RawArray``), parsed by numpy.

A read of one sensor's samples on one server is a MULTI / TYPE / ZRANGEBYLEX / EXEC
transaction; when its replies have the shape of a successful read with members of one
length, the sync socket connection keeps the members array as bytes and
``telstate._reply`` parses it, checking each header as it arrives.  Any other shape
(another type, no key, members of several lengths, an error) is handed to hiredis.  The
results must be the same either way: these tests compare them with the members as
redis-py reads them, and count which reads took the raw path.
"""

from __future__ import annotations

import asyncio
import gc
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

import telstate.aio
from telstate import DecodeError, ImmutableKeyError, TelescopeState, _logic
from telstate._arrays import batch_arrays
from telstate._redis import aio, raw, resp, rules, sync
from telstate._redis.session import Node
from telstate._samples import SampleBatch
from telstate.aio.redis import RedisBackend as AioRedisBackend
from telstate.backends import _redis_protocol as proto

from .servers import RedisServer


def member(t: float, value: bytes) -> bytes:
    return struct.pack(">d", t) + value


@pytest.fixture
def own(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[TelescopeState]:
    """telstate on its own sockets (redis_client has emptied the server)."""
    ts = TelescopeState(f"unix://{redis_server.socket_path}")
    try:
        yield ts
    finally:
        ts.backend.close()


def as_redis_py_reads(client: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    """A sensor's samples, encoded, from the members redis-py (hiredis) parses."""
    members = client.zrangebylex(key, "-", "+")
    return [(m[8:], struct.unpack(">d", m[:8])[0]) for m in members]


@pytest.fixture
def raw_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many members arrays were parsed raw (one count each; in no particular order
    for a get_ranges)."""
    seen: list[int] = []
    original = proto.parse_members_reply

    def counting(data: Any, regular: Any = None) -> Any:
        batch = original(data, regular)
        seen.append(len(batch))
        return batch

    many = proto.parse_members_replies

    def counting_many(replies: Any) -> Any:
        batches = many(replies)
        seen.extend(map(len, batches))
        return batches

    table = proto.members_table

    def counting_table(data: Any, regular: Any) -> Any:  # get_range_arrays, no batch
        got = table(data, regular)
        seen.append(got.rows.records)
        return got

    monkeypatch.setattr(proto, "parse_members_reply", counting)
    monkeypatch.setattr(proto, "parse_members_replies", counting_many)
    monkeypatch.setattr(proto, "members_table", counting_table)
    return seen


def _fill(client: redis.Redis, key: str, members: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(members), 5000):
        pipe.zadd(key, dict.fromkeys(members[start : start + 5000], 0))
    pipe.execute()


def test_a_big_float_sensor_is_read_raw(
    own: TelescopeState, redis_client: redis.Redis, raw_parses: list[int]
) -> None:
    n = 200_000  # ~5 MB: many reads from the socket
    _fill(
        redis_client,
        "s",
        [member(1e9 + i, b"\xff\xcb" + struct.pack(">d", i * 0.5)) for i in range(n)],
    )
    values, stamps = own.get_range_arrays("s", st=0)
    assert raw_parses == [n]
    assert values.dtype == np.float64 and values[12345] == 12345 * 0.5
    assert stamps[0] == 1e9 and stamps[-1] == 1e9 + n - 1
    assert own.get_range("s", st=1e9 + 10, et=1e9 + 13) == [
        (5.0, 1e9 + 10),
        (5.5, 1e9 + 11),
        (6.0, 1e9 + 12),
    ]
    expected = as_redis_py_reads(redis_client, "s")
    assert own.get_range("s", st=0, return_encoded=True) == expected and len(expected) == n


@pytest.mark.parametrize(
    "lengths",
    [
        [3] * 50 + [4],  # the last member longer than the first
        [4] + [3] * 50,  # the first longer than the rest
        [3] * 20 + [9] + [3] * 20,  # one in the middle
        [3] * 30_000 + [1],  # the odd one at the end of a reply of many reads: hiredis
        list(range(1, 32)),  # all different
    ],
    ids=["last-longer", "first-longer", "middle", "late", "all"],
)
def test_members_of_several_lengths(
    own: TelescopeState, redis_client: redis.Redis, raw_parses: list[int], lengths: list[int]
) -> None:
    members = [
        member(float(i), b"\xff" + bytes([0xA0 + n]) + b"x" * n) for i, n in enumerate(lengths)
    ]
    _fill(redis_client, "strings", members)
    got = own.get_range("strings", st=0, return_encoded=True)
    # noticed, then walked member by member; or, beyond a few thousand, handed to hiredis
    assert raw_parses == ([] if len(lengths) > raw.WALK else [len(lengths)])
    assert got == as_redis_py_reads(redis_client, "strings")
    assert [len(value) - 2 for value, _ in got] == lengths


def test_reads_of_every_other_shape(
    own: TelescopeState, redis_client: redis.Redis, raw_parses: list[int]
) -> None:
    own.add("one", 1.5, ts=1.0)
    assert own.get_range("one", st=0) == [(1.5, 1.0)]
    assert raw_parses == [1]
    assert own.get_range("one", st=5) == [] and raw_parses == [1, 0]  # *0: an empty array
    with pytest.raises(KeyError):
        own.get_range("absent", st=0)
    own["attr"] = 1
    with pytest.raises(ImmutableKeyError):
        own.get_range("attr", st=0)
    own.set_indexed("idx", "a", 1)
    with pytest.raises(ImmutableKeyError):
        own.get_range_arrays("idx", st=0)
    # Previous samples and views take the parsed path
    own.add("one", 2.5, ts=2.0)
    assert own.get_range("one", st=2, include_previous=True) == [(1.5, 1.0), (2.5, 2.0)]
    assert raw_parses == [1, 0]
    # Binary members holding "$18\r\n" and "\r\n" are members like any other
    tricky = [member(float(i), b"\xff\xc4\x06$18\r\n\r") for i in range(100)]
    _fill(redis_client, "tricky", tricky)
    assert own.get_range("tricky", st=0, return_encoded=True) == [
        (b"\xff\xc4\x06$18\r\n\r", float(i)) for i in range(100)
    ]


def test_bulk_layout_rules() -> None:
    prefix = resp.bulk_read_prefix(4)
    assert prefix == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+zset\r\n"
    assert resp.bulk_layout(b"+OK\r\n+QUE", prefix) is None  # more bytes needed
    assert resp.bulk_layout(b"+OK\r\n-ERR", prefix) is False
    assert resp.bulk_layout(prefix.replace(b"zset", b"hash") + b"*0\r\n", prefix) is False
    absent = prefix.replace(b"zset", b"none") + b"*0\r\n"
    assert resp.bulk_layout(absent[:-3], prefix) is None
    missing = resp.bulk_layout(absent, prefix)
    assert isinstance(missing, resp.BulkLayout) and missing.missing and missing.end == len(absent)
    assert resp.bulk_layout(absent[:-3] + b"1\r\n", prefix) is False
    assert resp.bulk_layout(prefix + b"*12", prefix) is None
    assert resp.bulk_layout(prefix + b"-WRONGTYPE x\r\n", prefix) is False
    empty = resp.bulk_layout(prefix + b"*0\r\n", prefix)
    assert (
        isinstance(empty, resp.BulkLayout) and empty.members == 0 and empty.end == len(prefix) + 4
    )
    layout = resp.bulk_layout(prefix + b"*3\r\n$10\r\n", prefix)
    assert isinstance(layout, resp.BulkLayout)
    assert layout.head == b"$10\r\n" and layout.stride == 17 and layout.members == 3
    assert layout.end == len(prefix) + 4 + 3 * 17


def test_members_regular_checks_each_header_as_it_arrives() -> None:
    prefix = resp.bulk_read_prefix(4)
    body = b"".join(b"$10\r\n" + bytes([i]) * 10 + b"\r\n" for i in range(5))
    data = bytearray(prefix + b"*5\r\n" + body)
    layout = resp.bulk_layout(data, prefix)
    assert isinstance(layout, resp.BulkLayout)
    octets = np.frombuffer(data, np.uint8)
    first, stride = layout.first, layout.stride
    # Checked up to the end of the last whole member received
    assert resp.members_regular(octets, layout, first, first + 20) == first + stride
    assert resp.members_regular(octets, layout, first + stride, len(data)) == len(data)
    broken = bytearray(data)
    broken[first + 2 * stride + 2] = ord("1")  # "$11": another length
    octets = np.frombuffer(broken, np.uint8)
    assert resp.members_regular(octets, layout, first, len(data)) is None
    # ... noticed as soon as that header has arrived, before the member's end
    assert resp.members_regular(octets, layout, first, first + 2 * stride + 5) is None
    assert resp.members_regular(octets, layout, first, first + 2 * stride + 2) == first + 2 * stride
    broken = bytearray(data)
    broken[first + stride - 1] = 0  # a member without its \r\n
    octets = np.frombuffer(broken, np.uint8)
    assert resp.members_regular(octets, layout, first, len(data)) is None


def test_many_sensors_in_one_exchange(
    own: TelescopeState, redis_client: redis.Redis, raw_parses: list[int]
) -> None:
    # Plain sensors of several sizes, one of mixed lengths in the middle, then an absent
    # key and a plain sensor again: each read raw where it can be, the rest by hiredis
    for i in range(6):
        _fill(
            redis_client,
            f"f{i}",
            [member(float(t), b"\xff\xcb" + struct.pack(">d", t * i)) for t in range(3000 * i + 1)],
        )
    lengths = [3] * 40 + [5] + [3] * 40
    _fill(
        redis_client,
        "mixed",
        [member(float(t), b"\xff" + bytes([0xA0 + n]) + b"y" * n) for t, n in enumerate(lengths)],
    )
    _fill(redis_client, "last", [member(float(t), b"\xff\x07") for t in range(10)])
    names = ["f0", "f1", "f2", "mixed", "absent", "f3", "f4", "f5", "last"]
    got = own.get_ranges(names, st=0, arrays=True)
    assert sorted(got) == sorted(set(names) - {"absent"})
    for i in range(6):
        assert got[f"f{i}"].values.tolist() == [float(t * i) for t in range(3000 * i + 1)]
    assert [len(v) for v in got["mixed"].values] == lengths
    assert got["last"].values.tolist() == [7] * 10
    # all read raw, "mixed" too (walked member by member)
    assert sorted(raw_parses) == [1, 10, 81, 3001, 6001, 9001, 12001, 15001]
    # All plain: every one raw
    raw_parses.clear()
    plain = ["f1", "f5", "last"]
    again = own.get_ranges(plain, st=0)
    assert sorted(raw_parses) == [10, 3001, 15001]
    assert again["last"] == [(7, float(t)) for t in range(10)]
    # An absent key is a read of its own shape: the reads after it stay raw
    raw_parses.clear()
    gaps = own.get_ranges(["absent", "f1", "absent2", "f5", "last"], st=0, arrays=True)
    assert sorted(gaps) == ["f1", "f5", "last"]
    assert sorted(raw_parses) == [10, 3001, 15001]
    assert gaps["f5"].values.tolist() == [float(t * 5) for t in range(15001)]


def test_asyncio_reads_raw_too(
    own: TelescopeState,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    raw_parses: list[int],
) -> None:
    """The asyncio driver receives the same reads raw, with the same results."""
    for i in range(4):
        _fill(
            redis_client,
            f"f{i}",
            [member(float(t), b"\xff\xcb" + struct.pack(">d", t * i)) for t in range(2000 * i + 1)],
        )
    _fill(redis_client, "ints", [member(float(t), b"\xff\x07") for t in range(10)])
    lengths = [3] * 40 + [5] + [3] * 40
    _fill(
        redis_client,
        "mixed",
        [member(float(t), b"\xff" + bytes([0xA0 + n]) + b"y" * n) for t, n in enumerate(lengths)],
    )
    names = ["f0", "f1", "mixed", "absent", "f2", "ints", "f3"]
    expected = own.get_ranges(names, st=0, arrays=True)
    raw_parses.clear()

    async def main() -> None:
        backend = await AioRedisBackend.from_url(f"unix://{redis_server.socket_path}")
        async with backend:
            ts = telstate.aio.TelescopeState(backend)
            got = await ts.get_ranges(names, st=0, arrays=True)
            assert sorted(got) == sorted(expected)
            for name, arrays in expected.items():
                assert got[name].values.tolist() == arrays.values.tolist(), name
                assert got[name].timestamps.tolist() == arrays.timestamps.tolist(), name
            assert sorted(raw_parses) == [1, 10, 81, 2001, 4001, 6001]
            raw_parses.clear()
            one = await ts.get_range_arrays("f3", st=0)
            assert raw_parses == [6001]
            assert one.values.tolist() == expected["f3"].values.tolist()
            # Concurrent calls, on shared connections or not: the same results
            reads = await asyncio.gather(
                *(ts.get_range("f2", st=0) for _ in range(3)), ts.get("absent", 5)
            )
            assert reads[:3] == [[(t * 2.0, float(t)) for t in range(4001)]] * 3
            assert reads[3] == 5

    asyncio.run(main())


# ------------------------------------------------ the receiving loop, with a socket of our own


class ChunkedSocket:
    """Hands out `stream` in pieces of the given sizes (then whatever is asked for)."""

    def __init__(self, stream: bytes, sizes: list[int]) -> None:
        self.stream = stream
        self.sizes = list(sizes)
        self.at = 0

    def gettimeout(self) -> float | None:
        return None

    def recv_into(self, view: memoryview) -> int:
        size = self.sizes.pop(0) if self.sizes else len(view)
        size = min(size, len(view), len(self.stream) - self.at)
        view[:size] = self.stream[self.at : self.at + size]
        self.at += size
        return size


def _receive(stream: bytes, reads: int, sizes: list[int], start: int | None = None) -> list[Any]:
    """The replies of `reads` reads received from `stream` in pieces of `sizes`; with
    `start`, the receiving buffer starts that small (and grows many times)."""
    connection = sync.SocketConnection(
        ChunkedSocket(stream, sizes),  # type: ignore[arg-type]
        Node(("127.0.0.1", 1)),
        0,
    )
    saved = raw.BULK_START
    if start is not None:
        raw.BULK_START = start
    try:
        return connection._receive_bulk(reads * resp.BULK_READ_REPLIES)
    finally:
        raw.BULK_START = saved


class ProtocolFeed(asyncio.Transport):
    """The transport of an asyncio protocol, handing it `stream` in pieces of `sizes`
    through ``get_buffer`` / ``buffer_updated`` as the event loop would."""

    def __init__(self, connection: aio.StreamConnection) -> None:
        super().__init__()
        self.connection = connection
        self.closed = False
        connection.connection_made(self)

    def write(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.connection.connection_lost(None)

    close = abort

    def is_closing(self) -> bool:
        return self.closed

    def feed(self, stream: bytes, sizes: list[int]) -> None:
        sizes = list(sizes)
        at = 0
        while at < len(stream) and not self.closed:
            buffer = self.connection.get_buffer(-1)
            size = min(sizes.pop(0) if sizes else len(buffer), len(buffer), len(stream) - at)
            buffer[:size] = stream[at : at + size]
            at += size
            self.connection.buffer_updated(size)


async def _exchanges(
    stream: bytes, counts: list[tuple[int, bool]], sizes: list[int], start: int | None = None
) -> list[list[Any]]:
    """The replies of requests of (count, bulk) sent at once on an asyncio connection,
    received from `stream` in pieces of `sizes`."""
    connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 10.0)
    transport = ProtocolFeed(connection)
    saved = raw.BULK_START
    if start is not None:
        raw.BULK_START = start
    try:
        requests = [
            asyncio.ensure_future(connection.exchange(b"", count, bulk)) for count, bulk in counts
        ]
        await asyncio.sleep(0)  # every request sent, in order
    finally:
        raw.BULK_START = saved
    transport.feed(stream, sizes)
    return list(await asyncio.gather(*requests))


def _receive_aio(
    stream: bytes, reads: int, sizes: list[int], start: int | None = None
) -> list[Any]:
    """:func:`_receive` through the asyncio protocol."""
    count = reads * resp.BULK_READ_REPLIES
    return asyncio.run(_exchanges(stream, [(count, True)], sizes, start))[0]


def _plain(replies: list[Any]) -> list[Any]:
    """Replies with raw members arrays as hiredis reads them, and errors comparable."""
    out: list[Any] = []
    for reply in replies:
        if isinstance(reply, list):
            out.append(_plain(reply))
        elif isinstance(reply, resp.RawArray):
            reader = resp.Reader()
            reader.feed(bytes(reply.data))
            members = reader.gets()
            parsed = proto.parse_members_reply(*reply)
            assert parsed.encoded() == SampleBatch.from_members(members).encoded()
            out.append(members)
        elif isinstance(reply, BaseException):
            out.append((type(reply).__name__, str(reply)))
        else:
            out.append(reply)
    return out


def _hiredis(stream: bytes, count: int) -> list[Any]:
    reader = resp.Reader()
    reader.feed(stream)
    return _plain([reader.gets() for _ in range(count)])


def _array(members: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(members) + b"".join(b"$%d\r\n%s\r\n" % (len(m), m) for m in members)


def _read(kind: bytes, body: bytes) -> bytes:
    return b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+" + kind + b"\r\n" + body


FLOATS = [member(float(t), b"\xff\xcb" + struct.pack(">d", t / 3)) for t in range(5)]
SHAPES = {
    "floats": _read(b"zset", _array(FLOATS)),
    "one": _read(b"zset", _array(FLOATS[:1])),
    "empty": _read(b"zset", b"*0\r\n"),
    "missing": _read(b"none", b"*0\r\n"),
    "wrong type": _read(
        b"string", b"-WRONGTYPE Operation against a key holding the wrong kind\r\n"
    ),
    "strings": _read(b"zset", _array([member(1.0, b"\xff\xa1a"), member(2.0, b"\xff\xa2bb")])),
    "false headers": _read(b"zset", _array([member(float(t), b"$18\r\n\r\n") for t in range(4)])),
    # lengths change, then not a bulk string at all: noticed while walking, hiredis reads it
    "not bulk": _read(b"zset", b"*3\r\n$3\r\nabc\r\n$4\r\nabcd\r\n:5\r\n"),
    "aborted": b"+OK\r\n-ERR unknown command\r\n+QUEUED\r\n-EXECABORT Transaction discarded\r\n",
}


@pytest.mark.parametrize(
    "names",
    [
        ["floats"],
        ["floats", "one", "empty", "false headers", "floats"],
        ["floats", "missing", "floats"],
        ["one", "wrong type", "empty"],
        ["floats", "strings", "floats"],
        ["strings", "not bulk", "floats"],
        ["empty", "aborted", "one"],
    ],
    ids="+".join,
)
def test_replies_split_at_every_byte(names: list[str]) -> None:
    stream = b"".join(SHAPES[name] for name in names)
    expected = _hiredis(stream, 4 * len(names))
    for cut in range(1, len(stream)):
        assert _plain(_receive(stream, len(names), [cut])) == expected, cut
        assert _plain(_receive(stream, len(names), [cut], start=cut % 90 + 1)) == expected, cut
    assert _plain(_receive(stream, len(names), [1] * len(stream))) == expected

    async def through_the_protocol() -> None:
        # the asyncio driver, with a request queued behind the reads: the bytes after
        # them (in the same piece, at most cuts) are its reply
        count = 4 * len(names)
        for cut in range(1, len(stream) + 6):
            start = cut % 90 + 1 if cut % 2 else None
            got, after = await _exchanges(
                stream + b"+PONG\r\n", [(count, True), (1, False)], [cut], start
            )
            assert _plain(got) == expected, cut
            assert after == [b"PONG"], cut
            # reads queued behind reads: hiredis parses the second (its start is not
            # known to be a reply's when it is sent)
            first, second = await _exchanges(stream * 2, [(count, True)] * 2, [cut], start)
            assert _plain(first) == expected == _plain(second), cut
            assert not any(
                type(reply) is list and type(reply[1]) is resp.RawArray for reply in second
            )

    asyncio.run(through_the_protocol())


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(SHAPES)), min_size=1, max_size=6),
    sizes=st.lists(st.integers(1, 200), max_size=30),
    big=st.integers(0, 3000),
    start=st.one_of(st.none(), st.integers(1, 300)),
)
def test_random_reads_and_pieces(
    names: list[str], sizes: list[int], big: int, start: int | None
) -> None:
    # a big regular read somewhere, to cross buffer growth
    many = [member(float(t), b"\xff\xcb" + struct.pack(">d", t)) for t in range(big)]
    names = [*names, "big"]
    shapes = {**SHAPES, "big": _read(b"zset", _array(many))}
    stream = b"".join(shapes[name] for name in names)
    expected = _hiredis(stream, 4 * len(names))
    assert _plain(_receive(stream, len(names), sizes, start)) == expected
    assert _plain(_receive_aio(stream, len(names), sizes, start)) == expected


def test_bytes_that_are_not_replies_drop_the_connection() -> None:
    with pytest.raises(rules.Dropped, match="more than the replies"):
        _receive(SHAPES["floats"] + b"+OK\r\n", 1, [])
    with pytest.raises(rules.Dropped, match="Redis protocol"):
        _receive(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+zset\r\n*2\r\n$x\r\n", 1, [])
    with pytest.raises(rules.Dropped, match="closed the connection"):
        _receive(SHAPES["floats"][:-3], 1, [])  # the server went away mid-reply


def test_the_asyncio_protocol_drops_bytes_that_are_not_replies() -> None:
    # After the reads, bytes no request asked for: the reads are answered, and the
    # connection, which can no longer be trusted, is dropped
    async def extra_bytes() -> None:
        connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 10.0)
        transport = ProtocolFeed(connection)
        read = asyncio.ensure_future(connection.exchange(b"", 4, bulk=True))
        await asyncio.sleep(0)
        transport.feed(SHAPES["floats"] + b"+OK\r\n", [])
        assert _plain(await read) == _hiredis(SHAPES["floats"], 4)
        assert transport.closed and not connection.usable

    asyncio.run(extra_bytes())
    # Not RESP where a read's members array was expected: hiredis says so
    garbled = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+zset\r\n*2\r\n$x\r\n"
    with pytest.raises(rules.Dropped, match="Redis protocol"):
        _receive_aio(garbled, 1, [])

    async def lost_mid_reply() -> None:
        connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 10.0)
        transport = ProtocolFeed(connection)
        read = asyncio.ensure_future(connection.exchange(b"", 4, bulk=True))
        await asyncio.sleep(0)
        transport.feed(SHAPES["floats"][:-3], [])
        assert not read.done() and connection.receiver is not None
        transport.abort()  # the server went away
        with pytest.raises(rules.Dropped, match="lost"):
            await read
        assert connection.receiver is None

    asyncio.run(lost_mid_reply())


def test_a_corrupt_array_header_is_our_error() -> None:
    # A members array whose header was damaged after the reader checked it
    raw = _receive(SHAPES["floats"], 1, [])[3][1]
    assert isinstance(raw, resp.RawArray) and raw.regular is not None
    with pytest.raises(DecodeError, match="does not fit"):
        proto.parse_members_reply(bytes(raw.data)[:-1], raw.regular)
    with pytest.raises(DecodeError, match="malformed"):
        proto.parse_members_reply(b"*5\r\n$17\r\n" + bytes(raw.data)[9:])


@pytest.mark.parametrize(
    "values",
    [
        [i * 0.25 for i in range(100)],  # doubles: straight from the reply
        [np.float32(i) for i in range(100)],
        [2**40 + i for i in range(100)],  # int64
        [200 + i for i in range(50)],  # uint8
        [2**63 + i for i in range(100)],  # uint64 beyond int64: by its own rule
        [i * 1000 for i in range(100)],  # ints of several encodings
        [True, False] * 50,
        ["abc"] * 100,
        [1.5] * 99 + [7],  # one int among the doubles
        [0.5] * 10,  # a few: a batch first
    ],
    ids=["f8", "np.f4", "i8", "u1", "u8", "mixed", "bool", "str", "one int", "few"],
)
def test_get_range_arrays_from_the_raw_reply(
    own: TelescopeState, redis_client: redis.Redis, values: list[Any]
) -> None:
    with own.pipeline() as batch:
        for i, value in enumerate(values):
            batch.add("s", value, ts=1e9 + i)
    got = own.get_range_arrays("s", st=0)
    members = redis_client.zrangebylex("s", "-", "+")
    expected = batch_arrays(SampleBatch.from_members(members))
    assert got.values.dtype == expected.values.dtype
    assert got.values.tolist() == expected.values.tolist()
    assert (
        got.timestamps.tolist()
        == expected.timestamps.tolist()
        == [1e9 + i for i in range(len(values))]
    )
    many = own.get_ranges(["s", "s"], st=0, arrays=True)["s"]
    assert many.values.tolist() == expected.values.tolist()


def test_get_ranges_arrays_of_many_encodings(
    own: TelescopeState, redis_client: redis.Redis, raw_parses: list[int]
) -> None:
    # Members of one length (18 bytes) but several encodings, joined only by encoding
    sensors: dict[str, list[Any]] = {
        "d1": [i * 0.5 for i in range(300)],
        "i1": [2**40 + i for i in range(200)],
        "d2": [-i * 0.25 for i in range(100)],
        "u1": [2**63 + i for i in range(100)],  # uint64: alone, by its own rule
        "i2": [2**41 + i for i in range(100)],
        "s1": ["x" * (i % 7) for i in range(100)],  # several lengths: hiredis from here
        "d3": [1.0] * 80,
    }
    for name, values in sensors.items():
        with own.pipeline() as batch:
            for i, value in enumerate(values):
                batch.add(name, value, ts=1e9 + i)
    names = ["d1", "i1", "absent", "d2", "u1", "i2", "s1", "d3"]
    got = own.get_ranges(names, st=0, arrays=True)
    assert sorted(got) == sorted(sensors)
    for name in sensors:
        expected = batch_arrays(SampleBatch.from_members(redis_client.zrangebylex(name, "-", "+")))
        assert got[name].values.dtype == expected.values.dtype, name
        assert got[name].values.tolist() == expected.values.tolist(), name
        assert got[name].timestamps.tolist() == expected.timestamps.tolist(), name
    assert {300, 200, 100, 80} <= set(raw_parses)  # all read raw, "s1" (walked) too


def test_get_ranges_of_many_samples_pauses_young_collections_only_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, ...]] = []
    original = _logic.decode_batch

    def watching(batch: SampleBatch) -> Any:
        seen.append(gc.get_threshold())
        return original(batch)

    monkeypatch.setattr(_logic, "decode_batch", watching)
    before = gc.get_threshold()
    batch = SampleBatch.from_members([member(float(t), b"\xff\x05") for t in range(6000)])
    got = _logic.ranges_result(["a", "b", "c"], [batch, None, batch])
    assert got == {"a": [(5, float(t)) for t in range(6000)], "c": got["a"]}
    assert gc.get_threshold() == before
    assert all(threshold[0] > before[0] for threshold in seen)  # 12 000 samples: paused
    seen.clear()
    _logic.ranges_result(["a"], [batch])
    assert seen == [before]  # 6000: not worth it


def test_members_walk_rules() -> None:
    data = b"$3\r\nabc\r\n$1\r\nx\r\n$10\r\n0123456789\r\n"
    assert resp.members_walk(data, 0, 3, len(data)) == (len(data), 0)
    assert resp.members_walk(data, 0, 2, len(data)) == (16, 0)  # stops after `left`
    assert resp.members_walk(data, 0, 3, 20) == (16, 1)  # the third has not all arrived
    assert resp.members_walk(data, 0, 3, 18) == (16, 1)  # nor has its header
    assert resp.members_walk(b"$3\r\nabcXY", 0, 1, 9) is None  # no \r\n after the member
    assert resp.members_walk(b"+OK\r\n", 0, 1, 5) is None  # not a bulk string
    assert resp.members_walk(b"$-1\r\n", 0, 1, 5) is None  # nor is a null
    assert resp.members_walk(b"$" + b"1" * 12 + b"\r\n", 0, 1, 15) is None  # no header end


# ------------------------------------------------------------ the asyncio connection's watchdog


def test_a_cancelled_request_s_replies_are_dropped_in_order() -> None:
    """A caller cancelled while its reply is on the way: the reply is read and dropped,
    and the request behind it gets its own."""

    async def main() -> None:
        connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 10.0)
        transport = ProtocolFeed(connection)
        first = asyncio.ensure_future(connection.exchange(b"", 2))
        second = asyncio.ensure_future(connection.exchange(b"", 1))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        transport.feed(b"+a\r\n+b\r\n+c\r\n", [3])
        assert await second == [b"c"]
        assert first.cancelled() and connection.usable and not connection.pending

    asyncio.run(main())


def test_replies_trickling_in_keep_a_request_alive_past_the_timeout() -> None:
    """The timeout counts from the last sign of life, not from the request."""

    async def main() -> None:
        # 0.5 s: a loaded machine may oversleep the 0.1 s between bytes a little
        connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 0.5)
        transport = ProtocolFeed(connection)
        request = asyncio.ensure_future(connection.exchange(b"", 1))
        reply = b"$5\r\nhello\r\n"
        start = time.monotonic()
        for at in range(len(reply)):  # a byte every 0.1 s: 1.1 s in all
            await asyncio.sleep(0.1)
            assert not request.done()
            transport.feed(reply[at : at + 1], [])
        assert await request == [b"hello"]
        assert time.monotonic() - start > 1.0 and connection.usable

    asyncio.run(main())


def test_a_silent_server_fails_every_waiting_request() -> None:
    """Nothing for `timeout` seconds: the connection is dropped, and every request on it
    fails saying why; a later request fails at once."""

    async def main() -> None:
        connection = aio.StreamConnection(Node(("127.0.0.1", 1)), 0, 0.2)
        transport = ProtocolFeed(connection)
        requests = [asyncio.ensure_future(connection.exchange(b"", 1)) for _ in range(3)]
        start = time.monotonic()
        results = await asyncio.gather(*requests, return_exceptions=True)
        waited = time.monotonic() - start
        assert all(
            isinstance(r, rules.Dropped) and "did not answer in 0.2 s" in str(r) for r in results
        )
        assert 0.15 < waited < 5 and transport.closed and not connection.usable
        assert connection.watchdog is None
        with pytest.raises(rules.Dropped, match="did not answer"):
            await connection.exchange(b"", 1)

    asyncio.run(main())
