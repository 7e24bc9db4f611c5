"""DESCRIBE as a server-side statement (Cassandra 4.0+, what cqlsh 6 sends): listings of
keyspaces, tables and types, and the CQL that creates a keyspace, table, type or index.

Rows are ``system.describe``'s: ``keyspace_name, type, name`` for listings, and
``create_statement`` too for elements, in Cassandra's order (a keyspace, then its types,
then each table followed by its indexes; names sorted).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import _ast as ast
from ._errors import Invalid
from ._results import ColumnSpec, RowsResult
from ._schema import TABLE_OPTION_DEFAULTS, Keyspace, Table
from ._types import TEXT, UserType

_Element = tuple[str, str, str, str]  # keyspace, type, name, create statement
_LISTING = ("keyspace_name", "type", "name")
_PLAIN = re.compile(r"[a-z][a-z0-9_]*")


def describe(statement: ast.Describe, keyspaces: list[Keyspace], current: str | None) -> RowsResult:
    """The rows Cassandra answers ``statement`` with; ``current`` is the session's keyspace."""
    by_name = {space.name: space for space in keyspaces}
    ordered = sorted(keyspaces, key=lambda space: space.name)
    kind = statement.kind
    if kind == "keyspaces":
        return _rows([(s.name, "keyspace", s.name) for s in ordered])
    if kind in ("tables", "types"):
        chosen = ordered if current is None else [_keyspace(by_name, current)]
        return _rows(
            [
                (space.name, kind[:-1], name)
                for space in chosen
                for name in sorted(space.tables if kind == "tables" else space.types)
            ]
        )
    if kind == "schema":
        user = [s for s in ordered if statement.full or not s.name.startswith("system")]
        return _elements([e for space in user for e in _keyspace_elements(space)])
    name = statement.name
    space_name = statement.keyspace or current
    if kind == "generic":
        assert name is not None
        if statement.keyspace is None and name in by_name:
            return _elements(list(_keyspace_elements(by_name[name])))
        space = _keyspace(by_name, space_name or name)
        if name not in space.tables:
            raise Invalid(f"'{name}' not found in keyspace '{space.name}'")
        return _elements(list(_table_elements(space, space.tables[name])))
    if space_name is None:
        raise Invalid("No keyspace specified and no current keyspace")
    space = _keyspace(by_name, space_name)
    if kind == "keyspace":
        return _elements(list(_keyspace_elements(space)))
    assert name is not None
    if kind == "table":
        if name not in space.tables:
            raise Invalid(f"Table '{name}' not found in keyspace '{space.name}'")
        return _elements(list(_table_elements(space, space.tables[name])))
    if name not in space.types:
        raise Invalid(f"User defined type '{name}' not found in '{space.name}'")
    return _elements([_type_element(space, space.types[name])])


def _keyspace(by_name: dict[str, Keyspace], name: str) -> Keyspace:
    space = by_name.get(name)
    if space is None:
        raise Invalid(f"'{name}' not found in keyspaces")
    return space


def _rows(listing: list[tuple[str, str, str]]) -> RowsResult:
    specs = [ColumnSpec("system", "describe", column, TEXT) for column in _LISTING]
    rows: list[list[bytes | None]] = [
        [TEXT.serialize(quote(ks)), TEXT.serialize(kind), TEXT.serialize(quote(name))]
        for ks, kind, name in listing
    ]
    return RowsResult(specs, rows, None)


def _elements(elements: list[_Element]) -> RowsResult:
    columns = (*_LISTING, "create_statement")
    specs = [ColumnSpec("system", "describe", column, TEXT) for column in columns]
    rows: list[list[bytes | None]] = [
        [TEXT.serialize(quote(ks)), TEXT.serialize(kind), TEXT.serialize(quote(name)),
         TEXT.serialize(cql)]
        for ks, kind, name, cql in elements
    ]  # fmt: skip
    return RowsResult(specs, rows, None)


def quote(name: str) -> str:
    """An identifier as CQL needs it written: as is when lower-case and plain, else quoted."""
    return name if _PLAIN.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _keyspace_elements(space: Keyspace) -> Iterator[_Element]:
    replication = _literal(space.replication)
    durable = "true" if space.durable_writes else "false"
    yield (
        space.name, "keyspace", space.name,
        f"CREATE KEYSPACE {quote(space.name)} WITH replication = {replication}  "
        f"AND durable_writes = {durable};",
    )  # fmt: skip
    for name in sorted(space.types):
        yield _type_element(space, space.types[name])
    for name in sorted(space.tables):
        yield from _table_elements(space, space.tables[name])


def _type_element(space: Keyspace, user_type: UserType) -> _Element:
    fields = ",\n".join(f"    {quote(name)} {cql_type.name}" for name, cql_type in user_type.fields)
    name = user_type.type_name
    return (
        space.name, "type", name,
        f"CREATE TYPE {quote(space.name)}.{quote(name)} (\n{fields}\n);",
    )  # fmt: skip


def _table_elements(space: Keyspace, table: Table) -> Iterator[_Element]:
    yield (space.name, "table", table.name, table_cql(table))
    for name in sorted(table.indexes):
        _column, target = table.indexes[name]
        yield (
            space.name, "index", name,
            f"CREATE INDEX {quote(name)} ON {quote(space.name)}.{quote(table.name)} ({target});",
        )  # fmt: skip


def table_cql(table: Table) -> str:
    """CREATE TABLE as Cassandra 4.1 writes it: columns, primary key, then every option."""
    keys = [quote(c.name) for c in table.partition_key]
    single = len(keys) == 1 and not table.clustering
    lines = []
    for column in table.select_order():
        line = f"    {quote(column.name)} {column.type.name}"
        if column.kind == "static":
            line += " static"
        if single and column.kind == "partition_key":
            line += " PRIMARY KEY"
        lines.append(line)
    if not single:
        partition = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
        parts = [partition, *(quote(c.name) for c in table.clustering)]
        lines.append(f"    PRIMARY KEY ({', '.join(parts)})")
    options = []
    if table.clustering:
        order = ", ".join(f"{quote(c.name)} {c.clustering_order.upper()}" for c in table.clustering)
        options.append(f"CLUSTERING ORDER BY ({order})")
    merged = {**TABLE_OPTION_DEFAULTS, **table.options}
    options += [f"{name} = {_literal(merged[name])}" for name in sorted(merged)]
    body = ",\n".join(lines)
    head = f"CREATE TABLE {quote(table.keyspace)}.{quote(table.name)} (\n{body}\n) WITH "
    return head + "\n    AND ".join(options) + ";"


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        pairs = sorted(value.items())
        items = ", ".join(f"{_literal(str(k))}: {_literal(str(v))}" for k, v in pairs)
        return "{" + items + "}"
    text = str(value)
    return "'" + text.replace("'", "''") + "'"
