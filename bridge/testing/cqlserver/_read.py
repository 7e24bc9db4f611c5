"""SELECT: walking partitions and rows in order, filtering, limits and paging.

Paging is real: each page stops after ``page_size`` rows and hands back an
opaque state naming the last row, so the next page resumes right after it
even if rows were written in between.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import _ast as ast
from . import _selectors as selectors
from ._binding import Context, Decoder, bind_decoders, decode_values, positive_int
from ._errors import Invalid
from ._murmur3 import murmur3_token
from ._results import ColumnSpec, RowsResult
from ._schema import Column, Table
from ._storage import Cell, Partition, Row, TableData, bound_key_bytes, key_values
from ._types import BIGINT, INT, CQLType
from ._unset import UNSET
from ._where import Condition, Restrictions, column_of, condition_holds

_POSITION = 0  # paging state: resume after a (partition, clustering) position
_OFFSET = 1  # paging state: resume at an offset (globally sorted results)


@dataclass
class Selection:
    """The SELECT list resolved against a table."""

    items: list[ast.Selector]
    columns: list[Column | None]  # None: a function, cast or token() (see ``_selectors``)
    specs: list[ColumnSpec]
    aggregate: bool
    table: Table


def selection(table: Table, select: ast.Select) -> Selection:
    if not select.selectors:
        columns: list[Column | None] = list(table.select_order())
        items = [ast.Selector("column", c.name, None) for c in table.select_order()]
        specs = [
            ColumnSpec(table.keyspace, table.name, c.name, c.type) for c in table.select_order()
        ]
        return Selection(items, columns, specs, False, table)
    columns, specs = [], []
    for item in select.selectors:
        plain = item.kind in ("column", "count", "writetime", "ttl")
        column = column_of(table, item.column) if plain and item.column is not None else None
        cql_type: CQLType
        if item.kind == "count":
            # Cassandra 4 names count(*) "count" and count(v) "system.count(v)".
            name = "count" if column is None else f"system.count({column.name})"
            cql_type = BIGINT
        elif item.kind == "writetime":
            assert column is not None
            name, cql_type = f"writetime({column.name})", BIGINT
            _check_cell_function(column, "writetime")
        elif item.kind == "ttl":
            assert column is not None
            name, cql_type = f"ttl({column.name})", INT
            _check_cell_function(column, "ttl")
        elif item.kind == "column":
            assert column is not None
            name, cql_type = column.name, column.type
        else:
            name, cql_type = selectors.describe(table, item)
        columns.append(column)
        specs.append(ColumnSpec(table.keyspace, table.name, item.alias or name, cql_type))
    aggregate = any(item.kind in ("count", "aggregate") for item in select.selectors)
    selectors.check_group_by(table, select.group_by)
    grouped = aggregate or bool(select.group_by)
    return Selection(list(select.selectors), columns, specs, grouped, table)


def _check_cell_function(column: Column, function: str) -> None:
    if column.kind in ("partition_key", "clustering"):
        raise Invalid(f"Cannot use selection function {function} on PRIMARY KEY part {column.name}")


@dataclass
class _Plan:
    table: Table
    data: TableData
    restrictions: Restrictions
    reverse: bool
    distinct: bool
    now: float
    context: Context


def check_order_by(table: Table, select: ast.Select) -> bool:
    """Validate ORDER BY; True when rows come in reverse clustering order."""
    if not select.order_by:
        return False
    reverse: bool | None = None
    for index, (name, direction) in enumerate(select.order_by):
        column = column_of(table, name)
        if column.kind != "clustering":
            raise Invalid(
                f"Order by is currently only supported on the clustered columns of the "
                f"PRIMARY KEY, got {name}"
            )
        if column.position != index:
            raise Invalid(
                "Order by currently only supports the ordering of columns following their "
                "declared order in the PRIMARY KEY"
            )
        flipped = direction != column.clustering_order
        if reverse is not None and flipped != reverse:
            raise Invalid(f"Unsupported order by relation (column {name})")
        reverse = flipped
    pk_names = {c.name for c in table.partition_key}
    restricted = {
        r.column
        for r in select.where
        if not r.token and r.op in ("=", "IN") and r.column in pk_names
    }
    if restricted != pk_names:
        raise Invalid(
            "ORDER BY is only supported when the partition key is restricted by an EQ or an IN."
        )
    return bool(reverse)


def run_select(
    select: ast.Select,
    table: Table,
    data: TableData,
    restrictions: Restrictions,
    context: Context,
    *,
    page_size: int | None,
    paging_state: bytes | None,
) -> RowsResult:
    chosen = selection(table, select)
    reverse = check_order_by(table, select)
    if select.distinct:
        _check_distinct(table, chosen)
    limit = positive_int(select.limit, context, "limit")
    per_partition = positive_int(select.per_partition_limit, context, "per partition limit")
    plan = _Plan(table, data, restrictions, reverse, select.distinct, context.clock(), context)
    if chosen.aggregate:
        result = _aggregate(plan, chosen, per_partition, len(select.group_by), limit)
        if restrictions.partition_keys(table) is None and not table.virtual:
            result.warnings = ("Aggregation query used without partition key",)
        return result
    keys = restrictions.partition_keys(table)
    global_sort = bool(select.order_by) and keys is not None and len(keys) > 1
    if global_sort:
        return _sorted_page(plan, chosen, keys or [], limit, per_partition, page_size, paging_state)
    state = _decode(paging_state) if paging_state else None
    if state is not None and state[0] != _POSITION:
        raise Invalid("Invalid value for the paging state")
    after = None
    if state is not None:
        raw_clustering = state[2]
        clustering = None
        if raw_clustering is not None:
            if len(raw_clustering) != len(table.clustering):
                raise Invalid("Invalid value for the paging state")
            clustering = tuple(
                c.type.deserialize(raw)
                for c, raw in zip(table.clustering, raw_clustering, strict=True)
            )
        after = (state[1], clustering)
    remaining = state[3] if state else limit
    in_partition = state[4] if state else 0
    rows = _limited(plan, keys, after, per_partition, in_partition)
    page: list[list[bytes | None]] = []
    last: tuple[Partition, Row | None, int] | None = None
    for partition, row, count in rows:
        if remaining is not None and remaining <= 0:
            break
        page.append(_output(plan.now, chosen, partition, row, plan.context))
        last = (partition, row, count)
        if remaining is not None:
            remaining -= 1
        if page_size and len(page) >= page_size:
            break
    # A full page carries a paging state even when nothing follows (the next
    # page is then empty), as Cassandra's pager does; a LIMIT reached ends it.
    more = (
        last is not None
        and (remaining is None or remaining > 0)
        and bool(page_size)
        and len(page) >= (page_size or 0)
    )
    next_state = None
    if more and last is not None:
        partition, row, count = last
        next_state = _encode_position(table, partition, row, remaining, count)
    return RowsResult(chosen.specs, page, next_state)


@dataclass(frozen=True, slots=True)
class SelectPlan:
    """A prepared ``SELECT ... WHERE <every partition key column> = ?`` worked out once.

    ``run`` returns what ``run_select`` would, without resolving the WHERE clause or the
    selection again: the partition is found by the key's bytes as they were bound (key
    types are canonical). A result that would need paging is left to ``run_select``.
    """

    data: TableData
    decoders: list[Decoder]
    chosen: Selection
    # (column, bind index) in WHERE order, for the null checks ``resolve`` makes.
    key_markers: tuple[tuple[Column, int], ...]
    partition_indexes: tuple[int, ...]  # bind indexes in partition key order
    limit: ast.Term | None
    per_partition_limit: ast.Term | None

    @classmethod
    def build(
        cls, select: ast.Select, table: Table, data: TableData, specs: list[ColumnSpec]
    ) -> SelectPlan | None:
        """The plan, or None when ``run_select`` must run (it also raises what is wrong)."""
        if select.distinct or select.order_by or table.virtual or select.json:
            return None
        markers: dict[str, tuple[Column, int]] = {}
        for relation in select.where:
            column = table.column(relation.column)
            value = relation.value
            if (
                relation.token or relation.op != "=" or not isinstance(value, ast.BindMarker)
                or column is None or column.kind != "partition_key" or column.name in markers
                or not column.type.canonical or specs[value.index].type != column.type
            ):  # fmt: skip
                return None
            markers[column.name] = (column, value.index)
        if len(markers) != len(table.partition_key):
            return None
        chosen = selection(table, select)
        if chosen.aggregate or any(c is None for c in chosen.columns):
            return None  # functions, casts and token() take the general path
        return cls(
            data,
            bind_decoders(specs),
            chosen,
            tuple(markers.values()),
            tuple(markers[c.name][1] for c in table.partition_key),
            select.limit,
            select.per_partition_limit,
        )

    def run(
        self, values: list[bytes | None], page_size: int | None, clock: Callable[[], float]
    ) -> RowsResult | None:
        """The rows, or None when the result needs a paging state (``run_select``'s job)."""
        decoded = decode_values(self.decoders, values)
        for column, index in self.key_markers:
            if decoded[index] is UNSET:
                raise Invalid(f"Invalid unset value for column {column.name}")
            if decoded[index] is None:
                raise Invalid(f"Invalid null value in condition for column {column.name}")
        cap: int | None = None
        if self.limit is not None or self.per_partition_limit is not None:
            context = Context(decoded, clock)
            limit = positive_int(self.limit, context, "limit")
            per_partition = positive_int(self.per_partition_limit, context, "per partition limit")
            caps = [c for c in (limit, per_partition) if c is not None]
            cap = min(caps) if caps else None
        now = clock()
        partition = self.data.get_by_bytes(bound_key_bytes(values, self.partition_indexes))
        chosen = self.chosen
        if partition is None:
            return RowsResult(chosen.specs, [], None)
        if page_size and len(partition.rows) >= page_size:
            return None
        page: list[list[bytes | None]] = []
        for row in partition.rows:
            if cap is not None and len(page) >= cap:
                break
            if row.alive(now):
                page.append(_output(now, chosen, partition, row))
        if not page and partition.static.alive(now):
            page.append(_output(now, chosen, partition, None))  # only static values
        if page_size and len(page) >= page_size:
            return None  # a full page carries a paging state
        return RowsResult(chosen.specs, page, None)


def _check_distinct(table: Table, chosen: Selection) -> None:
    for item, column in zip(chosen.items, chosen.columns, strict=True):
        if (
            item.kind != "column"
            or column is None
            or column.kind not in ("partition_key", "static")
        ):
            raise Invalid(
                "SELECT DISTINCT queries must only request partition key columns and/or "
                "static columns"
            )


def _partitions(
    plan: _Plan, keys: list[tuple[object, ...]] | None, after: bytes | None
) -> Iterator[Partition]:
    if keys is not None:
        found = [p for p in (plan.data.get(key) for key in keys) if p is not None]
        if after is not None:
            for index, partition in enumerate(found):
                if partition.key_bytes == after:
                    found = found[index:]
                    break
        yield from found
        return
    start = None
    if after is not None:
        start = (murmur3_token(after), after)
    yield from list(plan.data.scan(start))


def _matching(
    plan: _Plan,
    keys: list[tuple[object, ...]] | None,
    after: tuple[bytes, tuple[object, ...] | None] | None,
) -> Iterator[tuple[Partition, Row | None]]:
    """Every live row the WHERE clause selects, in result order."""
    conditions = plan.restrictions.conditions
    has_row_conditions = any(c.column.kind in ("clustering", "regular") for c in conditions)
    for partition in _partitions(plan, keys, after[0] if after else None):
        if not plan.restrictions.token_matches(partition.token):
            continue
        if not _partition_matches(plan, partition):
            continue
        resume_key = None
        if after is not None and partition.key_bytes == after[0]:
            if after[1] is None:
                continue  # that partition was finished
            resume_key = plan.data.clustering_key(after[1])
        if plan.distinct:
            if partition.alive(plan.now):
                yield partition, None
            continue
        emitted = False
        any_live = False
        for row in partition.rows_after(resume_key, plan.reverse):
            if not row.alive(plan.now):
                continue
            any_live = True
            if all(_row_condition(plan, partition, row, c) for c in conditions):
                emitted = True
                yield partition, row
        if (
            not emitted and not any_live and resume_key is None and not has_row_conditions
            and partition.static.alive(plan.now)
        ):  # fmt: skip
            yield partition, None  # a partition with only static values


def _partition_matches(plan: _Plan, partition: Partition) -> bool:
    key: tuple[object, ...] | None = None
    for condition in plan.restrictions.conditions:
        column = condition.column
        if column.kind == "partition_key":
            key = key or plan.data.key_of(partition)
            if not condition_holds(condition, key[column.position]):
                return False
        elif column.kind == "static":
            if not condition_holds(condition, partition.static.value(column.slot, plan.now)):
                return False
    return True


def _row_condition(plan: _Plan, partition: Partition, row: Row, condition: Condition) -> bool:
    column = condition.column
    if column.kind == "clustering":
        return condition_holds(condition, row.clustering[column.position])
    if column.kind == "regular":
        return condition_holds(condition, row.value(column.slot, plan.now))
    return True


def _limited(
    plan: _Plan,
    keys: list[tuple[object, ...]] | None,
    after: tuple[bytes, tuple[object, ...] | None] | None,
    per_partition: int | None,
    already_in_partition: int,
) -> Iterator[tuple[Partition, Row | None, int]]:
    """Matching rows with PER PARTITION LIMIT applied, each with its count in its partition."""
    current: bytes | None = after[0] if after else None
    count = already_in_partition if after else 0
    for partition, row in _matching(plan, keys, after):
        if partition.key_bytes != current:
            current, count = partition.key_bytes, 0
        if per_partition is not None and count >= per_partition:
            continue
        count += 1
        yield partition, row, count


def _output(
    now: float, chosen: Selection, partition: Partition, row: Row | None,
    context: Context | None = None,
) -> list[bytes | None]:  # fmt: skip
    return [
        None if value is None else spec.type.serialize(value)
        for value, spec in zip(
            _values(now, chosen, partition, row, context), chosen.specs, strict=True
        )
    ]


def _values(
    now: float, chosen: Selection, partition: Partition, row: Row | None,
    context: Context | None,
) -> list[object]:  # fmt: skip
    """Each selector's Python value for one row (None for null); aggregates read their column."""
    values: list[object] = []
    for item, column in zip(chosen.items, chosen.columns, strict=True):
        if column is None and item.kind == "count":
            values.append(None)  # count(*): counted by the caller, row by row
            continue
        if column is None:
            assert context is not None
            values.append(
                selectors.value(
                    item, chosen.table, partition.token,
                    lambda c: _column_value(chosen, c, partition, row, now), context,
                )
            )  # fmt: skip
            continue
        cell: Cell | None = None
        value: object = None
        if column.kind == "partition_key":
            value = _key_value(chosen, partition, column)
        elif column.kind == "clustering":
            value = row.clustering[column.position] if row is not None else None
        elif item.kind == "column":
            holder = partition.static if column.kind == "static" else row
            value = holder.value(column.slot, now) if holder is not None else None
        else:
            holder = partition.static if column.kind == "static" else row
            cell = holder.cell(column.slot) if holder is not None else None
            if cell is not None and not cell.alive(now):
                cell = None
            value = cell.value if cell is not None else None
        if item.kind == "writetime":
            value = cell.timestamp if cell is not None else None
        elif item.kind == "ttl":
            expires = cell.expires if cell is not None else None
            value = max(0, math.ceil(expires - now)) if expires is not None else None
        values.append(value)
    return values


def _key_value(chosen: Selection, partition: Partition, column: Column) -> object:
    """A partition key column's value, decoded from the partition's key bytes."""
    return key_values(chosen.table, partition.key_bytes)[column.position]


def _column_value(
    chosen: Selection, column: Column, partition: Partition, row: Row | None, now: float
) -> object:
    if column.kind == "partition_key":
        return _key_value(chosen, partition, column)
    if column.kind == "clustering":
        return row.clustering[column.position] if row is not None else None
    holder = partition.static if column.kind == "static" else row
    return holder.value(column.slot, now) if holder is not None else None


def _aggregate(
    plan: _Plan, chosen: Selection, per_partition: int | None, grouped: int, limit: int | None
) -> RowsResult:
    """Aggregates (count, min, max, sum, avg) over every matching row, or per GROUP BY group.

    Other selectors take the group's first row's values; LIMIT caps the groups.
    """
    keys = plan.restrictions.partition_keys(plan.table)
    n_partition = len(plan.table.partition_key)
    output: list[list[bytes | None]] = []
    group: object = _NO_GROUP
    folds: list[selectors.Fold | None] = []
    counts: list[int] = []
    first: list[object] = []

    def emit() -> None:
        row: list[bytes | None] = []
        for index, (item, spec) in enumerate(zip(chosen.items, chosen.specs, strict=True)):
            fold = folds[index]
            if item.kind == "count":
                value: object = counts[index]
            elif fold is not None:
                value = fold.result()
            else:
                value = first[index]
            row.append(None if value is None else spec.type.serialize(value))
        output.append(row)

    def start() -> None:
        folds[:] = [
            selectors.Fold(item.function, spec.type) if item.kind == "aggregate" and item.function
            else None
            for item, spec in zip(chosen.items, chosen.specs, strict=True)
        ]  # fmt: skip
        counts[:] = [0] * len(chosen.items)
        first[:] = []

    start()
    for partition, row, _ in _limited(plan, keys, None, per_partition, 0):
        if grouped:
            clustering = row.clustering if row is not None else ()
            key = (partition.key_bytes, tuple(clustering[: max(0, grouped - n_partition)]))
            if key != group:
                if group is not _NO_GROUP:
                    emit()
                    if limit is not None and len(output) >= limit:
                        return RowsResult(chosen.specs, output, None)
                    start()
                group = key
        values = _values(plan.now, chosen, partition, row, plan.context)
        if not first:
            first[:] = values
        for index, item in enumerate(chosen.items):
            if item.kind == "count":
                if item.column is None or values[index] is not None:
                    counts[index] += 1
            fold = folds[index]
            if fold is not None:
                fold.add(values[index])
    if grouped:
        if group is not _NO_GROUP:
            emit()
    else:
        if not first:
            first[:] = [None] * len(chosen.items)
        emit()
    return RowsResult(chosen.specs, output, None)


_NO_GROUP = object()


def _sorted_page(
    plan: _Plan,
    chosen: Selection,
    keys: list[tuple[object, ...]],
    limit: int | None,
    per_partition: int | None,
    page_size: int | None,
    paging_state: bytes | None,
) -> RowsResult:
    """ORDER BY across several partitions (IN): sort everything, page by offset."""
    found = [(p, r) for p, r, _ in _limited(plan, keys, None, per_partition, 0)]
    found.sort(
        key=lambda item: item[1].sort_key if item[1] is not None else (), reverse=plan.reverse
    )
    if limit is not None:
        found = found[:limit]
    offset = 0
    if paging_state:
        state = _decode(paging_state)
        if state[0] != _OFFSET:
            raise Invalid("Invalid value for the paging state")
        offset = state[3] or 0
    end = len(found) if not page_size else min(len(found), offset + page_size)
    rows = [_output(plan.now, chosen, p, r, plan.context) for p, r in found[offset:end]]
    next_state = struct.pack(">Bi", _OFFSET, end) if end < len(found) else None
    return RowsResult(chosen.specs, rows, next_state)


# --- paging state -----------------------------------------------------------------


def _encode_position(
    table: Table, partition: Partition, row: Row | None, remaining: int | None, count: int
) -> bytes:
    parts = [struct.pack(">BH", _POSITION, len(partition.key_bytes)), partition.key_bytes]
    if row is None:
        parts.append(struct.pack(">i", -1))
    else:
        parts.append(struct.pack(">i", len(row.clustering)))
        for column, value in zip(table.clustering, row.clustering, strict=True):
            raw = column.type.serialize(value)
            parts.append(struct.pack(">i", len(raw)) + raw)
    parts.append(struct.pack(">ii", -1 if remaining is None else remaining, count))
    return b"".join(parts)


# (kind, partition key bytes, clustering value bytes or None, rows left for LIMIT, rows
# already returned from that partition); an offset state uses only the LIMIT slot.
_State = tuple[int, bytes, list[bytes] | None, int | None, int]


def _decode(state: bytes) -> _State:
    """Read back a paging state; anything this engine did not write is refused."""
    try:
        kind = state[0]
        if kind == _OFFSET:
            (offset,) = struct.unpack_from(">i", state, 1)
            return (_OFFSET, b"", None, offset, 0)
        if kind != _POSITION:
            raise ValueError
        (size,) = struct.unpack_from(">H", state, 1)
        key = state[3 : 3 + size]
        at = 3 + size
        (parts,) = struct.unpack_from(">i", state, at)
        at += 4
        raw_clustering: list[bytes] | None = None
        if parts >= 0:
            raw_clustering = []
            for _ in range(parts):
                (length,) = struct.unpack_from(">i", state, at)
                raw_clustering.append(state[at + 4 : at + 4 + length])
                at += 4 + length
        remaining, count = struct.unpack_from(">ii", state, at)
        if at + 8 != len(state):
            raise ValueError
    except (IndexError, ValueError, struct.error):
        raise Invalid("Invalid value for the paging state") from None
    return (_POSITION, key, raw_clustering, None if remaining < 0 else remaining, count)
