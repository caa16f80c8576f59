"""An LZF compressor, for making test files with compressed strings.

telstate only reads LZF (Redis compresses strings in RDB files; telstate's writer
never does), so the encoder lives with the tests: they check it against the
decoder and against redis-server, which loads what it produces.
"""

from __future__ import annotations

__all__ = ["lzf_compress"]

_MAX_LITERAL = 32
_MAX_OFFSET = 1 << 13
_MIN_MATCH = 3
_MAX_MATCH = 7 + 255 + 2


def _emit_literals(out: bytearray, data: bytes, start: int, end: int) -> None:
    while start < end:
        run = min(_MAX_LITERAL, end - start)
        out.append(run - 1)
        out += data[start : start + run]
        start += run


def _match_length(data: bytes, ref: int, pos: int, limit: int) -> int:
    """Length (>= _MIN_MATCH, <= limit) of the common prefix of data[ref:] and data[pos:]."""
    low = _MIN_MATCH  # known to match
    high = limit
    # Binary search on slice equality: a few C-speed comparisons per match.
    while low < high:
        mid = (low + high + 1) // 2
        if data[ref + low : ref + mid] == data[pos + low : pos + mid]:
            low = mid
        else:
            high = mid - 1
    return low


def lzf_compress(data: bytes | bytearray | memoryview) -> bytes:
    """Compress ``data`` to a valid LZF stream (decodable by Redis and liblzf).

    A simple greedy compressor with a hash of 3-byte sequences; not tuned for speed.
    """
    src = bytes(data)
    n = len(src)
    out = bytearray()
    last_seen: dict[bytes, int] = {}
    literal_start = 0
    pos = 0
    while pos + _MIN_MATCH <= n:
        key = src[pos : pos + _MIN_MATCH]
        ref = last_seen.get(key)
        last_seen[key] = pos
        if ref is None or pos - ref > _MAX_OFFSET:
            pos += 1
            continue
        length = _match_length(src, ref, pos, min(_MAX_MATCH, n - pos))
        _emit_literals(out, src, literal_start, pos)
        offset = pos - ref - 1
        code = length - 2
        if code < 7:
            out.append(code << 5 | offset >> 8)
        else:
            out.append(7 << 5 | offset >> 8)
            out.append(code - 7)
        out.append(offset & 0xFF)
        # Remember a couple of positions inside the match for later references.
        end = pos + length
        for inner in (end - 2, end - 1):
            if inner > pos and inner + _MIN_MATCH <= n:
                last_seen[src[inner : inner + _MIN_MATCH]] = inner
        pos = end
        literal_start = pos
    _emit_literals(out, src, literal_start, n)
    return bytes(out)
