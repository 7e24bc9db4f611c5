"""Protocol v5 framing: frames travel inside checksummed segments once a connection is ready.

Written from ``doc/native_protocol_v5.spec`` (section 2, "Framing"). A segment is
a 3-byte little-endian header (payload length: 17 bits, then the
self-contained flag), the header's CRC24 (3 bytes), the payload and the
payload's CRC32 (4 bytes). A self-contained segment holds one or more whole
frames; a frame longer than the 128 KiB payload limit is cut across segments
that are not self-contained. Compressed segments (5-byte header) are not
offered: the SUPPORTED answer lists no compression.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

MAX_PAYLOAD: Final = 128 * 1024 - 1
HEADER_SIZE: Final = 3
CRC24_SIZE: Final = 3
CRC32_SIZE: Final = 4
_SELF_CONTAINED: Final = 1 << 17

_CRC24_INIT: Final = 0x875060
_CRC24_POLY: Final = 0x1974F0B
# The spec's CRC32 is zlib's, started as if these four bytes came first.
_CRC32_SEED: Final = zlib.crc32(b"\xfa\x2d\x55\xca")


class SegmentError(Exception):
    """A segment whose checksum does not match: the connection cannot go on."""


def _crc24_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
        table.append(crc & 0xFFFFFF)
    return table


_TABLE: Final = _crc24_table()


def crc24(value: int, length: int = HEADER_SIZE) -> int:
    """CRC24 of ``length`` bytes of ``value``, least significant byte first (as sent)."""
    crc = _CRC24_INIT
    for _ in range(length):
        crc = ((crc << 8) & 0xFFFFFF) ^ _TABLE[((crc >> 16) ^ value) & 0xFF]
        value >>= 8
    return crc


def crc32(payload: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(payload, _CRC32_SEED)


def _segment(payload: bytes, self_contained: bool) -> bytes:
    header = len(payload) | (_SELF_CONTAINED if self_contained else 0)
    return b"".join(
        (
            header.to_bytes(HEADER_SIZE, "little"),
            crc24(header).to_bytes(CRC24_SIZE, "little"),
            payload,
            crc32(payload).to_bytes(CRC32_SIZE, "little"),
        )
    )


def encode(frames: Sequence[bytes], version_byte: int) -> bytes:
    """Whole frames packed into segments, each frame's version byte set to ``version_byte``.

    The frame encoders write v4's response version; the byte is replaced while
    the payload is joined anyway, so a v5 answer costs no extra copy.
    """
    head = bytes([version_byte])
    segments: list[bytes] = []
    batch: list[bytes | memoryview] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size
        if batch:
            segments.append(_segment(b"".join(batch), True))
            batch, size = [], 0

    for frame in frames:
        if len(frame) > MAX_PAYLOAD:
            flush()
            whole = head + memoryview(frame)[1:]
            for start in range(0, len(whole), MAX_PAYLOAD):
                segments.append(_segment(whole[start : start + MAX_PAYLOAD], False))
            continue
        if size + len(frame) > MAX_PAYLOAD:
            flush()
        batch.append(head)
        batch.append(memoryview(frame)[1:])
        size += len(frame)
    flush()
    return segments[0] if len(segments) == 1 else b"".join(segments)


class SegmentReader:
    """Turns the bytes of a v5 connection back into the frame bytes its segments carry."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The payloads of every segment completed by ``data``, in order.

        Raises ``SegmentError`` on a checksum mismatch.
        """
        if self._pending:
            self._pending += data
            buffer: bytes | bytearray = self._pending
        else:
            buffer = data
        payloads: list[bytes] = []
        pos = 0
        size = len(buffer)
        prefix = HEADER_SIZE + CRC24_SIZE
        while size - pos >= prefix:
            header = int.from_bytes(buffer[pos : pos + HEADER_SIZE], "little")
            expected = int.from_bytes(buffer[pos + HEADER_SIZE : pos + prefix], "little")
            if crc24(header) != expected:
                raise SegmentError(
                    f"CRC mismatch on a segment header: received {expected:06x}, "
                    f"computed {crc24(header):06x}"
                )
            length = header & MAX_PAYLOAD
            end = pos + prefix + length + CRC32_SIZE
            if end > size:
                break
            payload = bytes(buffer[pos + prefix : pos + prefix + length])
            received = int.from_bytes(buffer[end - CRC32_SIZE : end], "little")
            if crc32(payload) != received:
                raise SegmentError(
                    f"CRC mismatch on a segment payload: received {received:08x}, "
                    f"computed {crc32(payload):08x}"
                )
            payloads.append(payload)
            pos = end
        rest = buffer[pos:]
        self._pending = bytearray(rest)
        return payloads[0] if len(payloads) == 1 else b"".join(payloads)
