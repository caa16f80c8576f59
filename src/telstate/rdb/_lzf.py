"""LZF (de)compression as used for strings in Redis RDB files.

Redis stores a compressed string as the byte 0xC3, the compressed length, the original
length, then the LZF data.  An LZF stream is a sequence of tokens, by control byte ``c``:

* ``c < 0x20``: a literal run; the next ``c + 1`` bytes are copied to the output.
* otherwise a back-reference: ``length = c >> 5`` (if 7, add the next byte), then
  ``offset = ((c & 0x1f) << 8 | next byte) + 1``; copy ``length + 2`` bytes starting
  ``offset`` bytes back in the output.  The copy may overlap the bytes it produces (a
  repeating pattern of period ``offset``).

The decoder checks everything and raises ``ValueError`` on corrupt input; it never writes
more than ``expected_length`` bytes.
"""

from __future__ import annotations

__all__ = ["lzf_compress", "lzf_decompress"]

_MAX_LITERAL = 32
_MAX_OFFSET = 1 << 13
_MIN_MATCH = 3
_MAX_MATCH = 7 + 255 + 2


def lzf_decompress(data: bytes | bytearray | memoryview, expected_length: int) -> bytes:
    """Decompress LZF ``data`` that must expand to exactly ``expected_length`` bytes.

    The output never grows beyond ``expected_length`` bytes, whatever the input, and
    nothing is allocated up front, so a wrong ``expected_length`` costs nothing.

    Raises
    ------
    ValueError
        If the data is corrupt: truncated, a back-reference before the start of the
        output, or output longer or shorter than ``expected_length``.
    """
    if expected_length < 0:
        raise ValueError(f"LZF: negative expected length {expected_length}")
    src = bytes(data)
    n = len(src)
    out = bytearray()
    op = 0  # == len(out)
    ip = 0
    while ip < n:
        ctrl = src[ip]
        ip += 1
        if ctrl < 0x20:
            end = ip + ctrl + 1
            if end > n:
                raise ValueError(
                    f"LZF: truncated data: literal run of {ctrl + 1} bytes at input offset "
                    f"{ip - 1} but only {n - ip} bytes left"
                )
            op += ctrl + 1
            if op > expected_length:
                raise ValueError(f"LZF: output longer than the expected {expected_length} bytes")
            out += src[ip:end]
            ip = end
            continue
        length = (ctrl >> 5) + 2
        if length == 9:
            if ip >= n:
                raise ValueError(f"LZF: truncated data: back-reference cut short at byte {n}")
            length += src[ip]
            ip += 1
        if ip >= n:
            raise ValueError(f"LZF: truncated data: back-reference cut short at byte {n}")
        offset = ((ctrl & 0x1F) << 8 | src[ip]) + 1
        ip += 1
        start = op - offset
        if start < 0:
            raise ValueError(
                f"LZF: back-reference {offset} bytes back at output offset {op}, "
                "before the start of the output"
            )
        if op + length > expected_length:
            raise ValueError(f"LZF: output longer than the expected {expected_length} bytes")
        if length <= offset:
            out += out[start : start + length]
        else:
            # The copy overlaps its own output: a pattern of period `offset`.
            reps, rest = divmod(length, offset)
            pattern = out[start:op]
            out += pattern * reps
            out += pattern[:rest]
        op += length
    if op != expected_length:
        raise ValueError(f"LZF: data expands to {op} bytes, not the expected {expected_length}")
    return bytes(out)


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
