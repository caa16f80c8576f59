"""A raw ZRANGEBYLEX reply parsed straight into a :class:`SampleBatch`, with numpy.

The reply to a sensor range read is a RESP2 array of bulk strings::

    *<N>\\r\\n
    $<L1>\\r\\n<member 1>\\r\\n
    $<L2>\\r\\n<member 2>\\r\\n ...

A general RESP parser makes one bytes object per member; here the members never
become Python objects.  The catch is that the position of each ``$`` header
depends on every length before it, and members are binary (a ``$`` or ``\\r\\n``
may appear inside one), so the headers cannot simply be searched for.

* All members the same length (most sensors): the reply after ``*N\\r\\n`` is an
  array of fixed-size records (header, timestamp, value, ``\\r\\n``), read through
  strided views (:mod:`._strided`): every header, with the ``\\r\\n`` before it, is
  checked in two integer comparisons, and the timestamps are converted and the
  values copied out whole.
* Otherwise every ``$`` in the reply is a *candidate* header.  Each candidate's
  digits are decoded together (one pass per digit position), and a candidate
  survives only if it reads ``$<digits>\\r\\n``, its member ends in ``\\r\\n``
  and the next header position (its *successor*) is the end of the reply or
  another candidate.  In a well-formed reply the true headers form the chain
  first header → successor → ... → end.  When no ``$`` survives by accident,
  candidate ``i``'s successor is candidate ``i + 1`` for all ``i``, which one
  comparison confirms.  Otherwise the chain is walked with a Python step per
  *irregular* candidate (one whose successor is not the next candidate), never
  per member: the stretches in between are taken whole.  Random binary members
  hold a surviving false candidate rarely (it needs ``$``, digits, ``\\r\\n``
  and a matching ``\\r\\n`` further on), so the walk is short; a crafted reply
  can make it as long as one step per member, which is still correct.

Finally the timestamps (8 bytes at the start of each member) are gathered, and
the values (the rest) are copied out with one gather whose index is a running
count plus, repeated over each value, the distance from where the value sits in
the reply to where it goes in the batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ._errors import DecodeError
from ._samples import _SMALL, EMPTY_BATCH, SampleBatch, _as_list
from ._strided import Rows, column, gather, rows_match

__all__ = [
    "MembersTable",
    "Regular",
    "members_table",
    "parse_members_replies",
    "parse_members_reply",
    "tables_times",
]

_Array = NDArray[Any]
_DOLLAR, _CR, _LF = ord("$"), ord("\r"), ord("\n")
_MAX_DIGITS = 10  # Redis strings are at most 512 MiB: 9 digits; one spare
_STAMP = 8


def _malformed(reason: str) -> DecodeError:
    return DecodeError(f"malformed Redis reply of sensor members: {reason}")


class Regular(NamedTuple):
    """What a reader has checked of a members array as it arrived: `members` bulk strings
    of one length, the first at offset `first`, each `stride` bytes with its `head`-byte
    header and ``\r\n`` (see ``telstate._redis.resp.members_regular``)."""

    members: int
    first: int
    head: int
    stride: int


def parse_members_reply(
    reply: bytes | bytearray | memoryview, regular: Regular | None = None
) -> SampleBatch:
    """The sensor samples in the raw bytes of one RESP2 array-of-bulk-strings reply.

    Parameters
    ----------
    reply
        Exactly one reply, as read from the server: ``*N\\r\\n`` followed by N
        bulk strings, each a sensor member (8-byte timestamp + encoded value).
    regular
        The layout of `reply`, if its reader has checked every header already: the
        members are then taken where it says without checking them again.

    Returns
    -------
    SampleBatch
        The samples in reply order, with numpy ``times`` and ``ends`` (plain lists
        for a small batch, as :meth:`SampleBatch.from_members` makes them).

    Raises
    ------
    DecodeError
        If `reply` is not exactly one well-formed array of bulk strings (error
        replies included), or a member is shorter than its 8-byte timestamp.
    """
    buf = np.frombuffer(reply, np.uint8)
    if regular is not None and regular.members:
        count = regular.members
        batch = _table_batch(members_table(reply, regular))
    else:
        count, body = _array_header(bytes(buf[:24]))
        if count == 0:
            if len(buf) != body:
                raise _malformed(f"{len(buf) - body} bytes after an empty array")
            return EMPTY_BATCH
        if len(buf) <= body:
            raise _malformed(f"array of {count} members is truncated")
        even = _even(buf, body, count)
        batch = even if even is not None else _batch(buf, *_headers(buf, body, count))
    if count <= _SMALL:  # small batches hold lists: Python floats, cheaper to index
        return SampleBatch(_as_list(batch.times), batch.data, _as_list(batch.ends))
    return batch


class MembersTable(NamedTuple):
    """Where the members of a checked reply lie: `rows` from the first timestamp on (a
    value follows each timestamp), and the bytes of each value."""

    rows: Rows
    size: int

    @property
    def values(self) -> Rows:
        """The values' rows."""
        rows = self.rows
        return Rows(rows.buf, rows.start + _STAMP, rows.stride, rows.records)


def members_table(reply: bytes | bytearray | memoryview, regular: Regular) -> MembersTable:
    """The table of the members of `reply`, whose `regular` layout its reader checked.

    Raises
    ------
    DecodeError
        If the layout does not fit the reply, or a member is shorter than its timestamp.
    """
    buf = np.frombuffer(reply, np.uint8)
    count, head, stride = regular.members, regular.head, regular.stride
    if regular.first + count * stride != len(buf) or stride < head + 2:
        raise _malformed(f"the layout {regular} does not fit {len(buf)} bytes")
    length = stride - head - 2
    if length < _STAMP:
        raise _short(length)
    return MembersTable(Rows(buf, regular.first + head, stride, count), length - _STAMP)


def tables_times(tables: Sequence[MembersTable]) -> _Array:
    """The timestamps of every member of `tables`, in order, as one float64 array."""
    return gather([table.rows for table in tables], 0, ">f8", np.float64)


def parse_members_replies(
    replies: Sequence[tuple[bytes | bytearray | memoryview, Regular | None]],
) -> list[SampleBatch]:
    """:func:`parse_members_reply` of many replies (each with its `regular` layout or None).

    The replies of one member length whose layout is known (the members of most
    sensors of a ``get_ranges``) are parsed together: their members are joined into
    one table, whose timestamps are converted and values copied out once; each
    batch is then a slice of those.  The others are parsed one by one.
    """
    batches: list[SampleBatch | None] = [None] * len(replies)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (_, regular) in enumerate(replies):
        if regular is not None and regular.members > _SMALL:
            groups.setdefault((regular.head, regular.stride), []).append(i)
    for (head, stride), members in groups.items():
        if len(members) == 1:
            continue
        for i, batch in zip(members, _joined(replies, members, head, stride), strict=True):
            batches[i] = batch
    return [
        parse_members_reply(*reply) if batch is None else batch
        for reply, batch in zip(replies, batches, strict=True)
    ]


def _joined(
    replies: Sequence[tuple[bytes | bytearray | memoryview, Regular | None]],
    members: list[int],
    head: int,
    stride: int,
) -> list[SampleBatch]:
    """The batches of `members` of `replies`, all of `stride` bytes with a `head`-byte header."""
    tables = []
    for i in members:
        data, regular = replies[i]
        assert regular is not None
        tables.append(members_table(data, regular))
    times = tables_times(tables)
    size = tables[0].size
    ends = np.arange(1, max(table.rows.records for table in tables) + 1, dtype=np.int64) * size
    ends.flags.writeable = False  # shared by the batches
    batches = []
    row = 0
    for table in tables:
        count = table.rows.records
        batches.append(SampleBatch(times[row : row + count], _values(table), ends[:count]))
        row += count
    return batches


def _values(table: MembersTable) -> bytes:
    """The values of `table`, back to back."""
    values = table.values
    size = table.size
    if not size:
        return b""
    return column(values.buf, values.start, values.stride, values.records, f"V{size}").tobytes()


def _array_header(head: bytes) -> tuple[int, int]:
    """Member count and size of the ``*N\\r\\n`` header."""
    end = head.find(b"\r\n")
    if not head.startswith(b"*") or not _canonical(head[1:end] if end >= 0 else b""):
        shown = head[:end] if end >= 0 else head
        raise _malformed(f"expected an array header '*N', got {shown!r}")
    return int(head[1:end]), end + 2


def _canonical(digits: bytes) -> bool:
    """Whether `digits` is a length as Redis writes it: decimal, no sign, no leading zero."""
    return digits.isdigit() and (digits == b"0" or not digits.startswith(b"0"))


def _even(buf: _Array, body: int, count: int) -> SampleBatch | None:
    """The batch if every member has the first one's length, else None."""
    first = bytes(buf[body : body + _MAX_DIGITS + 3])
    end = first.find(b"\r\n")
    if not first.startswith(b"$") or end < 0 or not _canonical(first[1:end]):
        return None
    length = int(first[1:end])
    head = end + 2
    stride = head + length + 2
    if len(buf) - body != count * stride:
        return None
    if length < _STAMP:
        raise _short(length)
    # Each member's header, with the \r\n before it (the array header's, for the first),
    # where equal lengths put it; then the last member's \r\n.
    if not rows_match(buf, body - 2, stride, count, b"\r\n" + first[:head]):
        return None
    if bytes(buf[-2:]) != b"\r\n":
        return None
    return _table_batch(MembersTable(Rows(buf, body + head, stride, count), length - _STAMP))


def _table_batch(table: MembersTable) -> SampleBatch:
    """The batch of the members of `table`."""
    ends = np.arange(1, table.rows.records + 1, dtype=np.int64) * table.size
    return SampleBatch(tables_times([table]), _values(table), ends)


def _short(length: int) -> DecodeError:
    return _malformed(f"a member of {length} bytes is shorter than its 8-byte timestamp")


def _headers(buf: _Array, body: int, count: int) -> tuple[_Array, _Array]:
    """Start and length of each member, found among the candidate headers."""
    size = len(buf)
    pos = body + np.flatnonzero(buf[body:] == _DOLLAR)
    # Decode up to _MAX_DIGITS digits after each '$'; `ndigits` stops at the first non-digit.
    value = np.zeros(len(pos), np.int64)
    ndigits = np.zeros(len(pos), np.int64)
    going = np.ones(len(pos), bool)
    for j in range(1, _MAX_DIGITS + 2):
        at = pos + j
        byte = np.where(at < size, buf[np.minimum(at, size - 1)], 0).astype(np.int64)
        digit = going & (byte >= 0x30) & (byte <= 0x39) & (j <= _MAX_DIGITS)
        value = np.where(digit, value * 10 + byte - 0x30, value)
        ndigits += digit
        going &= digit
        if not going.any():
            break
    cr = pos + 1 + ndigits
    start = cr + 2
    stop = start + value  # the member's end: "\r\n" must follow
    leading_zero = (ndigits > 1) & (buf[np.minimum(pos + 1, size - 1)] == ord("0"))
    ok = (ndigits > 0) & ~leading_zero & (stop + 2 <= size)
    for at, want in ((cr, _CR), (cr + 1, _LF), (stop, _CR), (stop + 1, _LF)):
        ok &= buf[np.minimum(at, size - 1)] == want
    pos, start, value, after = pos[ok], start[ok], value[ok], (stop + 2)[ok]
    # Successor of each candidate: index of the candidate at `after`, len(pos) for the
    # end, -1 for neither.  Mostly the next candidate: only the others are searched for.
    nxt = np.arange(1, len(pos) + 1)
    odd = np.flatnonzero(after[:-1] != pos[1:])
    if len(pos):
        odd = np.append(odd, len(pos) - 1)
    found = np.searchsorted(pos, after[odd])
    hit = found < len(pos)
    hit[hit] = pos[found[hit]] == after[odd][hit]
    nxt[odd] = np.where(hit, found, np.where(after[odd] == size, len(pos), -1))
    if not len(pos) or pos[0] != body:
        raise _malformed(f"no bulk string header where member 1 should start (offset {body})")
    chain = _walk(nxt, count)
    return start[chain], value[chain]


def _walk(nxt: _Array, count: int) -> _Array:
    """Indices of the candidates on the chain from candidate 0, which must end after `count`."""
    total = len(nxt)
    regular = nxt == np.arange(1, total + 1)
    if regular.all():
        if total != count:
            raise _malformed(f"array header says {count} members, the reply holds {total}")
        return np.arange(total)
    irregular = np.flatnonzero(~regular).tolist()
    pieces: list[_Array] = []
    taken = 0
    i = 0
    while i != total:
        if i < 0:
            raise _malformed(f"member {taken} is not followed by a bulk string header")
        # From i, every candidate up to the next irregular one is followed by the next.
        k = bisect.bisect_left(irregular, i)
        j = irregular[k] if k < len(irregular) else total - 1  # regular to the end
        pieces.append(np.arange(i, j + 1))
        taken += j + 1 - i
        if taken > count:
            raise _malformed(f"more members than the {count} the array header says")
        i = int(nxt[j])
    if taken != count:
        raise _malformed(f"array header says {count} members, the reply holds {taken}")
    return np.concatenate(pieces)


def _batch(buf: _Array, starts: _Array, lengths: _Array) -> SampleBatch:
    """The batch of the members at `starts` with `lengths` in `buf`."""
    if (lengths < _STAMP).any():
        raise _short(int(lengths.min()))
    sizes = lengths - _STAMP
    ends = np.cumsum(sizes)
    stamps = np.empty((len(starts), _STAMP), np.uint8)
    for k in range(_STAMP):  # a column at a time: cheaper than one (n, 8) fancy index
        stamps[:, k] = buf[starts + k]
    times = stamps.view(">f8").ravel().astype(np.float64)
    # Value byte k of the batch is at k + (its value's start - its value's offset).
    shift = np.repeat(starts + _STAMP - (ends - sizes), sizes)
    shift += np.arange(len(shift))
    return SampleBatch(times, buf[shift].tobytes(), ends)
