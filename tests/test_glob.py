"""Tests for telstate._glob: Redis 7 KEYS/SCAN pattern semantics, checked against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from telstate._glob import compile_glob

from .servers import RedisServer

# (pattern, key, does KEYS pattern return key?).  Every answer was checked against
# redis-server 7.0.15, and test_table_agrees_with_server keeps checking them.
CASES: list[tuple[bytes, bytes, bool]] = [
    # The empty key: only the empty pattern matches, plus KEYS/SCAN's special case for "*".
    (b"*", b"", True),
    (b"**", b"", False),
    (b"*?", b"", False),
    (b"", b"", True),
    (b"", b"a", False),
    (b"?", b"", False),
    (b"\x00", b"", False),
    # Plain wildcards and literals.
    (b"*", b"anything", True),
    (b"**", b"a", True),
    (b"?", b"a", True),
    (b"?", b"ab", False),
    (b"*?", b"a", True),
    (b"a*", b"a", True),
    (b"a**", b"abc", True),
    (b"*a", b"ba", True),
    (b"a*b", b"ab", True),
    (b"a*b", b"axxb", True),
    (b"a*b", b"axxbc", False),
    (b"a*a", b"a", False),
    (b"*a*b", b"xaxbxb", True),
    (b"*ab*ab", b"abab", True),
    (b"*ab*ab", b"aba", False),
    (b"A", b"a", False),  # case-sensitive
    (b"a\x00b", b"a\x00b", True),
    (b"a*", b"a\x00", True),
    # Backslash escapes, and a lone trailing backslash being a literal.
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?", b"a", False),
    (b"\\a", b"a", True),
    (b"\\\\", b"\\", True),
    (b"\\", b"\\", True),
    (b"\\", b"", False),
    (b"a\\", b"a\\", True),
    (b"*\\", b"x\\", True),
    (b"\\[a]", b"[a]", True),
    # Classes.
    (b"[abc]", b"b", True),
    (b"[abc]", b"d", False),
    (b"[^abc]", b"d", True),
    (b"[^abc]", b"a", False),
    (b"[a-c]", b"b", True),
    (b"[a-c]", b"-", False),
    (b"[z-a]", b"m", True),  # reversed range is swapped
    (b"[--0]", b"/", True),
    (b"[A-Z]", b"a", False),
    (b"[*]", b"*", True),
    (b"[?]", b"a", False),
    (b"[a^]", b"^", True),
    (b"[^^]", b"^", False),
    # Unclosed classes end with the pattern.
    (b"[abc", b"c", True),
    (b"[abc", b"d", False),
    (b"[abc", b"ab", False),
    (b"[^a", b"b", True),
    (b"[", b"[", False),  # '[' alone is an empty class
    (b"[^", b"x", True),  # '[^' alone matches any byte
    (b"[^", b"^", True),
    # The empty class matches nothing, so ']' does not become a member.
    (b"[]", b"]", False),
    (b"[]a]", b"a", False),
    (b"[]a]", b"]", False),
    (b"[]a]", b"]a]", False),
    (b"[^]", b"x", True),
    (b"[^]", b"]", True),
    (b"[^]", b"", False),
    # "a-" followed by at least one byte is a range, even when that byte is ']'.
    (b"[a-]", b"]", True),
    (b"[a-]", b"_", True),
    (b"[a-]", b"-", False),
    (b"[a-]", b"b", False),
    (b"[a-]x", b"x", True),  # the class is unclosed, so 'x' is a member
    (b"[a-]x", b"ax", False),
    (b"[a-", b"-", True),  # too short for a range: 'a' and '-' are members
    (b"[a-\\]", b"\\", True),  # no escaping of range ends
    (b"[a-\\]", b"]", True),
    (b"[a-\\]", b"b", False),
    # Backslash inside a class.
    (b"[\\]]", b"]", True),
    (b"[\\]", b"]", True),  # escaped ']' and then the class is unclosed
    (b"[\\]", b"\\", False),
    (b"[\\", b"\\", True),  # a trailing backslash in a class is a member
    (b"[\\-a]", b"b", False),  # an escaped byte never starts a range
    (b"[\\-a]", b"-", True),
    # Ranges compare signed chars: 0x80..0xff sort below 0x00.
    (b"[a-\xff]", b"\x00", True),  # range -1..97
    (b"[a-\xff]", b"a", True),
    (b"[a-\xff]", b"\xff", True),
    (b"[a-\xff]", b"b", False),
    (b"[a-\xff]", b"\xfe", False),
    (b"[a-\xff]", b"\x80", False),
    (b"[\x7f-\x80]", b"a", True),  # -128..127: everything
    (b"[\x7f-\x80]", b"\xc0", True),
    (b"[\x80-\x81]", b"\x80", True),
    (b"[\x80-\x81]", b"\x7f", False),
    (b"[\x00-\x02]", b"\x01", True),
    (b"[^\x80-\x00]", b"\xff", False),
    (b"[^\x80-\x00]", b"\x01", True),
    # The recursion guard (nesting > 1000): a 1001st '*' group followed by more pattern
    # can never complete, but a trailing 1001st group is fine.
    (b"*a" * 1000, b"a" * 1000, True),
    (b"*a" * 1001, b"a" * 1001, False),
    (b"**a" * 1001, b"a" * 1001, False),
    (b"*a" * 1000 + b"*", b"a" * 1001, True),
    (b"a*" * 1001, b"a" * 1001, True),
    (b"a*" * 1001 + b"b", b"a" * 1001 + b"b", False),
]


def _case_id(case: tuple[bytes, bytes, bool]) -> str:
    pattern, key, expected = case
    text = f"{pattern!r}~{key!r}"
    return (text if len(text) <= 40 else text[:37] + "...") + f"={expected}"


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES, ids=map(_case_id, CASES))
def test_table(pattern: bytes, key: bytes, expected: bool) -> None:
    assert compile_glob(pattern)(key) is expected


def test_compile_is_cached() -> None:
    assert compile_glob(b"a*[bc]?") is compile_glob(b"a*[bc]?")


@pytest.mark.timeout(30)  # naive backtracking would take longer than the universe's age
def test_pathological_pattern_finishes() -> None:
    # Naive backtracking is exponential here; Redis and we are polynomial.
    assert not compile_glob(b"*a" * 30 + b"*b")(b"a" * 5000)
    assert compile_glob(b"*a" * 30 + b"*b")(b"a" * 5000 + b"b")


# --- a private redis-server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's private redis-server (see conftest.py), Redis >= 7."""
    client = redis_server.client()
    version = str(client.info("server")["redis_version"])
    if int(version.split(".")[0]) < 7:
        pytest.fail(f"need Redis >= 7, found {version}", pytrace=False)
    yield client
    client.close()


def _server_keys(server: redis.Redis, keys: set[bytes], pattern: bytes) -> tuple[set[bytes], ...]:
    """FLUSHALL, SET every key, and return (KEYS pattern, SCAN MATCH pattern) as sets."""
    pipe = server.pipeline(transaction=False)
    pipe.flushall()
    if keys:
        pipe.mset(dict.fromkeys(keys, b"1"))
    pipe.keys(pattern)
    found = set(pipe.execute()[-1])
    scanned = set(server.scan_iter(match=pattern, count=1000))
    return found, scanned


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES, ids=map(_case_id, CASES))
def test_table_agrees_with_server(
    server: redis.Redis, pattern: bytes, key: bytes, expected: bool
) -> None:
    found, scanned = _server_keys(server, {key, b"\x00unrelated"}, pattern)
    assert (key in found) is expected
    assert (key in scanned) is expected


# --- differential tests against the server -------------------------------------------------

_HIGH = [0x80, 0x81, 0xA0, 0xC0, 0xFE, 0xFF]
# Metacharacters and a few letters dominate; high bytes and NUL appear now and then.
_ALPHABET = [*b"*?[]^-\\abc"] * 6 + [*b"abc"] * 4 + _HIGH * 2 + [0x00, 0x00, 0x7F]
_pattern_bytes = st.lists(st.sampled_from(_ALPHABET), max_size=12).map(bytes)
_key_byte = st.one_of(st.sampled_from(_ALPHABET), st.integers(0, 255))
_keys = st.lists(st.lists(_key_byte, max_size=8).map(bytes), max_size=20)


def _derived_keys(pattern: bytes) -> set[bytes]:
    """Keys that look like the pattern, so that matches are common."""
    plain = pattern.translate(None, b"*?[]^\\")
    return {
        b"",
        pattern,
        plain,
        pattern.replace(b"*", b"").replace(b"?", b"a"),
        pattern.replace(b"*", b"ab").replace(b"\\", b""),
        plain + b"a",
        b"a" + plain,
    }


@settings(max_examples=300, deadline=None, database=None)
@given(pattern=_pattern_bytes, keys=_keys)
@example(pattern=b"*", keys=[])
@example(pattern=b"**", keys=[])
@example(pattern=b"", keys=[b"a"])
@example(pattern=b"[]a]", keys=[b"]", b"a", b"]a]"])
@example(pattern=b"[a-]x", keys=[b"]", b"_", b"x", b"-"])
@example(pattern=b"[a-\xff]", keys=[b"\x00", b"\x80", b"\xff", b"b"])
def test_matches_real_redis(server: redis.Redis, pattern: bytes, keys: list[bytes]) -> None:
    all_keys = set(keys) | _derived_keys(pattern)
    found, scanned = _server_keys(server, all_keys, pattern)
    match = compile_glob(pattern)
    ours = {key for key in all_keys if match(key)}
    assert ours == found, f"KEYS {pattern!r}"
    assert ours == scanned, f"SCAN MATCH {pattern!r}"


_SINGLE_BYTE_KEYS = {bytes([b]) for b in range(256)}
_class_bytes = st.lists(st.sampled_from([*b"]^-\\ac", *_HIGH, 0x00, 0x7F, 0x5F]), max_size=6)


@settings(max_examples=150, deadline=None, database=None)
@given(body=_class_bytes.map(bytes), tail=st.sampled_from([b"", b"]", b"]*", b"*"]))
def test_classes_match_real_redis(server: redis.Redis, body: bytes, tail: bytes) -> None:
    # Every single-byte key, so the whole membership of each class is compared.
    pattern = b"[" + body + tail
    found, scanned = _server_keys(server, _SINGLE_BYTE_KEYS, pattern)
    match = compile_glob(pattern)
    ours = {key for key in _SINGLE_BYTE_KEYS if match(key)}
    assert ours == found, f"KEYS {pattern!r}"
    assert ours == scanned, f"SCAN MATCH {pattern!r}"
