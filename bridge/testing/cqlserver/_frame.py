"""Native protocol v4 and v5 frames: the header, request decoding and response encoding.

Written from ``doc/native_protocol_v4.spec`` and ``native_protocol_v5.spec`` in
the Cassandra repository. The two differ inside a few bodies (int query flags,
the per-query keyspace, the result metadata id, failure reason maps); v5's
segments around the frames are ``_segment``'s. Responses are encoded with
v4's version byte; a v5 connection sets its own when it sends them. The
hot path (QUERY/EXECUTE in, RESULT out) uses precompiled ``struct`` objects and
one ``b"".join`` per response so a request costs a handful of small copies.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ._unset import UNSET

PROTOCOL_VERSION: Final = 4
V5: Final = 5
VERSIONS: Final = (PROTOCOL_VERSION, V5)
RESPONSE_VERSION: Final = 0x80 | PROTOCOL_VERSION
HEADER: Final = struct.Struct(">BBhBi")
HEADER_SIZE: Final = HEADER.size  # 9
MAX_BODY: Final = 256 * 1024 * 1024  # the spec's frame limit

# Frame flags.
FLAG_COMPRESSED: Final = 0x01
FLAG_TRACING: Final = 0x02
FLAG_CUSTOM_PAYLOAD: Final = 0x04
FLAG_WARNING: Final = 0x08

# Opcodes.
ERROR: Final = 0x00
STARTUP: Final = 0x01
READY: Final = 0x02
AUTHENTICATE: Final = 0x03
OPTIONS: Final = 0x05
SUPPORTED: Final = 0x06
QUERY: Final = 0x07
RESULT: Final = 0x08
PREPARE: Final = 0x09
EXECUTE: Final = 0x0A
REGISTER: Final = 0x0B
EVENT: Final = 0x0C
BATCH: Final = 0x0D
AUTH_CHALLENGE: Final = 0x0E
AUTH_RESPONSE: Final = 0x0F
AUTH_SUCCESS: Final = 0x10

OPCODE_NAMES: Final = {
    ERROR: "ERROR",
    STARTUP: "STARTUP",
    READY: "READY",
    AUTHENTICATE: "AUTHENTICATE",
    OPTIONS: "OPTIONS",
    SUPPORTED: "SUPPORTED",
    QUERY: "QUERY",
    RESULT: "RESULT",
    PREPARE: "PREPARE",
    EXECUTE: "EXECUTE",
    REGISTER: "REGISTER",
    EVENT: "EVENT",
    BATCH: "BATCH",
    AUTH_CHALLENGE: "AUTH_CHALLENGE",
    AUTH_RESPONSE: "AUTH_RESPONSE",
    AUTH_SUCCESS: "AUTH_SUCCESS",
}

# Error codes (spec section 9).
SERVER_ERROR: Final = 0x0000
PROTOCOL_ERROR: Final = 0x000A
BAD_CREDENTIALS: Final = 0x0100
UNAVAILABLE: Final = 0x1000
OVERLOADED: Final = 0x1001
IS_BOOTSTRAPPING: Final = 0x1002
TRUNCATE_ERROR: Final = 0x1003
WRITE_TIMEOUT: Final = 0x1100
READ_TIMEOUT: Final = 0x1200
READ_FAILURE: Final = 0x1300
FUNCTION_FAILURE: Final = 0x1400
WRITE_FAILURE: Final = 0x1500
SYNTAX_ERROR: Final = 0x2000
UNAUTHORIZED: Final = 0x2100
INVALID: Final = 0x2200
CONFIG_ERROR: Final = 0x2300
ALREADY_EXISTS: Final = 0x2400
UNPREPARED: Final = 0x2500

# RESULT kinds.
RESULT_VOID: Final = 0x0001
RESULT_ROWS: Final = 0x0002
RESULT_SET_KEYSPACE: Final = 0x0003
RESULT_PREPARED: Final = 0x0004
RESULT_SCHEMA_CHANGE: Final = 0x0005

# Rows metadata flags.
META_GLOBAL_TABLES_SPEC: Final = 0x0001
META_HAS_MORE_PAGES: Final = 0x0002
META_NO_METADATA: Final = 0x0004
META_METADATA_CHANGED: Final = 0x0008  # v5: a new result metadata id follows

# QUERY/EXECUTE parameter flags.
Q_VALUES: Final = 0x01
Q_SKIP_METADATA: Final = 0x02
Q_PAGE_SIZE: Final = 0x04
Q_PAGING_STATE: Final = 0x08
Q_SERIAL_CONSISTENCY: Final = 0x10
Q_DEFAULT_TIMESTAMP: Final = 0x20
Q_NAMES_FOR_VALUES: Final = 0x40
Q_WITH_KEYSPACE: Final = 0x80  # v5
Q_NOW_IN_SECONDS: Final = 0x100  # v5
PREPARE_WITH_KEYSPACE: Final = 0x01  # v5

CONSISTENCY_NAMES: Final = {
    0x0000: "ANY",
    0x0001: "ONE",
    0x0002: "TWO",
    0x0003: "THREE",
    0x0004: "QUORUM",
    0x0005: "ALL",
    0x0006: "LOCAL_QUORUM",
    0x0007: "EACH_QUORUM",
    0x0008: "SERIAL",
    0x0009: "LOCAL_SERIAL",
    0x000A: "LOCAL_ONE",
}

_BYTE = struct.Struct(">B")
_SHORT = struct.Struct(">H")
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_INT_INT = struct.Struct(">ii")
_SHORT_BYTE = struct.Struct(">HB")
_pack_short = _SHORT.pack
_pack_int = _INT.pack
_NULL = _pack_int(-1)


class FrameError(Exception):
    """A request the protocol does not allow; answered with a ProtocolError."""


# ---------------------------------------------------------------------------
# Requests


@dataclass(slots=True)
class QueryParams:
    """The ``<query_parameters>`` shared by QUERY and EXECUTE."""

    consistency: int = 1
    values: list[bytes | None] | dict[str, bytes | None] | None = None
    skip_metadata: bool = False
    page_size: int | None = None
    paging_state: bytes | None = None
    serial_consistency: int | None = None
    timestamp: int | None = None
    keyspace: str | None = None  # v5: the keyspace named by the request itself


@dataclass(slots=True)
class BatchRequest:
    """A decoded BATCH body; each statement is a query string or a prepared id."""

    batch_type: int
    statements: list[tuple[str | bytes, list[bytes | None]]] = field(default_factory=list)
    consistency: int = 1
    serial_consistency: int | None = None
    timestamp: int | None = None
    keyspace: str | None = None


class BodyReader:
    """Reads the spec's notations from one frame body, raising FrameError on overrun."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _take(self, n: int) -> int:
        start = self.pos
        stop = start + n
        if n < 0 or stop > self.end:
            raise FrameError("Not enough bytes to read the frame body (truncated message)")
        self.pos = stop
        return start

    def read_byte(self) -> int:
        start = self._take(1)
        return self.data[start]

    def read_short(self) -> int:
        start = self._take(2)
        return int(_SHORT.unpack_from(self.data, start)[0])

    def read_int(self) -> int:
        start = self._take(4)
        return int(_INT.unpack_from(self.data, start)[0])

    def read_long(self) -> int:
        start = self._take(8)
        return int(_LONG.unpack_from(self.data, start)[0])

    def read_raw(self, n: int) -> bytes:
        start = self._take(n)
        return bytes(self.data[start : start + n])

    def read_string(self) -> str:
        return self._utf8(self.read_short())

    def read_long_string(self) -> str:
        n = self.read_int()
        if n < 0:
            raise FrameError(f"Invalid negative length {n} for a [long string]")
        return self._utf8(n)

    def _utf8(self, n: int) -> str:
        start = self._take(n)
        try:
            return str(self.data[start : start + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"Cannot decode string as UTF8: {exc}") from None

    def read_short_bytes(self) -> bytes:
        return self.read_raw(self.read_short())

    def read_bytes(self) -> bytes | None:
        n = self.read_int()
        if n < 0:
            return None
        return self.read_raw(n)

    def read_value(self) -> bytes | None:
        n = self.read_int()
        if n >= 0:
            return self.read_raw(n)
        if n == -1:
            return None
        if n == -2:
            return UNSET  # "not set": the column is left alone, unlike null
        raise FrameError(f"Invalid value length {n} (must be >= -2)")

    def _read_values(self, count: int) -> list[bytes | None]:
        """``count`` [value]s; the hot path of every EXECUTE, so inlined."""
        data = self.data
        pos = self.pos
        end = self.end
        unpack = _INT.unpack_from
        values: list[bytes | None] = []
        append = values.append
        for _ in range(count):
            if pos + 4 > end:
                raise FrameError("Not enough bytes to read the frame body (truncated message)")
            (n,) = unpack(data, pos)
            pos += 4
            if n >= 0:
                stop = pos + n
                if stop > end:
                    raise FrameError("Not enough bytes to read the frame body (truncated message)")
                append(data[pos:stop])
                pos = stop
            elif n == -1:
                append(None)
            elif n == -2:
                append(UNSET)
            else:
                raise FrameError(f"Invalid value length {n} (must be >= -2)")
        self.pos = pos
        return values

    def read_string_list(self) -> list[str]:
        return [self.read_string() for _ in range(self.read_short())]

    def read_string_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for _ in range(self.read_short()):
            key = self.read_string()
            out[key] = self.read_string()
        return out

    def read_bytes_map(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for _ in range(self.read_short()):
            key = self.read_string()
            out[key] = self.read_bytes()
        return out

    def read_query_params(self, version: int = PROTOCOL_VERSION) -> QueryParams:
        if version >= V5:
            consistency = self.read_short()
            flags = self.read_int()
        else:
            start = self._take(3)
            consistency, flags = _SHORT_BYTE.unpack_from(self.data, start)
        params = QueryParams(consistency=consistency)
        if flags & Q_VALUES:
            count = self.read_short()
            if not flags & Q_NAMES_FOR_VALUES:
                params.values = self._read_values(count)
            else:
                named: dict[str, bytes | None] = {}
                for _ in range(count):
                    name = self.read_string()
                    named[name] = self.read_value()
                params.values = named
        if flags & Q_SKIP_METADATA:
            params.skip_metadata = True
        if flags & Q_PAGE_SIZE:
            (size,) = _INT.unpack_from(self.data, self._take(4))
            params.page_size = size if size > 0 else None
        if flags & Q_PAGING_STATE:
            params.paging_state = self.read_bytes()
        if flags & Q_SERIAL_CONSISTENCY:
            params.serial_consistency = self.read_short()
        if flags & Q_DEFAULT_TIMESTAMP:
            (params.timestamp,) = _LONG.unpack_from(self.data, self._take(8))
        if version >= V5:
            if flags & Q_WITH_KEYSPACE:
                params.keyspace = self.read_string()
            if flags & Q_NOW_IN_SECONDS:
                self.read_int()  # a test server's clock is the engine's own
        return params

    def read_prepare(self, version: int) -> tuple[str, str | None]:
        """PREPARE's query and, in v5, the keyspace it names."""
        query = self.read_long_string()
        if version < V5:
            return query, None
        flags = self.read_int()
        return query, self.read_string() if flags & PREPARE_WITH_KEYSPACE else None

    def read_batch(self, version: int = PROTOCOL_VERSION) -> BatchRequest:
        batch_type = self.read_byte()
        if batch_type > 2:
            raise FrameError(f"Unknown batch type {batch_type}")
        request = BatchRequest(batch_type=batch_type)
        value = self.read_value
        for _ in range(self.read_short()):
            kind = self.read_byte()
            target: str | bytes
            if kind == 0:
                target = self.read_long_string()
            elif kind == 1:
                target = self.read_short_bytes()
            else:
                raise FrameError(
                    f"Invalid query kind in BATCH messages. Must be 0 or 1 but got {kind}"
                )
            request.statements.append((target, [value() for _ in range(self.read_short())]))
        request.consistency = self.read_short()
        flags = self.read_int() if version >= V5 else self.read_byte()
        if flags & Q_NAMES_FOR_VALUES:
            # The spec itself says this cannot work (CASSANDRA-10246).
            raise FrameError("Named values in BATCH are not supported")
        if flags & Q_SERIAL_CONSISTENCY:
            request.serial_consistency = self.read_short()
        if flags & Q_DEFAULT_TIMESTAMP:
            request.timestamp = self.read_long()
        if version >= V5:
            if flags & Q_WITH_KEYSPACE:
                request.keyspace = self.read_string()
            if flags & Q_NOW_IN_SECONDS:
                self.read_int()
        return request


# ---------------------------------------------------------------------------
# Responses


def frame(opcode: int, stream: int, body: bytes, version: int = RESPONSE_VERSION) -> bytes:
    """One response frame: header plus body."""
    return HEADER.pack(version, 0, stream, opcode, len(body)) + body


def enc_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _pack_short(len(raw)) + raw


def enc_long_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _pack_int(len(raw)) + raw


def enc_short_bytes(raw: bytes) -> bytes:
    return _pack_short(len(raw)) + raw


def enc_bytes(raw: bytes | None) -> bytes:
    if raw is None:
        return _NULL
    return _pack_int(len(raw)) + raw


def enc_string_list(items: Sequence[str]) -> bytes:
    return _pack_short(len(items)) + b"".join(enc_string(s) for s in items)


def enc_string_multimap(items: dict[str, list[str]]) -> bytes:
    parts = [_pack_short(len(items))]
    for key, values in items.items():
        parts.append(enc_string(key))
        parts.append(enc_string_list(values))
    return b"".join(parts)


def enc_inet(address: str, port: int) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return _BYTE.pack(len(packed)) + packed + _pack_int(port)


def with_envelope(
    response: bytes,
    tracing_id: bytes | None = None,
    warnings: Sequence[str] = (),
    payload: bytes | None = None,
) -> bytes:
    """A response frame with a tracing id, warnings and/or a custom payload (section 4).

    They go in that order before the message; warnings are added before the other
    two (the engine's), which come when the frame is written. ``payload`` is an
    encoded ``[bytes map]``.
    """
    version, flags, stream, opcode, _length = HEADER.unpack_from(response)
    body = response[HEADER_SIZE:]
    head = b""
    if tracing_id is not None:
        flags |= FLAG_TRACING
        head = tracing_id
    if warnings:
        flags |= FLAG_WARNING
        body = enc_string_list(warnings) + body
    if payload is not None:
        split = _string_list_end(body) if flags & FLAG_WARNING else 0
        body = body[:split] + payload + body[split:]
        flags |= FLAG_CUSTOM_PAYLOAD
    return HEADER.pack(version, flags, stream, opcode, len(head) + len(body)) + head + body


def _string_list_end(body: bytes) -> int:
    reader = BodyReader(body)
    reader.read_string_list()
    return reader.pos


def ready(stream: int) -> bytes:
    return frame(READY, stream, b"")


def authenticate(stream: int, authenticator: str) -> bytes:
    return frame(AUTHENTICATE, stream, enc_string(authenticator))


def auth_success(stream: int) -> bytes:
    return frame(AUTH_SUCCESS, stream, _NULL)  # no final SASL token


def supported(stream: int, options: dict[str, list[str]]) -> bytes:
    return frame(SUPPORTED, stream, enc_string_multimap(options))


def error(
    stream: int, code: int, message: str, extra: bytes = b"", version: int = RESPONSE_VERSION
) -> bytes:
    """An ERROR frame; ``extra`` carries the code-specific fields of section 9."""
    return frame(ERROR, stream, _pack_int(code) + enc_string(message) + extra, version)


def unavailable_extra(consistency: int, required: int, alive: int) -> bytes:
    return _pack_short(consistency) + _INT_INT.pack(required, alive)


def write_timeout_extra(consistency: int, received: int, block_for: int, write_type: str) -> bytes:
    return _pack_short(consistency) + _INT_INT.pack(received, block_for) + enc_string(write_type)


def read_timeout_extra(
    consistency: int, received: int, block_for: int, data_present: bool
) -> bytes:
    return _pack_short(consistency) + _INT_INT.pack(received, block_for) + bytes([data_present])


def _failures(failed: Sequence[str], version: int) -> bytes:
    """v4: how many replicas failed; v5: a reason map, each failed address with code 0."""
    if version < V5:
        return _pack_int(len(failed))
    parts = [_pack_int(len(failed))]
    for address in failed:
        packed = ipaddress.ip_address(address).packed
        parts.append(_BYTE.pack(len(packed)) + packed + _pack_short(0))  # 0: UNKNOWN
    return b"".join(parts)


def read_failure_extra(
    consistency: int, received: int, block_for: int, failed: Sequence[str],
    data_present: bool, version: int = PROTOCOL_VERSION,
) -> bytes:  # fmt: skip
    return (
        _pack_short(consistency)
        + _INT_INT.pack(received, block_for)
        + _failures(failed, version)
        + bytes([data_present])
    )


def write_failure_extra(
    consistency: int, received: int, block_for: int, failed: Sequence[str],
    write_type: str, version: int = PROTOCOL_VERSION,
) -> bytes:  # fmt: skip
    return (
        _pack_short(consistency)
        + _INT_INT.pack(received, block_for)
        + _failures(failed, version)
        + enc_string(write_type)
    )


def already_exists_extra(keyspace: str, table: str) -> bytes:
    return enc_string(keyspace) + enc_string(table)


def unprepared_extra(statement_id: bytes) -> bytes:
    return enc_short_bytes(statement_id)


_RESULT_VOID_BODY: Final = _pack_int(RESULT_VOID)
_ROWS_KIND: Final = _pack_int(RESULT_ROWS)


def result_void(stream: int) -> bytes:
    return frame(RESULT, stream, _RESULT_VOID_BODY)


def result_set_keyspace(stream: int, keyspace: str) -> bytes:
    return frame(RESULT, stream, _pack_int(RESULT_SET_KEYSPACE) + enc_string(keyspace))


def schema_change_body(change_type: str, target: str, keyspace: str, name: str | None) -> bytes:
    body = enc_string(change_type) + enc_string(target) + enc_string(keyspace)
    if target != "KEYSPACE":
        body += enc_string(name or "")
    return body


def result_schema_change(
    stream: int, change_type: str, target: str, keyspace: str, name: str | None
) -> bytes:
    body = _pack_int(RESULT_SCHEMA_CHANGE) + schema_change_body(change_type, target, keyspace, name)
    return frame(RESULT, stream, body)


def event_schema_change(change_type: str, target: str, keyspace: str, name: str | None) -> bytes:
    body = enc_string("SCHEMA_CHANGE") + schema_change_body(change_type, target, keyspace, name)
    return frame(EVENT, -1, body)


def event_node(kind: str, change: str, address: str, port: int) -> bytes:
    """A TOPOLOGY_CHANGE (NEW_NODE/REMOVED_NODE) or STATUS_CHANGE (UP/DOWN) event."""
    return frame(EVENT, -1, enc_string(kind) + enc_string(change) + enc_inet(address, port))


@dataclass(slots=True, frozen=True)
class ColumnMeta:
    """What a column spec needs: table, name and the type's ``[option]`` bytes."""

    keyspace: str
    table: str
    name: str
    option: bytes


def col_specs(columns: Sequence[ColumnMeta]) -> tuple[int, bytes]:
    """The ``<global_table_spec>?<col_spec_i>...`` part and the flag it needs."""
    if not columns:
        return 0, b""
    first = columns[0]
    if all(c.keyspace == first.keyspace and c.table == first.table for c in columns):
        parts = [enc_string(first.keyspace), enc_string(first.table)]
        for c in columns:
            parts.append(enc_string(c.name))
            parts.append(c.option)
        return META_GLOBAL_TABLES_SPEC, b"".join(parts)
    parts = []
    for c in columns:
        parts.append(enc_string(c.keyspace))
        parts.append(enc_string(c.table))
        parts.append(enc_string(c.name))
        parts.append(c.option)
    return 0, b"".join(parts)


def rows_metadata(
    n_columns: int, columns: Sequence[ColumnMeta] | None, paging_state: bytes | None
) -> bytes:
    """``<flags><columns_count>[<paging_state>][specs]`` of a Rows result.

    ``columns`` None sets No_metadata (the client asked to skip it).
    """
    if columns is None:
        return rows_metadata_from_specs(n_columns, META_NO_METADATA, b"", paging_state)
    flags, specs = col_specs(columns)
    return rows_metadata_from_specs(n_columns, flags, specs, paging_state)


def rows_metadata_from_specs(
    n_columns: int, flags: int, specs: bytes, paging_state: bytes | None,
    new_metadata_id: bytes | None = None,
) -> bytes:  # fmt: skip
    """As :func:`rows_metadata`, from column specs encoded once and cached.

    ``new_metadata_id`` (v5) tells a client its prepared result metadata is stale.
    """
    if new_metadata_id is not None:
        flags |= META_METADATA_CHANGED
        state = b"" if paging_state is None else enc_bytes(paging_state)
        if paging_state is not None:
            flags |= META_HAS_MORE_PAGES
        return _INT_INT.pack(flags, n_columns) + state + enc_short_bytes(new_metadata_id) + specs
    if paging_state is not None:
        flags |= META_HAS_MORE_PAGES
        return _INT_INT.pack(flags, n_columns) + enc_bytes(paging_state) + specs
    return _INT_INT.pack(flags, n_columns) + specs


def result_rows(
    stream: int,
    metadata: bytes,
    rows: Sequence[Sequence[bytes | None]],
) -> bytes:
    """A Rows RESULT frame; ``metadata`` comes from :func:`rows_metadata`."""
    parts: list[bytes] = [b"", _ROWS_KIND, metadata, _pack_int(len(rows))]
    append = parts.append
    null = _NULL
    pack_int = _pack_int
    for row in rows:
        for value in row:
            if value is None:
                append(null)
            else:
                append(pack_int(len(value)))
                append(value)
    body_len = sum(map(len, parts))
    parts[0] = HEADER.pack(RESPONSE_VERSION, 0, stream, RESULT, body_len)
    return b"".join(parts)


def result_prepared(
    stream: int,
    statement_id: bytes,
    bind: Sequence[ColumnMeta],
    pk_indexes: Sequence[int],
    result: Sequence[ColumnMeta] | None,
    result_metadata_id: bytes | None = None,
) -> bytes:
    """A Prepared RESULT; v5 passes ``result_metadata_id``, which follows the statement id."""
    spec_flag, specs = col_specs(bind)
    parts = [
        _pack_int(RESULT_PREPARED),
        enc_short_bytes(statement_id),
        b"" if result_metadata_id is None else enc_short_bytes(result_metadata_id),
        _INT_INT.pack(spec_flag, len(bind)),
        _pack_int(len(pk_indexes)),
        b"".join(_pack_short(i) for i in pk_indexes),
        specs,
    ]
    if result is None:
        parts.append(_INT_INT.pack(META_NO_METADATA, 0))
    else:
        parts.append(rows_metadata(len(result), result, None))
    return frame(RESULT, stream, b"".join(parts))
