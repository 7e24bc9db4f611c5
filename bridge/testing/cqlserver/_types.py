"""CQL data types: their wire format (native protocol section 6), their literals and order.

Python values follow one convention everywhere in the engine: text -> ``str``,
integers -> ``int``, ``boolean`` -> ``bool``, ``float``/``double`` -> ``float``,
``decimal`` -> ``Decimal``, ``uuid``/``timeuuid`` -> ``UUID``, ``timestamp`` ->
milliseconds since the epoch, ``date`` -> days since the epoch, ``time`` ->
nanoseconds since midnight, ``blob`` -> ``bytes``, ``inet`` -> ``ipaddress``
address, ``list`` -> ``list``, ``set`` -> a sorted, duplicate-free ``list``,
``map`` -> a list of ``(key, value)`` pairs sorted by key.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import struct
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeAlias

from ._errors import Invalid

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_DATE_CENTER = 1 << 31
_NANOS_PER_DAY = 86_400 * 1_000_000_000


class CQLType(ABC):
    """One CQL type: how its values look in Python, on the wire and in CQL text."""

    type_id: int
    name: str
    is_collection: ClassVar[bool] = False
    # Whether every value has exactly one encoding, so bound bytes that decode fine can
    # stand for the value as they came (a prepared write keys its partition by them).
    canonical: ClassVar[bool] = False

    def option(self) -> bytes:
        """The ``[option]`` that describes this type in result and bind metadata."""
        return struct.pack(">H", self.type_id)

    @abstractmethod
    def serialize(self, value: object) -> bytes:
        """Python value -> value bytes (without the length prefix)."""

    @abstractmethod
    def deserialize(self, data: bytes) -> object:
        """Value bytes -> Python value; raises ``Invalid`` on malformed bytes."""

    @abstractmethod
    def from_constant(self, kind: str, text: str) -> object:
        """The Python value of a CQL constant (``kind`` as the tokenizer saw it)."""

    def sort_key(self, value: object) -> Any:
        """A key that orders values the way Cassandra's comparator for this type does."""
        return value

    def __repr__(self) -> str:
        return f"CQLType({self.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CQLType) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def _bad_constant(self, kind: str, text: str) -> Invalid:
        return Invalid(f"Invalid {kind.upper()} constant ({text}) for type {self.name}")

    def _bad_value(self, value: object) -> Invalid:
        return Invalid(f"Invalid value {value!r} for type {self.name}")

    def _bad_size(self, expected: str, data: bytes) -> Invalid:
        return Invalid(f"Expected {expected} byte {self.name} ({len(data)})")


class _Text(CQLType):
    canonical = True

    def __init__(self, name: str, type_id: int, ascii_only: bool) -> None:
        self.name = name
        self.type_id = type_id
        self._ascii = ascii_only

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise self._bad_value(value)
        try:
            return value.encode("ascii" if self._ascii else "utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"Invalid {self.name} value {value!r}") from None

    def deserialize(self, data: bytes) -> object:
        try:
            return data.decode("ascii" if self._ascii else "utf-8")
        except UnicodeDecodeError:
            raise Invalid(f"Invalid {'ASCII' if self._ascii else 'UTF-8'} bytes") from None

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "string":
            raise self._bad_constant(kind, text)
        self.serialize(text)
        return text

    def sort_key(self, value: object) -> Any:
        return self.serialize(value)


class _Integer(CQLType):
    canonical = True

    def __init__(self, name: str, type_id: int, size: int) -> None:
        self.name = name
        self.type_id = type_id
        self._size = size
        self._bits = size * 8

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad_value(value)
        if not -(1 << (self._bits - 1)) <= value < (1 << (self._bits - 1)):
            raise Invalid(f"Value {value} is out of range for type {self.name}")
        return value.to_bytes(self._size, "big", signed=True)

    def deserialize(self, data: bytes) -> object:
        if len(data) != self._size:
            raise self._bad_size(f"{self._size} or 0", data)
        return int.from_bytes(data, "big", signed=True)

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "integer":
            raise self._bad_constant(kind, text)
        value = int(text)
        self.serialize(value)
        return value


class _Varint(CQLType):
    type_id = 0x000E
    name = "varint"

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad_value(value)
        return _varint_bytes(value)

    def deserialize(self, data: bytes) -> object:
        return int.from_bytes(data, "big", signed=True)

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "integer":
            raise self._bad_constant(kind, text)
        return int(text)


def _varint_bytes(value: int) -> bytes:
    magnitude = value if value >= 0 else ~value
    return value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


class _Boolean(CQLType):
    type_id = 0x0004
    name = "boolean"

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, bool):
            raise self._bad_value(value)
        return b"\x01" if value else b"\x00"

    def deserialize(self, data: bytes) -> object:
        if len(data) != 1:
            raise self._bad_size("1 or 0", data)
        return data != b"\x00"

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "boolean":
            raise self._bad_constant(kind, text)
        return text.lower() == "true"


class _Floating(CQLType):
    def __init__(self, name: str, type_id: int, fmt: str) -> None:
        self.name = name
        self.type_id = type_id
        self._fmt = fmt
        self._size = struct.calcsize(fmt)

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._bad_value(value)
        try:
            return struct.pack(self._fmt, value)
        except (OverflowError, struct.error):
            raise Invalid(f"Value {value} is out of range for type {self.name}") from None

    def deserialize(self, data: bytes) -> object:
        if len(data) != self._size:
            raise self._bad_size(f"{self._size} or 0", data)
        value: float = struct.unpack(self._fmt, data)[0]
        return value

    def from_constant(self, kind: str, text: str) -> object:
        if kind not in ("integer", "float"):
            raise self._bad_constant(kind, text)
        value = float(text)
        # Round to what the column stores, so a literal reads back as it was written.
        return self.deserialize(self.serialize(value))

    def sort_key(self, value: object) -> Any:
        assert isinstance(value, float | int)
        if math.isnan(value):
            return (1, 0.0, 0.0)
        return (0, value, math.copysign(1.0, value))


class _Decimal(CQLType):
    type_id = 0x0006
    name = "decimal"

    def serialize(self, value: object) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        if not isinstance(value, Decimal) or not value.is_finite():
            raise self._bad_value(value)
        sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        unscaled = int("".join(map(str, digits)) or "0")
        if sign:
            unscaled = -unscaled
        return struct.pack(">i", -exponent) + _varint_bytes(unscaled)

    def deserialize(self, data: bytes) -> object:
        if len(data) < 5:
            raise self._bad_size("at least 5", data)
        scale: int = struct.unpack(">i", data[:4])[0]
        unscaled = int.from_bytes(data[4:], "big", signed=True)
        digits = tuple(int(d) for d in str(abs(unscaled)))
        return Decimal((1 if unscaled < 0 else 0, digits, -scale))

    def from_constant(self, kind: str, text: str) -> object:
        if kind not in ("integer", "float"):
            raise self._bad_constant(kind, text)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise self._bad_constant(kind, text) from None
        if not value.is_finite():
            raise self._bad_constant(kind, text)
        return value


class _Uuid(CQLType):
    canonical = True

    def __init__(self, name: str, type_id: int, time_based: bool) -> None:
        self.name = name
        self.type_id = type_id
        self._time_based = time_based

    def _check(self, value: uuid.UUID) -> uuid.UUID:
        if self._time_based and value.version != 1:
            raise Invalid(f"Unsupported UUID version for timeuuid: {value}")
        return value

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, uuid.UUID):
            raise self._bad_value(value)
        return self._check(value).bytes

    def deserialize(self, data: bytes) -> object:
        if len(data) != 16:
            raise self._bad_size("16 or 0", data)
        return self._check(uuid.UUID(bytes=data))

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "uuid":
            raise self._bad_constant(kind, text)
        return self._check(uuid.UUID(text))

    def sort_key(self, value: object) -> Any:
        assert isinstance(value, uuid.UUID)
        if self._time_based:
            return (value.time, value.bytes)
        # UUIDType orders by version first, then time-based ones by their time.
        version = value.version or 0
        return (version, value.time if version == 1 else 0, value.bytes)


_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(text: str) -> int:
    """``'2024-01-02 03:04:05.678+0000'`` (and its shorter forms) -> ms since the epoch.

    A timestamp without a zone is read as UTC, so tests do not depend on the host's zone.
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip())
    if match is None:
        raise Invalid(f"Unable to coerce '{text}' to a formatted date (long)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = datetime.UTC
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = datetime.timezone(offset if zone[0] == "+" else -offset)
    try:
        moment = datetime.datetime(
            int(year), int(month), int(day),
            int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0").ljust(6, "0")), tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        raise Invalid(f"Unable to coerce '{text}' to a formatted date (long)") from None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _Timestamp(CQLType):
    type_id = 0x000B
    name = "timestamp"
    canonical = True

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad_value(value)
        return struct.pack(">q", value)

    def deserialize(self, data: bytes) -> object:
        if len(data) != 8:
            raise self._bad_size("8 or 0", data)
        value: int = struct.unpack(">q", data)[0]
        return value

    def from_constant(self, kind: str, text: str) -> object:
        if kind == "integer":
            return int(text)
        if kind == "string":
            if text.lstrip("-").isdigit():
                return int(text)
            return parse_timestamp(text)
        raise self._bad_constant(kind, text)


class _Date(CQLType):
    type_id = 0x0011
    name = "date"
    canonical = True

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad_value(value)
        if not -_DATE_CENTER <= value < _DATE_CENTER:
            raise Invalid(f"Date {value} is out of range")
        return struct.pack(">I", value + _DATE_CENTER)

    def deserialize(self, data: bytes) -> object:
        if len(data) != 4:
            raise self._bad_size("4 or 0", data)
        raw: int = struct.unpack(">I", data)[0]
        return raw - _DATE_CENTER

    def from_constant(self, kind: str, text: str) -> object:
        # As in Cassandra, a bare number is the unsigned, 2^31-centred day count.
        if kind == "integer" or (kind == "string" and text.isdigit()):
            raw = int(text)
            if not 0 <= raw < (1 << 32):
                raise Invalid(f"Unable to coerce '{text}' to a formatted date (long)")
            return raw - _DATE_CENTER
        if kind != "string":
            raise self._bad_constant(kind, text)
        try:
            day = datetime.date.fromisoformat(text.strip())
        except ValueError:
            raise Invalid(f"Unable to coerce '{text}' to a formatted date (long)") from None
        return (day - datetime.date(1970, 1, 1)).days


_TIME_RE = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")


class _Time(CQLType):
    type_id = 0x0012
    name = "time"
    canonical = True

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad_value(value)
        if not 0 <= value < _NANOS_PER_DAY:
            raise Invalid(f"Time {value} is out of range (0 to 86399999999999 ns)")
        return struct.pack(">q", value)

    def deserialize(self, data: bytes) -> object:
        if len(data) != 8:
            raise self._bad_size("8 or 0", data)
        value: int = struct.unpack(">q", data)[0]
        if not 0 <= value < _NANOS_PER_DAY:
            raise Invalid(f"Time {value} is out of range (0 to 86399999999999 ns)")
        return value

    def from_constant(self, kind: str, text: str) -> object:
        if kind == "integer" or (kind == "string" and text.isdigit()):
            value = int(text)
        elif kind == "string":
            match = _TIME_RE.fullmatch(text.strip())
            if match is None:
                raise Invalid(f"Unable to coerce '{text}' to a formatted time (long)")
            hour, minute, second, fraction = match.groups()
            if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
                raise Invalid(f"Unable to coerce '{text}' to a formatted time (long)")
            value = ((int(hour) * 60 + int(minute)) * 60 + int(second)) * 1_000_000_000
            value += int((fraction or "0").ljust(9, "0"))
        else:
            raise self._bad_constant(kind, text)
        self.serialize(value)
        return value


class _Blob(CQLType):
    canonical = True

    type_id = 0x0003
    name = "blob"

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise self._bad_value(value)
        return bytes(value)

    def deserialize(self, data: bytes) -> object:
        return bytes(data)

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "hex":
            raise self._bad_constant(kind, text)
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise self._bad_constant(kind, text) from None


class _Inet(CQLType):
    type_id = 0x0010
    name = "inet"

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise self._bad_value(value)
        return value.packed

    def deserialize(self, data: bytes) -> object:
        if len(data) not in (4, 16):
            raise self._bad_size("4 or 16", data)
        return ipaddress.ip_address(data)

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "string":
            raise self._bad_constant(kind, text)
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            raise Invalid(f"Unable to make inet address from '{text}'") from None

    def sort_key(self, value: object) -> Any:
        return self.serialize(value)


# --- collections ------------------------------------------------------------


def _pack_items(items: list[bytes]) -> bytes:
    parts = [struct.pack(">i", len(items))]
    for item in items:
        parts.append(struct.pack(">i", len(item)))
        parts.append(item)
    return b"".join(parts)


def _unpack_items(data: bytes, per_entry: int, type_name: str) -> list[bytes]:
    """Split a collection body into its element bytes; ``per_entry`` is 2 for maps."""
    try:
        (count,) = struct.unpack_from(">i", data, 0)
        offset = 4
        items: list[bytes] = []
        for _ in range(count * per_entry):
            (size,) = struct.unpack_from(">i", data, offset)
            offset += 4
            if size < 0:
                raise Invalid(f"null is not supported inside collections ({type_name})")
            if offset + size > len(data):
                raise struct.error("truncated")
            items.append(data[offset : offset + size])
            offset += size
    except struct.error:
        raise Invalid(f"Not enough bytes to read a {type_name}") from None
    if offset != len(data):
        raise Invalid(f"Unexpected extraneous bytes after {type_name} value")
    return items


class CollectionType(CQLType):
    """list, set and map; ``frozen`` ones are written and read as one value."""

    is_collection = True

    def __init__(self, frozen: bool) -> None:
        self.frozen = frozen

    def _named(self, inner: str) -> str:
        return f"frozen<{inner}>" if self.frozen else inner

    def from_constant(self, kind: str, text: str) -> object:
        raise self._bad_constant(kind, text)

    def is_multi_cell(self) -> bool:
        return not self.frozen

    @abstractmethod
    def normalize(self, items: list[Any]) -> list[Any]:
        """Put items in this collection's canonical order (sets/maps: sorted, unique)."""


class ListType(CollectionType):
    type_id = 0x0020

    def __init__(self, element: CQLType, frozen: bool = False) -> None:
        super().__init__(frozen)
        self.element = element
        self.name = self._named(f"list<{element.name}>")

    def option(self) -> bytes:
        return super().option() + self.element.option()

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, list | tuple):
            raise self._bad_value(value)
        return _pack_items([self.element.serialize(item) for item in value])

    def deserialize(self, data: bytes) -> object:
        return [self.element.deserialize(b) for b in _unpack_items(data, 1, "list")]

    def normalize(self, items: list[Any]) -> list[Any]:
        return list(items)

    def sort_key(self, value: object) -> Any:
        assert isinstance(value, list)
        return tuple(self.element.sort_key(item) for item in value)


class SetType(CollectionType):
    type_id = 0x0022

    def __init__(self, element: CQLType, frozen: bool = False) -> None:
        super().__init__(frozen)
        self.element = element
        self.name = self._named(f"set<{element.name}>")

    def option(self) -> bytes:
        return super().option() + self.element.option()

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, list | tuple | set | frozenset):
            raise self._bad_value(value)
        items = self.normalize(list(value))
        return _pack_items([self.element.serialize(item) for item in items])

    def deserialize(self, data: bytes) -> object:
        return self.normalize([self.element.deserialize(b) for b in _unpack_items(data, 1, "set")])

    def normalize(self, items: list[Any]) -> list[Any]:
        unique = {self.element.serialize(item): item for item in items}
        return sorted(unique.values(), key=self.element.sort_key)

    def sort_key(self, value: object) -> Any:
        assert isinstance(value, list)
        return tuple(self.element.sort_key(item) for item in value)


class MapType(CollectionType):
    type_id = 0x0021

    def __init__(self, key: CQLType, value: CQLType, frozen: bool = False) -> None:
        super().__init__(frozen)
        self.key = key
        self.value = value
        self.name = self._named(f"map<{key.name}, {value.name}>")

    def option(self) -> bytes:
        return super().option() + self.key.option() + self.value.option()

    def serialize(self, value: object) -> bytes:
        if isinstance(value, dict):
            value = list(value.items())
        if not isinstance(value, list | tuple):
            raise self._bad_value(value)
        parts: list[bytes] = []
        for pair in self.normalize(list(value)):
            parts.append(self.key.serialize(pair[0]))
            parts.append(self.value.serialize(pair[1]))
        body = _pack_items(parts)
        # _pack_items counted entries, a map counts pairs.
        return struct.pack(">i", len(parts) // 2) + body[4:]

    def deserialize(self, data: bytes) -> object:
        raw = _unpack_items(data, 2, "map")
        pairs = [
            (self.key.deserialize(raw[i]), self.value.deserialize(raw[i + 1]))
            for i in range(0, len(raw), 2)
        ]
        return self.normalize(pairs)

    def normalize(self, items: list[Any]) -> list[Any]:
        for pair in items:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise self._bad_value(items)
        unique = {self.key.serialize(k): (k, v) for k, v in items}
        return sorted(unique.values(), key=lambda pair: self.key.sort_key(pair[0]))

    def sort_key(self, value: object) -> Any:
        assert isinstance(value, list)
        return tuple((self.key.sort_key(k), self.value.sort_key(v)) for k, v in value)


class _Duration(CQLType):
    """``duration``: (months, days, nanoseconds), each a signed vint on the wire.

    Cassandra refuses it in keys and comparisons; the sort key only serves set
    and map normalization.
    """

    name = "duration"
    type_id = 0x0015

    def serialize(self, value: object) -> bytes:
        if not isinstance(value, tuple) or len(value) != 3:
            raise self._bad_value(value)
        months, days, nanos = value
        signs = {m >= 0 for m in (months, days, nanos) if m} or {True}
        if len(signs) > 1:
            raise Invalid("The duration months, days and nanoseconds must be all of the same sign")
        return b"".join(_vint(int(part)) for part in (months, days, nanos))

    def deserialize(self, data: bytes) -> object:
        parts: list[int] = []
        position = 0
        for _ in range(3):
            value, position = _read_vint(data, position)
            parts.append(value)
        if position != len(data):
            raise Invalid("Invalid duration: trailing bytes")
        return tuple(parts)

    def from_constant(self, kind: str, text: str) -> object:
        if kind != "duration":
            raise self._bad_constant(kind, text)
        return parse_duration(text)


_DURATION_UNITS = {
    "y": (12, 0, 0),
    "mo": (1, 0, 0),
    "w": (0, 7, 0),
    "d": (0, 1, 0),
    "h": (0, 0, 3_600_000_000_000),
    "m": (0, 0, 60_000_000_000),
    "s": (0, 0, 1_000_000_000),
    "ms": (0, 0, 1_000_000),
    "us": (0, 0, 1_000),
    "µs": (0, 0, 1_000),
    "ns": (0, 0, 1),
}
_DURATION_PART_RE = re.compile(r"(\d+)(mo|ms|us|µs|ns|[ywdhms])", re.IGNORECASE)
_ISO_DURATION_RE = re.compile(
    r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> tuple[int, int, int]:
    """``1h30m``, ``-2d`` or ISO 8601 ``P1DT2H`` -> (months, days, nanoseconds)."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("-")
    months = days = nanos = 0
    iso = _ISO_DURATION_RE.match(body)
    if iso and body.upper().startswith("P") and len(body) > 1:
        y, mo, w, d, h, mi, sec = (int(g) if g else 0 for g in iso.groups())
        months, days, nanos = y * 12 + mo, w * 7 + d, ((h * 60 + mi) * 60 + sec) * 1_000_000_000
    else:
        position = 0
        for match in _DURATION_PART_RE.finditer(body):
            if match.start() != position:
                break
            position = match.end()
            unit = _DURATION_UNITS[match.group(2).lower()]
            amount = int(match.group(1))
            months += amount * unit[0]
            days += amount * unit[1]
            nanos += amount * unit[2]
        if position != len(body) or not body:
            raise Invalid(f"Unable to convert '{text}' to a duration")
    return sign * months, sign * days, sign * nanos


def _vint(value: int) -> bytes:
    """A signed vint: zig-zag, then the unsigned vint of the spec (length in leading ones)."""
    n = (value << 1) ^ (value >> 63)
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 6) // 7  # enough 7-bit groups
    size = min(max(size, 2), 9)
    extra = size - 1
    if extra == 8:
        return b"\xff" + n.to_bytes(8, "big")
    raw = n.to_bytes(size, "big")
    mask = (0xFF << (8 - extra)) & 0xFF
    return bytes([raw[0] | mask]) + raw[1:]


def _read_vint(data: bytes, position: int) -> tuple[int, int]:
    if position >= len(data):
        raise Invalid("Invalid duration: truncated")
    first = data[position]
    extra = 0
    while extra < 8 and first & (0x80 >> extra):
        extra += 1
    if position + 1 + extra > len(data):
        raise Invalid("Invalid duration: truncated")
    value = first & (0xFF >> (extra + 1)) if extra < 8 else 0
    for byte in data[position + 1 : position + 1 + extra]:
        value = (value << 8) | byte
    return (value >> 1) ^ -(value & 1), position + 1 + extra


def _pack_fields(cql_types: list[CQLType], value: object, what: str) -> bytes:
    """A tuple's or UDT's fields: each an [int]-length value, -1 for null."""
    if not isinstance(value, tuple | list) or len(value) > len(cql_types):
        raise Invalid(f"Invalid value {value!r} for type {what}")
    parts: list[bytes] = []
    for cql_type, item in zip(cql_types, value, strict=False):
        if item is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            raw = cql_type.serialize(item)
            parts.append(struct.pack(">i", len(raw)) + raw)
    return b"".join(parts)


def _unpack_fields(cql_types: list[CQLType], data: bytes) -> tuple[object, ...]:
    """Fields back; missing trailing ones (a UDT that gained fields) are null."""
    values: list[object] = []
    position = 0
    for cql_type in cql_types:
        if position >= len(data):
            values.append(None)
            continue
        if position + 4 > len(data):
            raise Invalid("Not enough bytes to read a tuple or UDT field")
        (size,) = struct.unpack_from(">i", data, position)
        position += 4
        if size < 0:
            values.append(None)
            continue
        if position + size > len(data):
            raise Invalid("Not enough bytes to read a tuple or UDT field")
        values.append(cql_type.deserialize(data[position : position + size]))
        position += size
    return tuple(values)


def _fields_sort_key(cql_types: list[CQLType], value: object) -> Any:
    assert isinstance(value, tuple | list)
    return tuple(
        (0,) if item is None else (1, cql_type.sort_key(item))
        for cql_type, item in zip(cql_types, value, strict=False)
    )


class TupleType(CQLType):
    """``tuple<int, text>``: always frozen; values are Python tuples (None for null fields)."""

    type_id = 0x0031

    def __init__(self, elements: list[CQLType]) -> None:
        self.elements = elements
        self.name = f"frozen<tuple<{', '.join(e.name for e in elements)}>>"

    def option(self) -> bytes:
        return (
            super().option()
            + struct.pack(">H", len(self.elements))
            + b"".join(e.option() for e in self.elements)
        )

    def serialize(self, value: object) -> bytes:
        return _pack_fields(self.elements, value, self.name)

    def deserialize(self, data: bytes) -> object:
        return _unpack_fields(self.elements, data)

    def from_constant(self, kind: str, text: str) -> object:
        raise self._bad_constant(kind, text)

    def sort_key(self, value: object) -> Any:
        return _fields_sort_key(self.elements, value)


class UserType(CQLType):
    """A user-defined type of one keyspace; values are tuples in field order.

    ALTER TYPE changes the one shared object, so every column using it sees the change.
    """

    type_id = 0x0030

    def __init__(
        self, keyspace: str, type_name: str, fields: list[tuple[str, CQLType]], frozen: bool = True
    ) -> None:
        self.keyspace = keyspace
        self.type_name = type_name
        self.fields = fields
        self.frozen = frozen
        self.name = f"frozen<{type_name}>" if frozen else type_name

    def with_frozen(self, frozen: bool) -> UserType:
        return UserType(self.keyspace, self.type_name, self.fields, frozen)

    def is_multi_cell(self) -> bool:
        return not self.frozen

    @property
    def field_types(self) -> list[CQLType]:
        return [t for _, t in self.fields]

    def option(self) -> bytes:
        parts = [super().option(), _string(self.keyspace), _string(self.type_name)]
        parts.append(struct.pack(">H", len(self.fields)))
        for field_name, field_type in self.fields:
            parts.append(_string(field_name))
            parts.append(field_type.option())
        return b"".join(parts)

    def serialize(self, value: object) -> bytes:
        if isinstance(value, dict):
            value = tuple(value.get(name) for name, _ in self.fields)
        return _pack_fields(self.field_types, value, self.name)

    def deserialize(self, data: bytes) -> object:
        return _unpack_fields(self.field_types, data)

    def from_constant(self, kind: str, text: str) -> object:
        raise self._bad_constant(kind, text)

    def sort_key(self, value: object) -> Any:
        return _fields_sort_key(self.field_types, value)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


# --- names ------------------------------------------------------------------

TEXT = _Text("text", 0x000D, ascii_only=False)
ASCII = _Text("ascii", 0x0001, ascii_only=True)
INT = _Integer("int", 0x0009, 4)
BIGINT = _Integer("bigint", 0x0002, 8)
SMALLINT = _Integer("smallint", 0x0013, 2)
TINYINT = _Integer("tinyint", 0x0014, 1)
COUNTER = _Integer("counter", 0x0005, 8)
VARINT = _Varint()
BOOLEAN = _Boolean()
FLOAT = _Floating("float", 0x0008, ">f")
DOUBLE = _Floating("double", 0x0007, ">d")
DECIMAL = _Decimal()
UUID = _Uuid("uuid", 0x000C, time_based=False)
TIMEUUID = _Uuid("timeuuid", 0x000F, time_based=True)
TIMESTAMP = _Timestamp()
DATE = _Date()
TIME = _Time()
BLOB = _Blob()
INET = _Inet()
DURATION = _Duration()

_NATIVE: dict[str, CQLType] = {
    "text": TEXT,
    "varchar": TEXT,
    "ascii": ASCII,
    "int": INT,
    "bigint": BIGINT,
    "smallint": SMALLINT,
    "tinyint": TINYINT,
    "counter": COUNTER,
    "varint": VARINT,
    "boolean": BOOLEAN,
    "float": FLOAT,
    "double": DOUBLE,
    "decimal": DECIMAL,
    "uuid": UUID,
    "timeuuid": TIMEUUID,
    "timestamp": TIMESTAMP,
    "date": DATE,
    "time": TIME,
    "blob": BLOB,
    "inet": INET,
    "duration": DURATION,
}


def native_type(name: str) -> CQLType | None:
    """The native type called ``name`` (lower case), or None."""
    return _NATIVE.get(name)


_TYPE_TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(<|>|,))")


UserTypes: TypeAlias = Mapping[str, UserType]


def parse_type(text: str, user_types: UserTypes | None = None) -> CQLType:
    """``"map<text, frozen<list<int>>>"`` -> its ``CQLType``; ``Invalid`` if unknown.

    ``user_types`` are the keyspace's user-defined types, by name.
    """
    tokens: list[str] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TYPE_TOKEN_RE.match(text, position)
        if match is None:
            raise Invalid(f"Unknown type {text.strip()}")
        tokens.append((match.group(1) or match.group(2)).lower())
        position = match.end()
    parsed, rest = _parse_type_tokens(tokens, text, user_types or {})
    if rest:
        raise Invalid(f"Unknown type {text.strip()}")
    return parsed


def _parse_type_tokens(
    tokens: list[str], text: str, user_types: UserTypes
) -> tuple[CQLType, list[str]]:
    if not tokens or tokens[0] in "<>,":
        raise Invalid(f"Unknown type {text.strip()}")
    head, rest = tokens[0], tokens[1:]
    if head in _NATIVE:
        return _NATIVE[head], rest
    if head in user_types and (not rest or rest[0] != "<"):
        return user_types[head].with_frozen(False), rest
    if head not in ("list", "set", "map", "frozen", "tuple") or not rest or rest[0] != "<":
        raise Invalid(f"Unknown type {text.strip()}")
    args: list[CQLType] = []
    rest = rest[1:]
    while True:
        arg, rest = _parse_type_tokens(rest, text, user_types)
        args.append(arg)
        if not rest:
            raise Invalid(f"Unknown type {text.strip()}")
        separator, rest = rest[0], rest[1:]
        if separator == ">":
            break
        if separator != ",":
            raise Invalid(f"Unknown type {text.strip()}")
    if head == "tuple":
        for arg in args:
            if _multi_cell(arg):
                raise Invalid(f"Non-frozen collections are not allowed inside tuples: {text}")
        return TupleType(args), rest
    expected = {"list": 1, "set": 1, "map": 2, "frozen": 1}[head]
    if len(args) != expected:
        raise Invalid(f"Unknown type {text.strip()}")
    if head == "frozen":
        (inner,) = args
        if isinstance(inner, UserType):
            return inner.with_frozen(True), rest
        if isinstance(inner, TupleType):
            return inner, rest
        if not isinstance(inner, CollectionType):
            raise Invalid("frozen<> is only allowed on collections, tuples, and user-defined types")
        return _frozen(inner), rest
    for arg in args:
        if _multi_cell(arg):
            raise Invalid(f"Non-frozen collections are not allowed inside collections: {text}")
        if arg is COUNTER:
            raise Invalid("Counters are not allowed inside collections")
    if head == "list":
        return ListType(args[0]), rest
    if head == "set":
        return SetType(args[0]), rest
    return MapType(args[0], args[1]), rest


def _multi_cell(cql_type: CQLType) -> bool:
    if isinstance(cql_type, UserType):
        return not cql_type.frozen
    return isinstance(cql_type, CollectionType) and not cql_type.frozen


def _frozen(inner: CollectionType) -> CollectionType:
    if isinstance(inner, ListType):
        return ListType(inner.element, frozen=True)
    if isinstance(inner, SetType):
        return SetType(inner.element, frozen=True)
    assert isinstance(inner, MapType)
    return MapType(inner.key, inner.value, frozen=True)


def is_empty_null(cql_type: CQLType, data: bytes) -> bool:
    """Whether zero value bytes mean "no value" for this type (all but text and blob)."""
    return not data and not isinstance(cql_type, _Text | _Blob)
