"""The Murmur3Partitioner token of a partition key, bit for bit as Cassandra computes it.

Cassandra's MurmurHash3 (x64, 128-bit, seed 0) reads the trailing bytes as
*signed* Java bytes, so it differs from the reference hash for keys whose tail
has bytes >= 0x80; drivers route by this exact value, so we reproduce it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

_MASK = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F
_MIN_LONG = -(1 << 63)
_MAX_LONG = (1 << 63) - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK
    k ^= k >> 33
    return k


def _mix_k1(k1: int) -> int:
    k1 = (k1 * _C1) & _MASK
    k1 = _rotl(k1, 31)
    return (k1 * _C2) & _MASK


def _mix_k2(k2: int) -> int:
    k2 = (k2 * _C2) & _MASK
    k2 = _rotl(k2, 33)
    return (k2 * _C1) & _MASK


def _tail_word(tail: bytes) -> int:
    """Assemble up to 8 tail bytes little-endian, each sign-extended like Java's byte."""
    word = 0
    for shift, byte in enumerate(tail):
        signed = byte - 256 if byte >= 128 else byte
        word ^= (signed << (8 * shift)) & _MASK
    return word


def python_murmur3_token(key: bytes) -> int:
    """The signed 64-bit token Murmur3Partitioner assigns to a serialized partition key."""
    length = len(key)
    h1 = h2 = 0
    blocks = length // 16
    for i in range(blocks):
        k1 = int.from_bytes(key[i * 16 : i * 16 + 8], "little")
        k2 = int.from_bytes(key[i * 16 + 8 : i * 16 + 16], "little")
        h1 ^= _mix_k1(k1)
        h1 = (_rotl(h1, 27) + h2) & _MASK
        h1 = (h1 * 5 + 0x52DCE729) & _MASK
        h2 ^= _mix_k2(k2)
        h2 = (_rotl(h2, 31) + h1) & _MASK
        h2 = (h2 * 5 + 0x38495AB5) & _MASK
    tail = key[blocks * 16 :]
    if len(tail) > 8:
        h2 ^= _mix_k2(_tail_word(tail[8:]))
    if tail:
        h1 ^= _mix_k1(_tail_word(tail[:8]))
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & _MASK
    token = h1 - (1 << 64) if h1 >= (1 << 63) else h1
    # The partitioner reserves Long.MIN_VALUE as the minimum token.
    return _MAX_LONG if token == _MIN_LONG else token


def partition_key_bytes(components: list[bytes]) -> bytes:
    """The bytes a partition key is hashed as: the value, or a composite of all parts."""
    if len(components) == 1:
        return components[0]
    return b"".join(len(part).to_bytes(2, "big") + part + b"\x00" for part in components)


def _driver_token(key: bytes) -> int:
    token = _driver_murmur3(key)
    return _MAX_LONG if token == _MIN_LONG else token


try:  # the driver's C hash (the one it routes by) costs ~0.1 us where pure Python costs ~2
    from cassandra.cmurmur3 import murmur3 as _driver_murmur3  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the driver is built without its extensions
    # Bounded, as keys come from clients; a write that re-creates a partition hits it.
    murmur3_token: Callable[[bytes], int] = functools.lru_cache(maxsize=1 << 16)(
        python_murmur3_token
    )
else:
    murmur3_token = _driver_token
