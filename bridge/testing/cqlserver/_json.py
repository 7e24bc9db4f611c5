"""CQL values as JSON and back: ``SELECT JSON`` rows and ``INSERT ... JSON`` documents.

The mapping is Cassandra's: numbers and booleans as JSON numbers and booleans,
uuids, inets, dates, times and timestamps as strings in CQL's literal formats,
blobs as ``"0x..."``, lists, sets and tuples as arrays, maps and UDTs as
objects (non-text map keys as their JSON text). Reading accepts what Cassandra
accepts: a string for any type whose CQL literal is a string, and numbers given
as strings.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid
from typing import Any

from . import _ast as ast
from ._binding import Context, evaluate
from ._errors import Invalid
from ._results import ColumnSpec, RowsResult
from ._schema import Table
from ._types import (
    ASCII,
    BLOB,
    BOOLEAN,
    DATE,
    DECIMAL,
    DOUBLE,
    DURATION,
    FLOAT,
    TEXT,
    TIME,
    TIMESTAMP,
    TIMEUUID,
    UUID,
    CQLType,
    ListType,
    MapType,
    SetType,
    TupleType,
    UserType,
)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_DATE_EPOCH = datetime.date(1970, 1, 1)


def dumps(values: dict[str, tuple[CQLType, object]]) -> str:
    """One ``SELECT JSON`` row: column name -> (type, value)."""
    return json.dumps(
        {name: to_json(t, v) for name, (t, v) in values.items()}, separators=(", ", ": ")
    )


def to_json(cql_type: CQLType, value: object) -> Any:
    if value is None:
        return None
    if isinstance(cql_type, ListType | SetType):
        assert isinstance(value, list)
        return [to_json(cql_type.element, item) for item in value]
    if isinstance(cql_type, MapType):
        assert isinstance(value, list)
        out: dict[str, Any] = {}
        for key, item in value:
            encoded = to_json(cql_type.key, key)
            out[encoded if isinstance(encoded, str) else json.dumps(encoded)] = to_json(
                cql_type.value, item
            )
        return out
    if isinstance(cql_type, TupleType):
        assert isinstance(value, tuple)
        return [to_json(t, v) for t, v in zip(cql_type.elements, value, strict=False)]
    if isinstance(cql_type, UserType):
        assert isinstance(value, tuple)
        return {name: to_json(t, v) for (name, t), v in zip(cql_type.fields, value, strict=False)}
    if cql_type == BLOB:
        assert isinstance(value, bytes)
        return "0x" + value.hex()
    if cql_type == TIMESTAMP:
        assert isinstance(value, int)
        moment = _EPOCH + datetime.timedelta(milliseconds=value)
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if cql_type == DATE:
        assert isinstance(value, int)
        return (_DATE_EPOCH + datetime.timedelta(days=value)).isoformat()
    if cql_type == TIME:
        assert isinstance(value, int)
        seconds, nanos = divmod(value, 1_000_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return f"{hour:02d}:{minute:02d}:{second:02d}.{nanos:09d}"
    if cql_type == DURATION:
        assert isinstance(value, tuple)
        return _duration_text(*value)
    if cql_type == DECIMAL:
        assert isinstance(value, decimal.Decimal)
        return float(value)  # a JSON number (Cassandra writes the exact digits)
    if isinstance(value, uuid.UUID) or cql_type in (UUID, TIMEUUID):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)  # inet


def _duration_text(months: int, days: int, nanos: int) -> str:
    sign = "-" if min(months, days, nanos) < 0 else ""
    months, days, nanos = abs(months), abs(days), abs(nanos)
    parts: list[str] = []
    for amount, unit in ((months // 12, "y"), (months % 12, "mo"), (days, "d")):
        if amount:
            parts.append(f"{amount}{unit}")
    for size, unit in (
        (3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"),
        (1_000_000, "ms"), (1_000, "us"), (1, "ns"),
    ):  # fmt: skip
        amount, nanos = divmod(nanos, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return sign + ("".join(parts) or "0s")


def from_json(cql_type: CQLType, value: Any, what: str) -> object:
    """A JSON value as the Python value of ``cql_type``; ``what`` names it in errors."""
    if value is None:
        return None
    try:
        return _from_json(cql_type, value, what)
    except Invalid as error:
        raise Invalid(f"Error decoding JSON value for {what}: {error.message}") from None
    except (ValueError, TypeError, AssertionError):
        raise Invalid(
            f"Error decoding JSON value for {what}: Unable to make {cql_type.name} from "
            f"{json.dumps(value)}"
        ) from None


def _value(cql_type: CQLType, value: Any, what: str) -> object:
    return None if value is None else _from_json(cql_type, value, what)


def _from_json(cql_type: CQLType, value: Any, what: str) -> object:
    if isinstance(cql_type, ListType | SetType):
        if not isinstance(value, list):
            raise ValueError
        items = [_value(cql_type.element, item, what) for item in value]
        return cql_type.normalize(items)
    if isinstance(cql_type, MapType):
        if not isinstance(value, dict):
            raise ValueError
        pairs = []
        for key, item in value.items():
            key_value: Any = key
            if cql_type.key not in (TEXT, ASCII):
                try:
                    key_value = json.loads(key)
                except ValueError:
                    key_value = key
            pairs.append(
                (_value(cql_type.key, key_value, what), _value(cql_type.value, item, what))
            )
        return cql_type.normalize(pairs)
    if isinstance(cql_type, TupleType):
        if not isinstance(value, list) or len(value) > len(cql_type.elements):
            raise ValueError
        decoded = [_value(t, v, what) for t, v in zip(cql_type.elements, value, strict=False)]
        return tuple(decoded + [None] * (len(cql_type.elements) - len(decoded)))
    if isinstance(cql_type, UserType):
        if not isinstance(value, dict):
            raise ValueError
        names = {name for name, _ in cql_type.fields}
        unknown = [k for k in value if k not in names]
        if unknown:
            raise Invalid(f"Unknown field '{unknown[0]}' in value of user defined type")
        return tuple(_value(t, value.get(name), what) for name, t in cql_type.fields)
    if isinstance(value, bool):
        return cql_type.from_constant("boolean", "true" if value else "false")
    if isinstance(value, int):
        return cql_type.from_constant("integer", str(value))
    if isinstance(value, float):
        return cql_type.from_constant("float", repr(value))
    if not isinstance(value, str):
        raise ValueError
    if cql_type == BLOB:
        return cql_type.from_constant("hex", value)
    if cql_type in (UUID, TIMEUUID):
        return cql_type.from_constant("uuid", value)
    if cql_type == DURATION:
        return cql_type.from_constant("duration", value)
    if cql_type == BOOLEAN:
        return cql_type.from_constant("boolean", value.lower())
    if cql_type in (FLOAT, DOUBLE, DECIMAL):
        return cql_type.from_constant("float", value)
    try:
        return cql_type.from_constant("string", value)
    except Invalid:
        if value.lstrip("-").isdigit():
            return cql_type.from_constant("integer", value)
        raise


def rows_as_json(result: RowsResult) -> RowsResult:
    """``SELECT JSON``: each row as one ``[json]`` text value, keyed by result column name."""
    first = result.columns[0] if result.columns else None
    spec = ColumnSpec(first.keyspace if first else "", first.table if first else "", "[json]", TEXT)
    rows: list[list[bytes | None]] = []
    for row in result.rows:
        values = {
            _json_name(c.name): (c.type, None if raw is None else c.type.deserialize(raw))
            for c, raw in zip(result.columns, row, strict=True)
        }
        rows.append([dumps(values).encode("utf-8")])
    return RowsResult([spec], rows, result.paging_state, result.warnings)


def _json_name(name: str) -> str:
    """Case-sensitive names keep their double quotes, as in CQL."""
    return f'"{name}"' if name != name.lower() else name


def expand_insert(statement: ast.Insert, table: Table, context: Context) -> ast.Insert:
    """``INSERT ... JSON '{...}'`` as the plain INSERT of the document's columns.

    Columns the document leaves out are set to null (DEFAULT NULL, the default) or
    left alone (DEFAULT UNSET), as Cassandra does.
    """
    assert statement.json is not None
    text = evaluate(statement.json, TEXT, context, "[json]")
    if not isinstance(text, str):
        raise Invalid("Got null for INSERT JSON values")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise Invalid(f"Could not decode JSON string as a map: {error}") from None
    if not isinstance(document, dict):
        raise Invalid(f"Could not decode JSON string as a map: {text}")
    columns: list[str] = []
    values: list[ast.Term] = []
    for key, raw in document.items():
        name = key[1:-1] if len(key) > 1 and key[0] == key[-1] == '"' else key.lower()
        column = table.column(name)
        if column is None:
            raise Invalid(f"JSON values map contains unrecognized column: {key}")
        columns.append(column.name)
        values.append(ast.Decoded(from_json(column.type, raw, column.name)))
    if not statement.json_default_unset:
        for column in table.columns:
            if column.kind in ("regular", "static") and column.name not in columns:
                columns.append(column.name)
                values.append(ast.Null())
    return dataclasses.replace(statement, columns=tuple(columns), values=tuple(values), json=None)
