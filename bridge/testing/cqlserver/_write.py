"""INSERT, UPDATE and DELETE against the in-memory tables.

Writes carry a timestamp (microseconds) and the newest write of a cell wins,
as in Cassandra; a TTL makes a cell expire on the engine's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import _ast as ast
from . import _conditions as conditions
from ._binding import Context, Decoder, bind_decoders, decode_values, evaluate, is_multi_cell
from ._errors import Invalid
from ._json import expand_insert as expand_json_insert
from ._results import ColumnSpec, RowsResult
from ._schema import Column, Table
from ._storage import NO_STATIC, Cell, Partition, Row, TableData, bound_key_bytes, make_cell
from ._types import (
    BOOLEAN,
    COUNTER,
    INT,
    CollectionType,
    CQLType,
    ListType,
    MapType,
    SetType,
    UserType,
)
from ._unset import UNSET
from ._where import Condition, Purpose, Restrictions, column_of, condition_holds, write_keys

MAX_TTL = 20 * 365 * 24 * 60 * 60


@dataclass
class WriteOptions:
    timestamp: int
    ttl: int | None  # seconds; None: no TTL
    now: float

    def cell(self, value: object) -> Cell:
        expires = self.now + self.ttl if self.ttl else None
        return make_cell(value, self.timestamp, expires, self.ttl or None)


def ttl_of(using: ast.Using, table: Table, context: Context) -> int | None:
    if using.ttl is None:
        return _default_ttl(table)
    ttl = evaluate(using.ttl, INT, context)
    return _default_ttl(table) if ttl is UNSET else _checked_ttl(ttl)


def _checked_ttl(ttl: object) -> int | None:
    """A bound or literal TTL in seconds; 0 and null mean none."""
    if ttl is None:
        return None
    assert isinstance(ttl, int)
    if ttl < 0:
        raise Invalid(f"A TTL must be greater or equal to 0, but was {ttl}")
    if ttl > MAX_TTL:
        raise Invalid(f"ttl is too large. requested ({ttl}) maximum ({MAX_TTL})")
    return ttl or None


def _check_key_value(column: Column, value: object) -> None:
    if value is UNSET:
        raise Invalid(f"Invalid unset value for column {column.name}")
    if value is None:
        raise Invalid(f"Invalid null value in condition for column {column.name}")
    if column.kind == "partition_key" and column.type.serialize(value) == b"":
        raise Invalid("Key may not be empty")


def _put(row: Row, column: Column, value: object, options: WriteOptions) -> None:
    """Write one cell; null (or an empty multi-cell collection) deletes it, unset does nothing."""
    if value is UNSET:
        return
    existing = row.cell(column.slot)
    if existing is not None and existing.timestamp > options.timestamp:
        return
    if value is None or (is_multi_cell(column.type) and value == []):
        row.put(column.slot, None)
    else:
        row.put(column.slot, options.cell(value))


def applied_result(
    table: Table, applied: bool, existing: list[tuple[Column, object]] | None = None
) -> RowsResult:
    """The result of a conditional (IF [NOT] EXISTS) write."""
    specs = [ColumnSpec(table.keyspace, table.name, "[applied]", BOOLEAN)]
    row: list[bytes | None] = [BOOLEAN.serialize(applied)]
    for column, value in existing or []:
        specs.append(ColumnSpec(table.keyspace, table.name, column.name, column.type))
        row.append(None if value is None else column.type.serialize(value))
    return RowsResult(specs, [row], None)


def row_values(
    data: TableData, partition: Partition, row: Row, now: float
) -> list[tuple[Column, object]]:
    values: list[tuple[Column, object]] = []
    key = data.key_of(partition)
    for column in data.table.select_order():
        if column.kind == "partition_key":
            value = key[column.position]
        elif column.kind == "clustering":
            value = row.clustering[column.position]
        else:
            holder = partition.static if column.kind == "static" else row
            value = holder.value(column.slot, now)
        values.append((column, value))
    return values


def insert(
    statement: ast.Insert, table: Table, data: TableData, context: Context,
    options: WriteOptions, checked: bool = False,
) -> RowsResult | None:  # fmt: skip
    """Apply an INSERT; ``checked``: IF NOT EXISTS was already checked (a batch)."""
    if statement.json is not None:
        statement = expand_json_insert(statement, table, context)
    if any(c.type == COUNTER for c in table.columns):
        raise Invalid("INSERT statements are not allowed on counter tables, use UPDATE instead")
    if len(statement.columns) != len(statement.values):
        raise Invalid("Unmatched column names/values")
    values: dict[str, tuple[Column, object]] = {}
    for name, term in zip(statement.columns, statement.values, strict=True):
        column = column_of(table, name)
        if name in values:
            raise Invalid(f"Multiple definitions found for column {name}")
        values[name] = (column, evaluate(term, column.type, context, name))
    for kind, columns in (
        ("partition key parts", table.partition_key),
        ("clustering keys", table.clustering),
    ):
        missing = [c.name for c in columns if c.name not in values]
        if missing:
            raise Invalid(f"Some {kind} are missing: {', '.join(missing)}")
    for column in (*table.partition_key, *table.clustering):
        _check_key_value(column, values[column.name][1])
    key = tuple(values[c.name][1] for c in table.partition_key)
    clustering = tuple(values[c.name][1] for c in table.clustering)
    sort_key = data.clustering_key(clustering)
    if statement.if_not_exists and not checked:
        found = data.get(key)
        row = found.get_row(sort_key) if found else None
        if found is not None and row is not None and row.alive(options.now):
            return applied_result(table, False, row_values(data, found, row, options.now))
    partition = data.partition(key)
    row = partition.row(clustering, sort_key)
    marker = row.marker
    if marker is None or marker.timestamp <= options.timestamp:
        row.set_marker(options.cell(None))
    for column, value in values.values():
        if column.kind == "regular":
            _put(row, column, value, options)
        elif column.kind == "static":
            static = partition.static_row()
            _put(static, column, value, options)
            static.settle()
    row.settle()
    return applied_result(table, True) if statement.if_not_exists else None


def _default_ttl(table: Table) -> int | None:
    default = table.options.get("default_time_to_live", 0)
    return int(default) if isinstance(default, int) and default > 0 else None


@dataclass(frozen=True, slots=True)
class InsertPlan:
    """A prepared ``INSERT ... VALUES (?, ...)`` worked out once against its table.

    ``run`` does what ``insert`` does with the same results and errors, but the column
    checks are done, the partition is found by the key's bytes as they were bound (key
    types are canonical, so they are the bytes ``insert`` would serialize), and no value
    is decoded only to be encoded again.
    """

    data: TableData
    decoders: list[Decoder]
    timestamp_index: int | None
    ttl_index: int | None
    default_ttl: int | None
    # (column, bind index, is a partition key part), partition key then clustering.
    key_checks: tuple[tuple[Column, int, bool], ...]
    partition_indexes: tuple[int, ...]
    clustering_indexes: tuple[int, ...]
    # (column, bind index, is static) of the non-key columns, in statement order.
    cells: tuple[tuple[Column, int, bool], ...]
    # (slot, bind index, is multi-cell) of the same when none is static: such a write
    # can often replace the row whole (``Row.replace``).
    compact: tuple[tuple[int, int, bool], ...] | None

    @classmethod
    def build(
        cls, statement: ast.Insert, table: Table, data: TableData, specs: list[ColumnSpec]
    ) -> InsertPlan | None:
        """The plan, or None when ``insert`` must run (it also raises what is wrong)."""
        if statement.if_not_exists or len(statement.columns) != len(statement.values):
            return None
        if statement.json is not None:
            return None
        if any(c.type == COUNTER for c in table.columns):
            return None
        using = statement.using
        markers: dict[str, tuple[Column, int]] = {}
        for name, term in zip(statement.columns, statement.values, strict=True):
            column = table.column(name)
            if column is None or name in markers or not isinstance(term, ast.BindMarker):
                return None
            if specs[term.index].type != column.type:
                return None  # prepared against an older table of the same name
            markers[name] = (column, term.index)
        keys = (*table.partition_key, *table.clustering)
        if any(c.name not in markers for c in keys):
            return None
        if any(not c.type.canonical for c in table.partition_key):
            return None
        indexes: list[int | None] = []
        for given in (using.timestamp, using.ttl):
            if given is not None and not isinstance(given, ast.BindMarker):
                return None
            indexes.append(given.index if given is not None else None)
        cells = tuple(
            (column, index, column.kind == "static")
            for column, index in markers.values()
            if column.kind in ("regular", "static")
        )
        compact = tuple((c.slot, index, is_multi_cell(c.type)) for c, index, _ in cells)
        return cls(
            data,
            bind_decoders(specs),
            indexes[0],
            indexes[1],
            _default_ttl(table),
            tuple((c, markers[c.name][1], c.kind == "partition_key") for c in keys),
            tuple(markers[c.name][1] for c in table.partition_key),
            tuple(markers[c.name][1] for c in table.clustering),
            cells,
            None if any(static for _, _, static in cells) else compact,
        )

    def run(
        self,
        values: list[bytes | None],
        timestamp: int | None,
        next_timestamp: Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        decoded = decode_values(self.decoders, values)
        stamp = timestamp
        if self.timestamp_index is not None:
            given = decoded[self.timestamp_index]
            if given is UNSET:
                given = next_timestamp()
            if not isinstance(given, int):
                raise Invalid("Invalid null value of timestamp")
            stamp = given
        if stamp is None:
            stamp = next_timestamp()
        bound_ttl = UNSET if self.ttl_index is None else decoded[self.ttl_index]
        ttl = self.default_ttl if bound_ttl is UNSET else _checked_ttl(bound_ttl)
        options = WriteOptions(stamp, ttl, clock())
        for column, index, partition_part in self.key_checks:
            if decoded[index] is UNSET:
                raise Invalid(f"Invalid unset value for column {column.name}")
            if decoded[index] is None:
                raise Invalid(f"Invalid null value in condition for column {column.name}")
            if partition_part and values[index] == b"":
                raise Invalid("Key may not be empty")
        parts = self.partition_indexes
        data = self.data
        partition = data.partition_by_bytes(bound_key_bytes(values, parts))
        clustering = tuple([decoded[i] for i in self.clustering_indexes])
        row = partition.row(clustering, data.clustering_key(clustering))
        if ttl is None and self.compact is not None:
            written: list[tuple[int, object]] = []
            for slot, index, multi_cell in self.compact:
                value = decoded[index]
                if value is UNSET:
                    break
                written.append((slot, None if multi_cell and value == [] else value))
            else:
                if row.replace(stamp, written):
                    return
        marker = row.marker
        if marker is None or marker.timestamp <= stamp:
            row.set_marker(options.cell(None))
        for column, index, static in self.cells:
            _put(partition.static_row() if static else row, column, decoded[index], options)
        row.settle()
        if partition.static is not NO_STATIC:
            partition.static.settle()


def update(
    statement: ast.Update,
    table: Table,
    data: TableData,
    restrictions: Restrictions,
    context: Context,
    options: WriteOptions,
    checked: bool = False,
) -> RowsResult | None:
    """Apply an UPDATE; ``checked``: its IF conditions were already checked (a batch)."""
    assigned = [column_of(table, a.column) for a in statement.assignments]
    for column in assigned:
        if column.kind in ("partition_key", "clustering"):
            raise Invalid(f"PRIMARY KEY part {column.name} found in SET part")
    static_only = all(c.kind == "static" for c in assigned)
    partition_keys, clusterings, _ = write_keys(
        table, restrictions, "update", static_only=static_only
    )
    for key in partition_keys:
        for column in table.partition_key:
            _check_key_value(column, key[column.position])
    conditional = statement.if_exists or bool(statement.conditions)
    if conditional and not checked:
        refused = _refused(statement, table, data, partition_keys, clusterings, context, options)
        if refused is not None:
            return refused
    for key in partition_keys:
        partition = data.partition(key)
        targets: list[Row] = []
        if clusterings is None:
            targets.append(partition.static_row())
        else:
            for clustering in clusterings:
                for column in table.clustering:
                    _check_key_value(column, clustering[column.position])
                row = partition.row(clustering, data.clustering_key(clustering))
                targets.append(row)
        for assignment, column in zip(statement.assignments, assigned, strict=True):
            if column.kind == "static":
                _assign(partition.static_row(), column, assignment, context, options)
            else:
                for row in targets:
                    _assign(row, column, assignment, context, options)
        for row in targets:
            row.settle()
        if partition.static is not NO_STATIC:
            partition.static.settle()
        _forget_empty(data, partition)
    return applied_result(table, True) if conditional else None


def _assign(
    cells: Row, column: Column, assignment: ast.Assignment,
    context: Context, options: WriteOptions,
) -> None:  # fmt: skip
    cql_type = column.type
    current = cells.value(column.slot, options.now)
    if cql_type == COUNTER:
        if assignment.op not in ("+", "-"):
            raise Invalid(
                f"Cannot set the value of counter column {column.name} "
                f"(counters can only be incremented/decremented, not set)"
            )
        delta = evaluate(assignment.value, COUNTER, context, column.name)
        if delta is UNSET:
            return
        if delta is None:
            raise Invalid("Invalid null value for counter increment")
        assert isinstance(delta, int) and isinstance(current, int | None)
        total = (current or 0) + (delta if assignment.op == "+" else -delta)
        cells.put(column.slot, Cell(total, options.timestamp))
        return
    if assignment.op == "=":
        _put(cells, column, evaluate(assignment.value, cql_type, context, column.name), options)
        return
    if assignment.op == "field":
        field_type = udt_field(column, assignment)
        value = evaluate(assignment.value, field_type, context, f"{column.name}.{assignment.field}")
        if value is UNSET:
            return
        assert isinstance(cql_type, UserType)
        index = [name for name, _ in cql_type.fields].index(assignment.field or "")
        fields = list(current) if isinstance(current, tuple) else []
        fields += [None] * (len(cql_type.fields) - len(fields))
        fields[index] = value
        _put(cells, column, tuple(fields) if any(v is not None for v in fields) else None, options)
        return
    if not isinstance(cql_type, CollectionType) or cql_type.frozen:
        raise Invalid(
            f"Invalid operation ({assignment.column} = {assignment.column} {assignment.op} ?) "
            f"for non counter column {column.name}"
        )
    items = list(current) if isinstance(current, list) else []
    if assignment.op == "index":
        _assign_element(cells, column, cql_type, items, assignment, context, options)
        return
    operand_type: CQLType = cql_type
    if assignment.op == "-" and isinstance(cql_type, MapType):
        operand_type = SetType(cql_type.key, frozen=True)
    operand = evaluate(assignment.value, operand_type, context, column.name)
    if operand is UNSET:
        return
    operand_items = list(operand) if isinstance(operand, list) else []
    if isinstance(cql_type, ListType):
        if assignment.op == "+":
            items = items + operand_items
        elif assignment.op == "prepend":
            items = operand_items + items
        else:
            removed = {cql_type.element.serialize(v) for v in operand_items}
            items = [v for v in items if cql_type.element.serialize(v) not in removed]
    elif isinstance(cql_type, SetType):
        if assignment.op == "prepend":
            raise Invalid(f"Invalid operation (prepend) for set column {column.name}")
        if assignment.op == "+":
            items = cql_type.normalize(items + operand_items)
        else:
            removed = {cql_type.element.serialize(v) for v in operand_items}
            items = [v for v in items if cql_type.element.serialize(v) not in removed]
    else:
        assert isinstance(cql_type, MapType)
        if assignment.op == "prepend":
            raise Invalid(f"Invalid operation (prepend) for map column {column.name}")
        if assignment.op == "+":
            items = cql_type.normalize(items + operand_items)
        else:
            removed = {cql_type.key.serialize(k) for k in operand_items}
            items = [(k, v) for k, v in items if cql_type.key.serialize(k) not in removed]
    _put(cells, column, items or None, options)


def udt_field(column: Column, assignment: ast.Assignment) -> CQLType:
    """The type of ``udt.field`` in ``SET udt.field = ...``, which needs a non-frozen UDT."""
    cql_type = column.type
    if not isinstance(cql_type, UserType):
        raise Invalid(
            f"Invalid operation ({column.name}.{assignment.field} = ?) for non-UDT "
            f"column {column.name}"
        )
    if cql_type.frozen:
        raise Invalid(
            f"Invalid operation ({column.name}.{assignment.field} = ?) for frozen UDT "
            f"column {column.name}"
        )
    for name, field_type in cql_type.fields:
        if name == assignment.field:
            return field_type
    raise Invalid(f"UDT column {column.name} does not have a field named {assignment.field}")


def _assign_element(
    cells: Row, column: Column, cql_type: CollectionType, items: list[object],
    assignment: ast.Assignment, context: Context, options: WriteOptions,
) -> None:  # fmt: skip
    assert assignment.key is not None
    if isinstance(cql_type, ListType):
        index = evaluate(assignment.key, INT, context)
        if index is UNSET:
            raise Invalid("Invalid unset value for list index")
        value = evaluate(assignment.value, cql_type.element, context)
        if value is UNSET:
            return
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise Invalid(f"List index {index} out of bound, list has size {len(items)}")
        if value is None:
            del items[index]
        else:
            items[index] = value
    elif isinstance(cql_type, MapType):
        key = evaluate(assignment.key, cql_type.key, context)
        if key is None:
            raise Invalid("Invalid null map key")
        if key is UNSET:
            raise Invalid("Invalid unset map key")
        value = evaluate(assignment.value, cql_type.value, context)
        if value is UNSET:
            return
        raw = cql_type.key.serialize(key)
        kept: list[object] = [
            pair
            for pair in items
            if cql_type.key.serialize(pair[0]) != raw  # type: ignore[index]
        ]
        items = cql_type.normalize(kept + ([(key, value)] if value is not None else []))
    else:
        raise Invalid(f"Invalid operation ({column.name}[?] = ?) for set column {column.name}")
    _put(cells, column, items or None, options)


def delete(
    statement: ast.Delete,
    table: Table,
    data: TableData,
    restrictions: Restrictions,
    context: Context,
    options: WriteOptions,
    checked: bool = False,
) -> RowsResult | None:
    """Apply a DELETE; ``checked``: its IF conditions were already checked (a batch)."""
    if statement.using.ttl is not None:
        raise Invalid("Cannot provide custom TTL for DELETE statements")
    targets = [(column_of(table, t.column), t) for t in statement.targets]
    for column, _ in targets:
        if column.kind in ("partition_key", "clustering"):
            raise Invalid(
                f"Invalid identifier {column.name} for deletion (should not be a PRIMARY KEY part)"
            )
    static_only = bool(targets) and all(c.kind == "static" for c, _ in targets)
    purpose: Purpose = "update" if targets and not static_only else "delete"
    partition_keys, clusterings, ranges = write_keys(
        table, restrictions, purpose, static_only=static_only
    )
    conditional = statement.if_exists or bool(statement.conditions)
    if conditional:
        check_conditional_delete(statement, table, clusterings)
    if conditional and not checked:
        refused = _refused(statement, table, data, partition_keys, clusterings, context, options)
        if refused is not None:
            return refused
    for key in partition_keys:
        partition = data.get(key)
        if partition is None:
            continue
        if targets:
            rows: list[Row] = []
            if clusterings is not None:
                for clustering in clusterings:
                    row = partition.get_row(data.clustering_key(clustering))
                    if row is not None:
                        rows.append(row)
            for column, target in targets:
                for row in [partition.static] if column.kind == "static" else rows:
                    if row is not NO_STATIC:
                        _delete_cell(row, column, target, context, options)
                        row.settle()
        else:
            _delete_rows(table, partition, clusterings, ranges, options)
        _forget_empty(data, partition)
    return applied_result(table, True) if conditional else None


def _refused(
    statement: ast.Update | ast.Delete, table: Table, data: TableData,
    partition_keys: list[tuple[object, ...]], clusterings: list[tuple[object, ...]] | None,
    context: Context, options: WriteOptions,
) -> RowsResult | None:  # fmt: skip
    """The ``[applied] = False`` answer when the statement's IF does not hold, else None."""
    partition, row = conditions.target(table, data, partition_keys, clusterings)
    holds, shown = conditions.check(statement, table, partition, row, context, options.now)
    return None if holds else applied_result(table, False, shown)


def check_conditional_delete(
    statement: ast.Delete, table: Table, clusterings: list[tuple[object, ...]] | None
) -> None:
    """A conditional DELETE names one row (or one partition's static columns)."""
    static_conditions = bool(statement.conditions) and all(
        column_of(table, c.column).kind == "static" for c in statement.conditions
    )
    if clusterings is None and table.clustering and not static_conditions:
        raise Invalid(
            "DELETE statements must restrict all PRIMARY KEY columns with equality relations "
            "in order to use IF conditions"
        )


def _delete_cell(
    cells: Row, column: Column, target: ast.DeleteTarget,
    context: Context, options: WriteOptions,
) -> None:  # fmt: skip
    existing = cells.cell(column.slot)
    if existing is None or existing.timestamp > options.timestamp:
        return
    if target.key is None:
        cells.put(column.slot, None)
        return
    cql_type = column.type
    if not isinstance(cql_type, ListType | MapType) or cql_type.frozen:
        raise Invalid(f"Invalid element deletion on column {column.name} of type {cql_type.name}")
    items = list(existing.value) if isinstance(existing.value, list) else []
    if isinstance(cql_type, ListType):
        index = evaluate(target.key, INT, context)
        if index is UNSET:
            raise Invalid("Invalid unset value for list index")
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise Invalid(f"List index {index} out of bound, list has size {len(items)}")
        del items[index]
    else:
        key = evaluate(target.key, cql_type.key, context)
        if key is UNSET:
            raise Invalid("Invalid unset map key")
        raw = cql_type.key.serialize(key)
        items = [(k, v) for k, v in items if cql_type.key.serialize(k) != raw]
    kept = make_cell(items, existing.timestamp, existing.expires, existing.ttl) if items else None
    cells.put(column.slot, kept)


def _delete_rows(
    table: Table,
    partition: Partition,
    clusterings: list[tuple[object, ...]] | None,
    ranges: list[Condition],
    options: WriteOptions,
) -> None:
    """Delete whole rows: the named ones, a clustering range, or the whole partition."""
    if clusterings is None and not ranges and partition.static is not NO_STATIC:
        partition.static.delete_older(options.timestamp)
    wanted = None
    if clusterings is not None:
        wanted = {
            tuple(c.type.serialize(v) for c, v in zip(table.clustering, k, strict=True))
            for k in clusterings
        }
    keep: list[bool] = []
    for row in partition.rows:
        if wanted is not None:
            raw = tuple(
                c.type.serialize(v) for c, v in zip(table.clustering, row.clustering, strict=True)
            )
            hit = raw in wanted
        else:
            hit = all(
                condition_holds(cond, row.clustering[cond.column.position]) for cond in ranges
            )
        if hit:
            row.delete_older(options.timestamp)
        keep.append(not hit or not row.empty())
    partition.remove_rows(keep)


def _forget_empty(data: TableData, partition: Partition) -> None:
    """Drop a partition that no longer holds anything, so scans stay short."""
    if partition.empty():
        data.drop(partition)
