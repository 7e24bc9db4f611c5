"""Lightweight transactions: the ``IF`` conditions of UPDATE and DELETE, checked against one row.

A conditional write applies only if its conditions hold; otherwise Cassandra
answers ``[applied] = False`` with the current values of the columns the
conditions name (nothing more when the row does not exist), which is what
:func:`check` returns for the caller to turn into the ``[applied]`` row.
"""

from __future__ import annotations

from . import _ast as ast
from ._binding import Context, Receivers, evaluate
from ._errors import Invalid
from ._schema import Column, Table
from ._storage import Partition, Row, TableData
from ._types import INT, CQLType, ListType, MapType
from ._unset import UNSET
from ._where import column_of, compare

# Whether the conditions hold, and the values to show when they do not (None:
# the row does not exist, so only [applied] is shown).
Outcome = tuple[bool, list[tuple[Column, object]] | None]


def receive_conditions(
    table: Table, conditions: tuple[ast.IfCondition, ...], receivers: Receivers
) -> None:
    """Record the type of each bind marker in the IF conditions."""
    for condition in conditions:
        column = _condition_column(table, condition)
        operand = column.type
        if condition.key is not None:
            key_type, operand = _element_types(column)
            receivers.term(condition.key, receivers.spec(table, f"key({column.name})", key_type))
        if isinstance(condition.value, tuple):
            for term in condition.value:
                receivers.term(term, receivers.spec(table, column.name, operand))
        elif condition.op == "IN":
            in_type = ListType(operand, True)
            receivers.term(condition.value, receivers.spec(table, f"in({column.name})", in_type))
        else:
            receivers.term(condition.value, receivers.spec(table, column.name, operand))


def _condition_column(table: Table, condition: ast.IfCondition) -> Column:
    column = column_of(table, condition.column)
    if column.kind in ("partition_key", "clustering"):
        raise Invalid(f"PRIMARY KEY column '{column.name}' cannot have IF conditions")
    return column


def _element_types(column: Column) -> tuple[CQLType, CQLType]:
    if isinstance(column.type, MapType):
        return column.type.key, column.type.value
    if isinstance(column.type, ListType):
        return INT, column.type.element
    raise Invalid(f"Invalid element access syntax for non-collection column {column.name}")


def target(
    table: Table,
    data: TableData,
    partition_keys: list[tuple[object, ...]],
    clusterings: list[tuple[object, ...]] | None,
) -> tuple[Partition | None, Row | None]:
    """The one partition (and row) a conditional write names."""
    if len(partition_keys) != 1:
        raise Invalid("IN on the partition key is not supported with conditional updates")
    if clusterings is not None and len(clusterings) != 1:
        raise Invalid("IN on the clustering key columns is not supported with conditional updates")
    partition = data.get(partition_keys[0])
    row = None
    if partition is not None and clusterings:
        row = partition.get_row(data.clustering_key(clusterings[0]))
    return partition, row


def check(
    statement: ast.Update | ast.Delete,
    table: Table,
    partition: Partition | None,
    row: Row | None,
    context: Context,
    now: float,
) -> Outcome:
    """Whether IF EXISTS or the IF conditions hold for this row."""
    columns = [_condition_column(table, c) for c in statement.conditions]
    static_only = bool(columns) and all(c.kind == "static" for c in columns)
    if static_only:
        exists = partition is not None and partition.alive(now)
    else:
        exists = row is not None and row.alive(now)
    if statement.if_exists:
        return exists, None
    shown: list[tuple[Column, object]] = []
    holds = True
    for condition, column in zip(statement.conditions, columns, strict=True):
        current = _current(column, partition, row, now)
        if all(c is not column for c, _ in shown):
            shown.append((column, current))
        if not _holds(condition, column, current, context):
            holds = False
    return holds, (shown if exists else None)


def _current(column: Column, partition: Partition | None, row: Row | None, now: float) -> object:
    holder = (
        (partition.static if partition is not None else None) if column.kind == "static" else row
    )
    return holder.value(column.slot, now) if holder is not None else None


def _holds(condition: ast.IfCondition, column: Column, current: object, context: Context) -> bool:
    operand = column.type
    if condition.key is not None:
        key_type, operand = _element_types(column)
        key = evaluate(condition.key, key_type, context)
        if key is None or key is UNSET:
            raise Invalid(f"Invalid null value for {column.name} element access")
        current = _element(column, current, key)
    if condition.op == "IN":
        if isinstance(condition.value, tuple):
            values = [evaluate(t, operand, context, column.name) for t in condition.value]
        else:
            listed = evaluate(condition.value, ListType(operand, True), context)
            values = list(listed) if isinstance(listed, list) else []
        return any(_equal(operand, current, v) for v in values if v is not UNSET)
    assert not isinstance(condition.value, tuple)  # only IN takes a list
    value = evaluate(condition.value, operand, context, column.name)
    if value is UNSET:
        raise Invalid(f"Invalid 'unset' value in condition on {column.name}")
    if condition.op in ("=", "!="):
        return _equal(operand, current, value) == (condition.op == "=")
    if condition.op not in ("<", "<=", ">", ">="):
        raise Invalid(f"Unsupported operator {condition.op} in an IF condition")
    if value is None:
        raise Invalid(f'Invalid comparison with null for operator "{condition.op}"')
    if current is None:
        return False
    return compare(operand.sort_key(current), condition.op, operand.sort_key(value))


def _element(column: Column, current: object, key: object) -> object:
    if not isinstance(current, list):
        return None
    if isinstance(column.type, MapType):
        wanted = column.type.key.sort_key(key)
        for pair in current:
            assert isinstance(pair, tuple)
            if column.type.key.sort_key(pair[0]) == wanted:
                return pair[1]
        return None
    assert isinstance(key, int)
    return current[key] if 0 <= key < len(current) else None


def _equal(cql_type: CQLType, left: object, right: object) -> bool:
    if left is None or right is None:
        return left is None and right is None
    return bool(cql_type.sort_key(left) == cql_type.sort_key(right))
