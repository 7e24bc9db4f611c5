"""The SELECT list beyond plain columns: functions, CAST, token(), and the aggregates.

Each selector has a result column (name and type, as Cassandra 4 names them,
e.g. ``system.max(v)``) and a value computed from one row; aggregates fold the
values of many rows (all matching rows, or each GROUP BY group).
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _ast as ast
from ._binding import Context
from ._errors import Invalid
from ._schema import Column, Table
from ._types import (
    ASCII,
    BIGINT,
    BLOB,
    BOOLEAN,
    COUNTER,
    DATE,
    DECIMAL,
    DOUBLE,
    FLOAT,
    INT,
    SMALLINT,
    TEXT,
    TIME,
    TIMESTAMP,
    TIMEUUID,
    TINYINT,
    UUID,
    VARINT,
    CQLType,
    UserType,
    native_type,
    parse_type,
)
from ._where import column_of

AGGREGATES = frozenset({"min", "max", "sum", "avg"})
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_NUMBERS = (TINYINT, SMALLINT, INT, BIGINT, COUNTER, VARINT, FLOAT, DOUBLE, DECIMAL)
_DAY_MS = 86_400_000

# Reads one column of the row at hand.
ColumnValue = Callable[[Column], object]


def describe(table: Table, item: ast.Selector) -> tuple[str, CQLType]:
    """The result column's name and type for a selector that is not a plain column."""
    if item.kind == "aggregate":
        assert item.column is not None and item.function is not None
        column = column_of(table, item.column)
        if item.function in ("sum", "avg") and column.type not in _NUMBERS:
            raise Invalid(f"Invalid call to function {item.function}: numeric argument expected")
        return f"system.{item.function}({column.name})", column.type
    if item.kind == "token":
        names = [arg.column for arg in item.args]
        if names != [c.name for c in table.partition_key]:
            raise Invalid(
                "The token function arguments must be in the partition key order: "
                + ", ".join(c.name for c in table.partition_key)
            )
        return f"system.token({', '.join(n or '' for n in names)})", BIGINT
    if item.kind == "cast":
        assert item.cast is not None
        (inner,) = item.args
        inner_name, inner_type = describe_any(table, inner)
        target = parse_type(item.cast)
        _check_cast(inner_type, target)
        return f"cast({inner_name} as {target.name})", target
    if item.kind == "field":
        (inner,) = item.args
        inner_name, inner_type = describe_any(table, inner)
        if not isinstance(inner_type, UserType):
            raise Invalid(
                f"Invalid field selection: {inner_name} of type {inner_type.name} "
                "is not a user type"
            )
        for name, field_type in inner_type.fields:
            if name == item.cast:
                return f"{inner_name}.{name}", field_type
        raise Invalid(f"{inner_type.type_name} has no field {item.cast}")
    if item.kind == "function":
        assert item.function is not None
        arg_types = [describe_any(table, arg)[1] for arg in item.args]
        arg_names = [describe_any(table, arg)[0] for arg in item.args]
        result = _function_type(item.function, arg_types)
        return f"system.{item.function}({', '.join(arg_names)})", result
    raise Invalid(f"Unsupported selector {item.kind}")


def describe_any(table: Table, item: ast.Selector) -> tuple[str, CQLType]:
    if item.kind == "column":
        assert item.column is not None
        column = column_of(table, item.column)
        return column.name, column.type
    return describe(table, item)


def _function_type(name: str, args: list[CQLType]) -> CQLType:
    no_args = {
        "now": TIMEUUID,
        "currenttimeuuid": TIMEUUID,
        "uuid": UUID,
        "currenttimestamp": TIMESTAMP,
        "currentdate": DATE,
        "currenttime": TIME,
    }
    if name in no_args:
        if args:
            raise Invalid(f"Invalid number of arguments in call to function system.{name}")
        return no_args[name]
    if len(args) != 1:
        raise Invalid(
            f"Invalid number of arguments in call to function system.{name}: "
            f"1 required but {len(args)} provided"
        )
    (arg,) = args
    accepted: dict[str, tuple[tuple[CQLType, ...], CQLType]] = {
        "totimestamp": ((TIMEUUID, DATE), TIMESTAMP),
        "todate": ((TIMEUUID, TIMESTAMP), DATE),
        "tounixtimestamp": ((TIMEUUID, TIMESTAMP, DATE), BIGINT),
    }
    if name in accepted:
        sources, result = accepted[name]
        if arg not in sources:
            raise Invalid(
                f"Type error: {arg.name} cannot be passed as argument 0 of function system.{name}"
            )
        return result
    if name.startswith("blobas"):
        target = native_type(name[len("blobas") :])
        if target is not None and arg == BLOB:
            return target
    if name.endswith("asblob"):
        source = native_type(name[: -len("asblob")])
        if source is not None and arg == source:
            return BLOB
    raise Invalid(f"Unknown function '{name}'")


def value(
    item: ast.Selector, table: Table, token: int, plain: ColumnValue, context: Context
) -> object:
    """A non-aggregate selector's value for one row; ``plain`` reads a column of that row."""
    if item.kind in ("column", "aggregate"):  # an aggregate folds its column's values
        assert item.column is not None
        return plain(column_of(table, item.column))
    if item.kind == "token":
        return token
    if item.kind == "cast":
        assert item.cast is not None
        (inner,) = item.args
        _, inner_type = describe_any(table, inner)
        return _cast(value(inner, table, token, plain, context), inner_type, parse_type(item.cast))
    if item.kind == "field":
        (inner,) = item.args
        _, inner_type = describe_any(table, inner)
        whole = value(inner, table, token, plain, context)
        assert isinstance(inner_type, UserType)
        names = [name for name, _ in inner_type.fields]
        if not isinstance(whole, tuple):
            return None
        index = names.index(item.cast or "")
        return whole[index] if index < len(whole) else None
    assert item.kind == "function" and item.function is not None
    args = [value(arg, table, token, plain, context) for arg in item.args]
    arg_types = [describe_any(table, arg)[1] for arg in item.args]
    return _call(item.function, args, arg_types, context)


def _call(name: str, args: list[object], types: list[CQLType], context: Context) -> object:
    now_ms = int(context.clock() * 1000)
    if name in ("now", "currenttimeuuid"):
        return context.timeuuid()
    if name == "uuid":
        return uuid.uuid4()
    if name == "currenttimestamp":
        return now_ms
    if name == "currentdate":
        return now_ms // _DAY_MS
    if name == "currenttime":
        return (now_ms % _DAY_MS) * 1_000_000
    (arg,) = args
    if arg is None:
        return None
    (arg_type,) = types
    if name.startswith("blobas"):
        target = native_type(name[len("blobas") :])
        assert target is not None and isinstance(arg, bytes)
        return target.deserialize(arg)
    if name.endswith("asblob"):
        return arg_type.serialize(arg)
    if arg_type == TIMEUUID:
        assert isinstance(arg, uuid.UUID)
        millis = (arg.time - _UUID_EPOCH_OFFSET) // 10_000
    elif arg_type == DATE:
        assert isinstance(arg, int)
        millis = arg * _DAY_MS
    else:
        assert isinstance(arg, int)
        millis = arg
    if name == "todate":
        return millis // _DAY_MS
    return millis  # totimestamp (a timestamp) and tounixtimestamp (a bigint)


def _check_cast(source: CQLType, target: CQLType) -> None:
    if target in (TEXT, ASCII) or source == target:
        return
    if source in _NUMBERS and target in _NUMBERS:
        return
    if (source, target) in ((TIMESTAMP, DATE), (TIMEUUID, TIMESTAMP), (TIMEUUID, DATE)):
        return
    raise Invalid(f"{source.name} cannot be cast to {target.name}")


def _cast(given: object, source: CQLType, target: CQLType) -> object:
    if given is None or source == target:
        return given
    if target in (TEXT, ASCII):
        if source == BOOLEAN:
            return "true" if given else "false"
        if source in (FLOAT, DOUBLE) and isinstance(given, float):
            return repr(given)
        return str(given)
    if target in _NUMBERS:
        if target in (FLOAT, DOUBLE):
            return float(given)  # type: ignore[arg-type]
        if target == DECIMAL:
            return decimal.Decimal(str(given))
        return _wrap(int(given), target)  # type: ignore[call-overload]
    if target == DATE:
        millis = _call("tounixtimestamp", [given], [source], Context([], lambda: 0.0))
        assert isinstance(millis, int)
        return millis // _DAY_MS
    return _call("totimestamp", [given], [source], Context([], lambda: 0.0))


@dataclass
class Fold:
    """One aggregate's running state over a group of rows."""

    function: str
    cql_type: CQLType
    count: int = 0
    total: object = None
    best: object = None
    _key: object = field(default=None, repr=False)

    def add(self, given: object) -> None:
        if given is None:
            return
        self.count += 1
        if self.function in ("min", "max"):
            key = self.cql_type.sort_key(given)
            if (
                self.best is None
                or (self.function == "min" and key < self._key)
                or (self.function == "max" and key > self._key)
            ):
                self.best, self._key = given, key
            return
        self.total = given if self.total is None else self.total + given  # type: ignore[operator]

    def result(self) -> object:
        if self.function in ("min", "max"):
            return self.best
        zero: object = decimal.Decimal(0) if self.cql_type == DECIMAL else 0
        if self.cql_type in (FLOAT, DOUBLE):
            zero = 0.0
        total = self.total if self.total is not None else zero
        if self.function == "sum":
            return _wrap(total, self.cql_type)
        if not self.count:
            return zero
        if self.cql_type in (FLOAT, DOUBLE):
            return total / self.count  # type: ignore[operator]
        if self.cql_type == DECIMAL:
            return total / self.count  # type: ignore[operator]
        # Integer averages truncate toward zero, as Java's division does.
        assert isinstance(total, int)
        quotient = abs(total) // self.count
        return _wrap(quotient if total >= 0 else -quotient, self.cql_type)


_INTEGER_BITS: dict[CQLType, int] = {TINYINT: 8, SMALLINT: 16, INT: 32, BIGINT: 64, COUNTER: 64}


def _wrap(number: object, cql_type: CQLType) -> object:
    """Integer overflow as Cassandra's Java arithmetic does it."""
    bits = _INTEGER_BITS.get(cql_type)
    if bits is None or not isinstance(number, int):
        return number
    return (number + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))


def check_group_by(table: Table, group_by: tuple[str, ...]) -> int:
    """How many primary key columns GROUP BY names (a prefix in declared order)."""
    key = [*table.partition_key, *table.clustering]
    for index, name in enumerate(group_by):
        column_of(table, name)
        if index >= len(key) or key[index].name != name:
            raise Invalid(
                "Group by currently only support groups of columns following their declared "
                "order in the PRIMARY KEY"
            )
    if group_by and len(group_by) < len(table.partition_key):
        raise Invalid("Group by is not supported on only a part of the partition key")
    return len(group_by)
