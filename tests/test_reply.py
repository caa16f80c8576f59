"""parse_members_reply against hiredis's parse of the same bytes, followed by from_members."""

from __future__ import annotations

import struct
from typing import Any

import hiredis
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telstate import DecodeError
from telstate._reply import Regular, parse_members_replies, parse_members_reply
from telstate._samples import SampleBatch

# Bytes that look like parts of a reply, so that members hold false headers.
TRAPS = [b"$", b"\r\n", b"$3\r\n", b"abc\r\n", b"$0\r\n\r\n", b"$12\r\n", b"*2\r\n", b"9"]
VALUE_BYTES = st.lists(st.one_of(st.binary(max_size=6), st.sampled_from(TRAPS)), max_size=6).map(
    b"".join
)
TIMES = st.floats(min_value=0, max_value=1e10, allow_nan=False).map(lambda t: struct.pack(">d", t))


def _reply(members: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(members)]
    for m in members:
        parts += [b"$%d\r\n" % len(m), m, b"\r\n"]
    return b"".join(parts)


def _reference(reply: bytes) -> list[Any] | None:
    """The members as hiredis reads them, or None unless `reply` is exactly one array of
    members, written as Redis writes it (no leading zeros, nothing after it)."""
    reader = hiredis.Reader()
    reader.feed(reply)
    try:
        got = reader.gets()
    except hiredis.ProtocolError:
        return None
    if not isinstance(got, list) or not all(isinstance(m, bytes) and len(m) >= 8 for m in got):
        return None
    return got if _reply(got) == reply else None


def _as_lists(batch: SampleBatch) -> tuple[bytes, bytes, list[int]]:
    """Comparable contents of `batch`: the timestamps' bits (a damaged reply may hold NaNs)."""
    times = np.asarray(batch.times, np.float64).tobytes()
    ends = batch.ends if isinstance(batch.ends, list) else batch.ends.tolist()
    return times, bytes(batch.data), ends


def _check(reply: bytes) -> None:
    members = _reference(reply)
    if members is None:
        with pytest.raises(DecodeError, match="malformed Redis reply"):
            parse_members_reply(reply)
        return
    got = parse_members_reply(reply)
    assert _as_lists(got) == _as_lists(SampleBatch.from_members(members))
    # Lists for small batches, numpy arrays for big ones, as from_members makes them
    kinds = (type(got.times), type(got.ends))
    assert kinds == (
        type(SampleBatch.from_members(members).times),
        type(SampleBatch.from_members(members).ends),
    )
    if len(got) > 64:
        assert got.times.dtype == np.float64 and got.ends.dtype == np.int64  # type: ignore[union-attr]


MEMBER_LISTS = st.one_of(
    st.lists(st.tuples(TIMES, VALUE_BYTES).map(b"".join), max_size=40),
    # all of one length: the strided path
    st.integers(0, 12).flatmap(
        lambda n: st.lists(st.tuples(TIMES, st.binary(min_size=n, max_size=n)).map(b"".join))
    ),
)


@settings(max_examples=400, deadline=None)
@given(members=MEMBER_LISTS)
def test_round_trip(members: list[bytes]) -> None:
    reply = _reply(members)
    assert _reference(reply) == members
    _check(reply)


@settings(max_examples=400, deadline=None)
@given(members=MEMBER_LISTS, data=st.data())
def test_damaged_replies(members: list[bytes], data: st.DataObject) -> None:
    reply = bytearray(_reply(members))
    how = data.draw(st.sampled_from(["cut", "flip", "insert", "count"]))
    where = data.draw(st.integers(0, len(reply)))
    if how == "cut":
        del reply[where:]
    elif how == "flip" and where < len(reply):
        reply[where] = data.draw(st.sampled_from(b"$\r\n0123456789*-+:x\xff"))
    elif how == "insert":
        reply[where:where] = data.draw(st.sampled_from([*TRAPS, b"\r\n$-1\r\n"]))
    else:
        reply[1 : reply.index(b"\r\n")] = b"%d" % data.draw(st.integers(0, len(members) + 2))
    _check(bytes(reply))


def test_empty_one_and_mixed() -> None:
    assert len(parse_members_reply(b"*0\r\n")) == 0
    one = struct.pack(">d", 1.5) + b"\xff\xc3"
    got = parse_members_reply(_reply([one]))
    assert _as_lists(got) == (struct.pack("d", 1.5), b"\xff\xc3", [2])
    mixed = [struct.pack(">d", float(i)) + b"v" * (i % 5) for i in range(1000)]
    assert _as_lists(parse_members_reply(_reply(mixed))) == _as_lists(
        SampleBatch.from_members(mixed)
    )


def test_many_false_headers_inside_members() -> None:
    # Every member holds what reads as a complete bulk string: the walk steps around each.
    members = [struct.pack(">d", float(i)) + b"x$3\r\nabc\r\n" * (1 + i % 3) for i in range(300)]
    reply = _reply(members)
    assert _as_lists(parse_members_reply(reply)) == _as_lists(SampleBatch.from_members(members))
    got = parse_members_reply(memoryview(bytearray(reply)))  # any buffer
    assert len(got) == 300


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "array header"),
        (b"-WRONGTYPE Operation against a key\r\n", "array header"),
        (b"*-1\r\n", "array header"),
        (b"*1\r\n", "truncated"),
        (b"*0\r\nxx", "after an empty array"),
        (b"*1\r\n$-1\r\n", "bulk string header"),
        (b"*1\r\n$4\r\nabcd\r\n", "shorter than its 8-byte timestamp"),
        (b"*2\r\n$9\r\n123456789\r\n", "2 members"),
        (b"*1\r\n$9\r\n123456789\r\n$9\r\n123456789\r\n", "more members|1 members"),
        (b"*1\r\n$9\r\n123456789xx", "bulk string header"),
        (b"*1\r\n$x\r\n123456789\r\n", "bulk string header"),
    ],
)
def test_malformed_replies(reply: bytes, message: str) -> None:
    assert _reference(reply) is None
    with pytest.raises(DecodeError, match=message):
        parse_members_reply(reply)


def test_false_headers_early_then_regular_to_the_end() -> None:
    members = [struct.pack(">d", float(i)) + b"v" * (i % 4) for i in range(50)]
    members[0] += b"$3\r\nabc\r\n"  # a false header inside the first member only
    reply = _reply(members)
    assert _as_lists(parse_members_reply(reply)) == _as_lists(SampleBatch.from_members(members))


def test_leading_zeros_are_not_headers() -> None:
    reply = b"*1\r\n$09\r\n123456789\r\n"
    assert _reference(reply) is None
    with pytest.raises(DecodeError, match="malformed"):
        parse_members_reply(reply)
    with pytest.raises(DecodeError, match="array header"):
        parse_members_reply(b"*01\r\n$9\r\n123456789\r\n")


# ---------------------------------------------------------------- many replies, layouts known


def _regular(members: list[bytes]) -> Regular | None:
    """The layout a reader that checked `members` as they arrived would pass on."""
    if not members or len({len(m) for m in members}) != 1:
        return None
    head = len(b"$%d\r\n" % len(members[0]))
    return Regular(len(members), len(b"*%d\r\n" % len(members)), head, head + len(members[0]) + 2)


SENSORS = st.lists(
    st.one_of(
        MEMBER_LISTS,
        # big enough to be joined with others
        st.sampled_from([8, 10, 17]).flatmap(
            lambda n: st.lists(
                st.tuples(TIMES, st.binary(min_size=n - 8, max_size=n - 8)).map(b"".join),
                min_size=65,
                max_size=300,
            )
        ),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(sensors=SENSORS, known=st.booleans())
def test_many_replies_parse_as_each_alone(sensors: list[list[bytes]], known: bool) -> None:
    # All in one buffer, as a connection receives them, each reply a view of it
    replies = [_reply(members) for members in sensors]
    buffer = memoryview(b"".join(b"+junk\r\n" + reply for reply in replies))
    views = []
    at = 0
    for reply in replies:
        at += len(b"+junk\r\n")
        views.append(buffer[at : at + len(reply)])
        at += len(reply)
    layouts = [_regular(members) if known else None for members in sensors]
    got = parse_members_replies(list(zip(views, layouts, strict=True)))
    assert len(got) == len(sensors)
    for batch, members in zip(got, sensors, strict=True):
        expected = SampleBatch.from_members(members)
        assert _as_lists(batch) == _as_lists(expected)
        assert type(batch.times) is type(expected.times)


def test_layouts_that_do_not_fit_are_refused() -> None:
    members = [struct.pack(">d", float(i)) + b"\xff\xcb" + bytes(8) for i in range(100)]
    reply = _reply(members)
    layout = _regular(members)
    assert layout is not None
    assert len(parse_members_reply(reply, layout)) == 100
    with pytest.raises(DecodeError, match="does not fit"):
        parse_members_reply(reply + b"x", layout)
    with pytest.raises(DecodeError, match="does not fit"):
        parse_members_replies([(reply, layout), (reply[:-1], layout)])
    short = [struct.pack(">d", float(i))[:6] for i in range(100)]
    short_layout = _regular(short)
    assert short_layout is not None
    for many in ([(_reply(short), short_layout)], [(_reply(short), short_layout)] * 2):
        with pytest.raises(DecodeError, match="shorter than its 8-byte timestamp"):
            parse_members_replies(many)


def test_joined_batches_do_not_share_writable_offsets() -> None:
    members = [struct.pack(">d", float(i)) + b"\xff\xcb" + bytes(8) for i in range(100)]
    reply = _reply(members)
    a, b = parse_members_replies([(reply, _regular(members))] * 2)
    assert a.ends.tolist() == b.ends.tolist() == list(range(10, 1001, 10))  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        a.ends[0] = 0  # type: ignore[index]
