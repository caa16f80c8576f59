# Redis-compatible glob matching (the `KEYS pattern` / `SCAN ... MATCH pattern` rules).
#
# Theory.  Redis 7's stringmatchlen (util.c) reads the pattern strictly left to right, and how
# it splits the pattern into tokens depends only on the pattern, never on the key.  Every token
# except `*` consumes exactly one key byte, and so it is simply a set of allowed bytes: a
# literal, `\x`, `?` (all 256), or a `[...]` class, which we evaluate once for all 256 bytes,
# reproducing the C quirks (signed-char ranges, `[a-]` being a range up to `]`, unclosed
# classes, `[]` matching nothing).  A run of `*`s matches any run of bytes.  A pattern is thus
# `S0 * S1 * ... * Sk`, where each S is a fixed-length sequence of byte sets.  Such a pattern
# matches iff S0 matches at the start, Sk at the end, and each middle S at its LEFTMOST place
# after the previous one; taking the leftmost place never hurts, because everything after it
# then has as much room as possible.  So we compile to a `re` bytes regex with the middle
# segments in atomic groups `(?>.*?S)`.  This gives the same answers as Redis's recursive
# backtracking, but the regex never backtracks exponentially.  Two things are not regex-shaped:
# (1) the C loop needs a non-empty key, so an empty key matches only the empty pattern, except
# that KEYS/SCAN treat the pattern that is exactly `*` as "all keys"; (2) the CVE-2022-36021
# guard makes the recursion give up at nesting depth 1000, so if a 1001st `*` group is followed
# by anything else, no key can match.
from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["compile_glob"]

_MAX_NESTING = 1000  # util.c: `if (nesting > 1000) return 0;`

_ALL_BYTES = bytes(range(256))
_STAR_BYTE, _QUERY, _LBRACKET, _RBRACKET = b"*"[0], b"?"[0], b"["[0], b"]"[0]
_BACKSLASH, _CARET, _DASH = b"\\"[0], b"^"[0], b"-"[0]


def _class(pattern: bytes, i: int) -> tuple[bytes, int]:
    """Parse the class whose '[' is at pattern[i].

    Returns the set of bytes it matches and the index just after the class.
    """
    n = len(pattern)
    i += 1
    # In C, pattern[n] is the NUL that ends the string, which is never '^', '\\' or ']'.
    negate = i < n and pattern[i] == _CARET
    if negate:
        i += 1
    member = bytearray(256)
    while True:
        if i < n and pattern[i] == _BACKSLASH and n - i >= 2:
            i += 1
            member[pattern[i]] = 1
        elif i < n and pattern[i] == _RBRACKET:
            break
        elif i >= n:  # unclosed class: it ends with the pattern
            i = n - 1
            break
        elif n - i >= 3 and pattern[i + 1] == _DASH:
            # C compares `char`s, signed on x86: XOR with 0x80 gives the same order as
            # unsigned bytes.  Reversed ranges are swapped.
            lo, hi = sorted((pattern[i] ^ 0x80, pattern[i + 2] ^ 0x80))
            for t in range(lo, hi + 1):
                member[t ^ 0x80] = 1
            i += 2
        else:
            member[pattern[i]] = 1
        i += 1
    if negate:
        member = bytearray(1 - m for m in member)
    return bytes(b for b in range(256) if member[b]), i + 1


def _tokens(pattern: bytes) -> list[bytes | None]:
    """Split pattern into None (for each run of '*') and sets of bytes (one key byte each)."""
    tokens: list[bytes | None] = []
    n = len(pattern)
    i = 0
    while i < n:
        c = pattern[i]
        if c == _STAR_BYTE:
            while i < n and pattern[i] == _STAR_BYTE:
                i += 1
            tokens.append(None)
        elif c == _QUERY:
            tokens.append(_ALL_BYTES)
            i += 1
        elif c == _LBRACKET:
            allowed, i = _class(pattern, i)
            tokens.append(allowed)
        elif c == _BACKSLASH and n - i >= 2:
            tokens.append(pattern[i + 1 : i + 2])
            i += 2
        else:  # a literal, including a lone trailing backslash
            tokens.append(pattern[i : i + 1])
            i += 1
    return tokens


def _atom(allowed: bytes) -> bytes:
    """A regex (for re.DOTALL) that matches exactly one byte from the sorted set `allowed`."""
    if len(allowed) == 256:
        return b"."
    if not allowed:
        return b"(?!)"
    if len(allowed) == 1:
        return b"\\x%02x" % allowed[0]
    parts = []
    start = prev = allowed[0]
    for b in [*allowed[1:], -1]:
        if b != prev + 1:
            if start == prev:
                parts.append(b"\\x%02x" % start)
            else:
                parts.append(b"\\x%02x-\\x%02x" % (start, prev))
            start = b
        prev = b
    return b"[" + b"".join(parts) + b"]"


def _never(key: bytes) -> bool:
    return False


def _always(key: bytes) -> bool:
    return True


def _is_empty(key: bytes) -> bool:
    return not key


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """Return a predicate deciding whether a key matches `pattern` like Redis 7 KEYS/SCAN.

    Matching is case-sensitive and byte-exact (Redis 7.0 `stringmatchlen`, nocase=0).
    """
    if pattern == b"*":  # KEYS/SCAN special case: all keys, the empty key included
        return _always
    if not pattern:
        return _is_empty
    tokens = _tokens(pattern)
    segments: list[list[bytes]] = [[]]
    for token in tokens:
        if token is None:
            segments.append([])
        else:
            segments[-1].append(token)
    stars = len(segments) - 1
    if stars > _MAX_NESTING and (stars > _MAX_NESTING + 1 or segments[-1]):
        # The recursion for the 1001st '*' run is cut off, and as more pattern follows it,
        # the match can never complete.
        return _never
    if any(t is not None and not t for t in tokens):
        return _never  # a class such as `[]` matches no byte at all
    regex = [b"".join(_atom(t) for t in segments[0])]
    if stars:
        for segment in segments[1:-1]:
            if segment:
                regex.append(b"(?>.*?" + b"".join(_atom(t) for t in segment) + b")")
        if segments[-1]:
            regex.append(b".*" + b"".join(_atom(t) for t in segments[-1]))
    compiled = re.compile(b"".join(regex), re.DOTALL)
    if stars and not segments[-1]:
        # A trailing '*' absorbs whatever is left, so a match of the prefix is enough.
        prefix_match = compiled.match

        def match_prefix(key: bytes) -> bool:
            return bool(key) and prefix_match(key) is not None

        return match_prefix

    full_match = compiled.fullmatch

    def match_full(key: bytes) -> bool:
        return bool(key) and full_match(key) is not None

    return match_full
