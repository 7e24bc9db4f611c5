"""Protocol v5 segments for the loop transport: frames packed per flush, unpacked per frame.

With protocol v5 (the driver's default against Cassandra 4) every frame travels
inside a checksummed segment. The driver writes each request as a segment of
its own, with a header CRC24 computed bit by bit in Python, and on reading it
decodes every frame of a segment in one call. On the loop both cost: a server
packs a hundred small responses into one segment, and decoding them in one go
is one long loop turn (median heartbeat lateness 34 ms with 120 busy tasks,
against 3 ms with v4's bare frames). Here:

- writing: the frames queued for one loop turn become as few self-contained
  segments as the 128 KiB limit allows (what Cassandra does too), one CRC32
  over the lot, and header CRCs come from a cache (a header is just a length);
- reading: segments are checked and their payloads appended to a frame buffer,
  which the transport decodes frame by frame within its time slice.

The checksum functions are the driver's own; only the packing is ours.
Compressed segments (lz4) unpack through the driver's codec; writes then keep
the driver's own per-message encoding.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Any, Final

from cassandra.connection import CrcMismatchException  # type: ignore[import-untyped]
from cassandra.segment import (  # type: ignore[import-untyped]
    CRC24_LENGTH,
    CRC32_INITIAL,
    CRC32_LENGTH,
    Segment,
    compute_crc24,
)

__all__ = ["FRAMES_AS_IS", "SegmentReader", "pack"]

MAX_PAYLOAD: Final[int] = Segment.MAX_PAYLOAD_LENGTH
_HEADER: Final = 3  # uncompressed segment header: 17 bits of length, the self-contained flag
_SELF_CONTAINED: Final = 1 << 17
_crc32 = zlib.crc32


@lru_cache(maxsize=4096)
def header_crc(header: int, length: int) -> int:
    """The driver's CRC24 of a segment header, cached: headers repeat (a length and a flag)."""
    return int(compute_crc24(header, length))


def _segment_into(out: list[bytes], payload: bytes, self_contained: bool) -> None:
    header = len(payload) | (_SELF_CONTAINED if self_contained else 0)
    out.append(header.to_bytes(_HEADER, "little"))
    out.append(header_crc(header, _HEADER).to_bytes(CRC24_LENGTH, "little"))
    out.append(payload)
    out.append(_crc32(payload, CRC32_INITIAL).to_bytes(CRC32_LENGTH, "little"))


def pack(frames: list[bytes]) -> bytes:
    """Whole frames as uncompressed segments: self-contained ones holding as many frames as
    fit, and a frame over the payload limit cut across segments that are not."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        n = len(frame)
        if size + n > MAX_PAYLOAD and batch:
            _segment_into(out, b"".join(batch), True)
            batch, size = [], 0
        if n > MAX_PAYLOAD:
            for start in range(0, n, MAX_PAYLOAD):
                _segment_into(out, frame[start : start + MAX_PAYLOAD], False)
            continue
        batch.append(frame)
        size += n
    if batch:
        _segment_into(out, batch[0] if len(batch) == 1 else b"".join(batch), True)
    return b"".join(out)


class _FramesAsIs:
    """Stands in for the driver's segment codec on send: the frame goes to `push` bare, and
    the transport packs everything queued for the turn into segments (`pack`)."""

    compression = False

    @staticmethod
    def encode(buffer: Any, msg: bytes) -> None:
        buffer.write(msg)


FRAMES_AS_IS: Final = _FramesAsIs()


class SegmentReader:
    """Moves whole segments from the wire buffer into a frame buffer, checking both CRCs."""

    __slots__ = ("_codec", "_compressed", "_endpoint", "_header")

    def __init__(self, codec: Any, endpoint: Any) -> None:
        self._codec = codec  # the driver's codec: header length, decompression
        self._compressed = bool(codec.compression)
        self._header = int(codec.header_length)
        self._endpoint = endpoint

    def unpack(self, wire: bytearray, frames: bytearray) -> None:
        """Append the payload of every whole segment at the start of `wire` to `frames`.

        Raises the driver's `CrcMismatchException` (a `ConnectionException`) on a bad checksum.
        """
        header_size = self._header
        prefix = header_size + CRC24_LENGTH
        pos = 0
        size = len(wire)
        with memoryview(wire) as view:
            while size - pos >= prefix:
                header = int.from_bytes(view[pos : pos + header_size], "little")
                received = int.from_bytes(view[pos + header_size : pos + prefix], "little")
                if header_crc(header, header_size) != received:
                    raise CrcMismatchException(
                        f"CRC mismatch on a segment header: received {received:x}, "
                        f"computed {header_crc(header, header_size):x}",
                        self._endpoint,
                    )
                length = header & MAX_PAYLOAD
                end = pos + prefix + length + CRC32_LENGTH
                if end > size:
                    break
                payload = view[pos + prefix : end - CRC32_LENGTH]
                received = int.from_bytes(view[end - CRC32_LENGTH : end], "little")
                if _crc32(payload, CRC32_INITIAL) != received:
                    raise CrcMismatchException(
                        f"CRC mismatch on a segment payload: received {received:x}, "
                        f"computed {_crc32(payload, CRC32_INITIAL):x}",
                        self._endpoint,
                    )
                if self._compressed and (uncompressed := (header >> 17) & MAX_PAYLOAD) > 0:
                    frames += self._codec.decompress(bytes(payload), uncompressed)
                else:
                    frames += payload
                payload.release()  # `wire` can only shrink once no view of it is left
                pos = end
        if pos:
            del wire[:pos]
