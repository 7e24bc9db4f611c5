"""Giving terms meaning: which type each bind marker stands for, and a term's value.

A marker's type comes from where it sits (``k = ?`` takes ``k``'s type,
``LIMIT ?`` an int), exactly as Cassandra infers bind metadata; the same
receivers decode the values of an unprepared QUERY.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _ast as ast
from ._errors import Invalid
from ._results import ColumnSpec
from ._schema import Column, Table
from ._types import (
    BIGINT,
    BLOB,
    DATE,
    INT,
    TIME,
    TIMESTAMP,
    TIMEUUID,
    UUID,
    CollectionType,
    CQLType,
    ListType,
    MapType,
    SetType,
    TupleType,
    UserType,
    is_empty_null,
    native_type,
)
from ._unset import UNSET

# 100ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


class Receivers:
    """Collects, marker by marker, the column spec each bind value is decoded with."""

    def __init__(self) -> None:
        self.specs: dict[int, ColumnSpec] = {}

    def spec(self, table: Table, name: str, cql_type: CQLType) -> ColumnSpec:
        return ColumnSpec(table.keyspace, table.name, name, cql_type)

    def term(self, term: ast.Term, spec: ColumnSpec) -> None:
        if isinstance(term, ast.BindMarker):
            name = term.name if term.name is not None else spec.name
            self.specs[term.index] = ColumnSpec(spec.keyspace, spec.table, name, spec.type)
        elif isinstance(term, ast.ListTerm | ast.SetTerm):
            element = _element_type(spec.type)
            for item in term.items:
                self.term(item, _child(spec, f"value({spec.name})", element))
        elif isinstance(term, ast.MapTerm):
            if isinstance(spec.type, MapType):
                key, value = spec.type.key, spec.type.value
            else:  # {} can also be an empty set
                key = value = _element_type(spec.type)
            for k, v in term.items:
                self.term(k, _child(spec, f"key({spec.name})", key))
                self.term(v, _child(spec, f"value({spec.name})", value))
        elif isinstance(term, ast.TupleTerm):
            if not isinstance(spec.type, TupleType):
                raise Invalid(f"Invalid tuple literal for {spec.name} of type {spec.type.name}")
            elements = spec.type.elements
            if len(term.items) > len(elements):
                raise Invalid(
                    f"Invalid tuple literal for {spec.name}: too many elements. Type "
                    f"{spec.type.name} expects {len(elements)} but got {len(term.items)}"
                )
            for index, (item, element) in enumerate(zip(term.items, elements, strict=False)):
                self.term(item, _child(spec, f"{spec.name}[{index}]", element))
        elif isinstance(term, ast.UserTypeTerm):
            fields = dict(spec.type.fields) if isinstance(spec.type, UserType) else {}
            for name, item in term.fields:
                if name not in fields:
                    raise Invalid(f"Unknown field '{name}' in value of user defined type")
                self.term(item, _child(spec, f"{spec.name}.{name}", fields[name]))
        elif isinstance(term, ast.FunctionCall):
            for arg in term.args:
                if _has_marker(arg):
                    raise Invalid(f"Bind markers are not supported as arguments of {term.name}()")

    def column(self, term: ast.Term, table: Table, column: Column) -> None:
        self.term(term, self.spec(table, column.name, column.type))

    def ordered(self) -> list[ColumnSpec]:
        """The specs in marker order; a marker with no receiver is a bug in the walk."""
        return [self.specs[index] for index in sorted(self.specs)]


def _child(spec: ColumnSpec, name: str, cql_type: CQLType) -> ColumnSpec:
    return ColumnSpec(spec.keyspace, spec.table, name, cql_type)


def _element_type(cql_type: CQLType) -> CQLType:
    if isinstance(cql_type, ListType | SetType):
        return cql_type.element
    raise Invalid(f"Invalid collection literal for value of type {cql_type.name}")


def _has_marker(term: ast.Term) -> bool:
    if isinstance(term, ast.BindMarker):
        return True
    if isinstance(term, ast.ListTerm | ast.SetTerm | ast.TupleTerm | ast.FunctionCall):
        children: tuple[ast.Term, ...] = (
            term.items if not isinstance(term, ast.FunctionCall) else term.args
        )
        return any(_has_marker(child) for child in children)
    if isinstance(term, ast.UserTypeTerm):
        return any(_has_marker(value) for _, value in term.fields)
    if isinstance(term, ast.MapTerm):
        return any(_has_marker(k) or _has_marker(v) for k, v in term.items)
    return False


# A bind value's spec, its type's decoder and whether empty bytes mean null for it.
Decoder = tuple[ColumnSpec, Callable[[bytes], object], bool]


def bind_decoders(specs: list[ColumnSpec]) -> list[Decoder]:
    """How to decode each bind value; a prepared statement's plan keeps these."""
    return [(spec, spec.type.deserialize, is_empty_null(spec.type, b"")) for spec in specs]


def decode_values(decoders: list[Decoder], values: list[bytes | None]) -> list[object]:
    """Bind values as wire bytes -> their Python values (None for null), in marker order."""
    if len(values) != len(decoders):
        raise Invalid(
            f"There were {len(decoders)} markers(?) in CQL but {len(values)} bound variables"
        )
    decoded: list[object] = []
    append = decoded.append
    for (spec, deserialize, empty_is_null), raw in zip(decoders, values, strict=True):
        if raw is None:
            append(None)
            continue
        if not raw:
            if raw is UNSET:
                append(UNSET)  # the statement leaves this column alone
                continue
            if empty_is_null:
                append(None)
                continue
        try:
            append(deserialize(raw))
        except Invalid as error:
            raise Invalid(
                f"Invalid value for {spec.name} of type {spec.type.name}: {error.message}"
            ) from None
    return decoded


@dataclass
class Context:
    """What evaluating terms in one request needs: bound values and the engine's clock."""

    values: list[object]
    clock: Callable[[], float]
    _sequence: list[int] = field(default_factory=lambda: [0])

    def timeuuid(self) -> uuid.UUID:
        """A version-1 UUID for ``now()``, from the engine's clock (so tests control it)."""
        self._sequence[0] += 1
        ticks = int(self.clock() * 10_000_000) + _UUID_EPOCH_OFFSET + self._sequence[0]
        node = random.getrandbits(48) | 0x010000000000  # multicast bit: not a real MAC
        clock_seq = random.getrandbits(14)
        fields = (
            ticks & 0xFFFFFFFF,
            (ticks >> 32) & 0xFFFF,
            ((ticks >> 48) & 0x0FFF) | 0x1000,
            (clock_seq >> 8) | 0x80,
            clock_seq & 0xFF,
            node,
        )
        return uuid.UUID(fields=fields)


def evaluate(term: ast.Term, cql_type: CQLType, context: Context, what: str = "") -> object:
    """The Python value of ``term`` for a receiver of ``cql_type`` (None for null)."""
    if isinstance(term, ast.Constant):
        try:
            return cql_type.from_constant(term.kind, term.text)
        except Invalid as error:
            if what and error.message.startswith("Invalid ") and "constant" in error.message:
                raise Invalid(
                    f'Invalid {term.kind.upper()} constant ({term.text}) for "{what}" '
                    f"of type {cql_type.name}"
                ) from None
            raise
        except ValueError:
            raise Invalid(
                f"Invalid {term.kind.upper()} constant ({term.text}) for type {cql_type.name}"
            ) from None
    if isinstance(term, ast.Null):
        return None
    if isinstance(term, ast.Decoded):
        return term.value
    if isinstance(term, ast.BindMarker):
        return context.values[term.index]
    if isinstance(term, ast.ListTerm | ast.SetTerm | ast.MapTerm):
        return _collection(term, cql_type, context)
    if isinstance(term, ast.TupleTerm | ast.UserTypeTerm):
        return _composite(term, cql_type, context)
    if isinstance(term, ast.FunctionCall):
        return _call(term, cql_type, context)
    raise Invalid(f"Invalid value for type {cql_type.name}")


def _collection(
    term: ast.ListTerm | ast.SetTerm | ast.MapTerm, cql_type: CQLType, context: Context
) -> object:
    def item(sub: ast.Term, sub_type: CQLType) -> object:
        value = evaluate(sub, sub_type, context)
        if value is None:
            raise Invalid("null is not supported inside collections")
        if value is UNSET:
            raise Invalid("unset value is not supported inside collections")
        return value

    if isinstance(cql_type, ListType) and isinstance(term, ast.ListTerm):
        return [item(sub, cql_type.element) for sub in term.items]
    if isinstance(cql_type, SetType) and isinstance(term, ast.SetTerm | ast.MapTerm):
        if isinstance(term, ast.MapTerm) and term.items:
            raise Invalid(f"Invalid map literal for value of type {cql_type.name}")
        items = term.items if isinstance(term, ast.SetTerm) else ()
        return cql_type.normalize([item(sub, cql_type.element) for sub in items])
    if isinstance(cql_type, MapType) and isinstance(term, ast.MapTerm):
        return cql_type.normalize(
            [(item(k, cql_type.key), item(v, cql_type.value)) for k, v in term.items]
        )
    kind = {ast.ListTerm: "list", ast.SetTerm: "set", ast.MapTerm: "map"}[type(term)]
    raise Invalid(f"Invalid {kind} literal for value of type {cql_type.name}")


def _convert(term: ast.FunctionCall, cql_type: CQLType, context: Context) -> object:
    """``blobAsInt(0x...)`` and ``intAsBlob(3)``: a value re-read as another type's bytes."""
    name = term.name
    to_blob = name.endswith("asblob")
    other = native_type(name[: -len("asblob")] if to_blob else name[len("blobas") :])
    if other is None or other is BLOB:
        raise Invalid(f"Unknown function '{name}'")
    if len(term.args) != 1:
        raise Invalid(
            f"Invalid number of arguments in call to function system.{name}: "
            f"1 required but {len(term.args)} provided"
        )
    source, result_type = (other, BLOB) if to_blob else (BLOB, other)
    if result_type != cql_type:
        raise Invalid(
            f"Type error: cannot assign result of function system.{name} "
            f"(type {result_type.name}) to a value of type {cql_type.name}"
        )
    argument = evaluate(term.args[0], source, context)
    if argument is None:
        return None
    raw = source.serialize(argument)
    if to_blob:
        return raw
    try:
        return other.deserialize(raw)
    except (Invalid, ValueError) as error:
        raise Invalid(
            f"In call to function system.{name}, value 0x{raw.hex()} is not a valid "
            f"binary representation for type {other.name}"
        ) from error


def _composite(
    term: ast.TupleTerm | ast.UserTypeTerm, cql_type: CQLType, context: Context
) -> tuple[object, ...]:
    """A tuple or UDT literal: its fields' values in order, None for those not given."""
    if isinstance(term, ast.TupleTerm):
        if not isinstance(cql_type, TupleType):
            raise Invalid(f"Invalid tuple literal for value of type {cql_type.name}")
        if len(term.items) > len(cql_type.elements):
            raise Invalid(
                f"Invalid tuple literal: too many elements. Type {cql_type.name} expects "
                f"{len(cql_type.elements)} but got {len(term.items)}"
            )
        values = [
            evaluate(i, t, context) for i, t in zip(term.items, cql_type.elements, strict=False)
        ]
        values += [None] * (len(cql_type.elements) - len(values))
    else:
        if not isinstance(cql_type, UserType):
            raise Invalid(f"Invalid user type literal for value of type {cql_type.name}")
        given = dict(term.fields)
        unknown = [name for name in given if name not in dict(cql_type.fields)]
        if unknown:
            raise Invalid(
                f"Unknown field '{unknown[0]}' in value of user defined type {cql_type.type_name}"
            )
        values = [
            evaluate(given[name], field_type, context) if name in given else None
            for name, field_type in cql_type.fields
        ]
    if any(v is UNSET for v in values):
        raise Invalid("Invalid unset value in a tuple or user type literal")
    return tuple(values)


def _call(term: ast.FunctionCall, cql_type: CQLType, context: Context) -> object:
    name = term.name
    if name.startswith("blobas") or name.endswith("asblob"):
        return _convert(term, cql_type, context)
    if term.args and name not in ("totimestamp", "todate", "tounixtimestamp"):
        raise Invalid(f"Invalid number of arguments in call to function system.{name}")
    now_ms = int(context.clock() * 1000)
    if name in ("now", "currenttimeuuid"):
        value: object = context.timeuuid()
        result_type: CQLType = TIMEUUID
    elif name == "uuid":
        value, result_type = uuid.uuid4(), UUID
    elif name == "currenttimestamp":
        value, result_type = now_ms, TIMESTAMP
    elif name == "currentdate":
        value, result_type = now_ms // 86_400_000, DATE
    elif name == "currenttime":
        value, result_type = (now_ms % 86_400_000) * 1_000_000, TIME
    elif name in ("totimestamp", "todate", "tounixtimestamp"):
        if len(term.args) != 1:
            raise Invalid(f"Invalid number of arguments in call to function system.{name}")
        argument = evaluate(term.args[0], TIMEUUID, context)
        if not isinstance(argument, uuid.UUID):
            return None
        millis = (argument.time - _UUID_EPOCH_OFFSET) // 10_000
        if name == "todate":
            value, result_type = millis // 86_400_000, DATE
        else:
            value, result_type = millis, (TIMESTAMP if name == "totimestamp" else BIGINT)
    else:
        raise Invalid(f"Unknown function '{name}'")
    if result_type != cql_type:
        raise Invalid(
            f"Type error: cannot assign result of function system.{name} "
            f"(type {result_type.name}) to a value of type {cql_type.name}"
        )
    return value


def positive_int(term: ast.Term | None, context: Context, what: str) -> int | None:
    """LIMIT and PER PARTITION LIMIT: strictly positive ints."""
    if term is None:
        return None
    value = evaluate(term, INT, context)
    if value is UNSET:
        return None  # as Cassandra: an unset LIMIT is no limit
    if value is None:
        raise Invalid(f"Invalid null value of {what}")
    assert isinstance(value, int)
    if value <= 0:
        raise Invalid(f"{what.upper()} must be strictly positive")
    return value


def is_multi_cell(cql_type: CQLType) -> bool:
    return isinstance(cql_type, CollectionType) and not cql_type.frozen
