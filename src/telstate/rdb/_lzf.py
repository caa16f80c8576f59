"""LZF decompression, as used for strings in Redis RDB files.

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

__all__ = ["lzf_decompress"]


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
