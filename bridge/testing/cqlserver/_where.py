"""WHERE clauses: checking them against the primary key, and matching rows.

The checks are Cassandra's (which restrictions need ALLOW FILTERING, which key
parts a write must name) with Cassandra's messages, so a test written against
this server does not break on a real cluster.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from . import _ast as ast
from ._binding import Context, Receivers, evaluate
from ._errors import Invalid
from ._murmur3 import murmur3_token, partition_key_bytes
from ._schema import Column, Table
from ._types import BIGINT, CollectionType, CQLType, ListType, MapType, SetType
from ._unset import UNSET

FILTERING_MESSAGE = (
    "Cannot execute this query as it might involve data filtering and thus may have "
    "unpredictable performance. If you want to execute this query despite the performance "
    "unpredictability, use ALLOW FILTERING"
)


def column_of(table: Table, name: str) -> Column:
    column = table.column(name)
    if column is None:
        raise Invalid(f"Undefined column name {name} in table {table.keyspace}.{table.name}")
    return column


def receive(table: Table, relations: tuple[ast.Relation, ...], receivers: Receivers) -> None:
    """Record the type of each bind marker in the relations."""
    for relation in relations:
        if relation.token:
            for name in relation.column.split(","):
                column_of(table, name)
            assert not isinstance(relation.value, tuple)
            if isinstance(relation.value, ast.FunctionCall) and _is_token_call(relation.value):
                for column, arg in zip(table.partition_key, relation.value.args, strict=False):
                    receivers.term(arg, receivers.spec(table, column.name, column.type))
                continue
            receivers.term(relation.value, receivers.spec(table, "partition key token", BIGINT))
            continue
        column = column_of(table, relation.column)
        spec = receivers.spec(table, column.name, _operand_type(column, relation.op))
        if isinstance(relation.value, tuple):
            for term in relation.value:
                receivers.term(term, spec)
        elif relation.op == "IN":
            in_spec = receivers.spec(table, f"in({column.name})", ListType(column.type, True))
            receivers.term(relation.value, in_spec)
        else:
            receivers.term(relation.value, spec)


def _operand_type(column: Column, op: ast.Operator) -> CQLType:
    if op in ("CONTAINS", "CONTAINS KEY"):
        if not isinstance(column.type, CollectionType):
            raise Invalid(f"Cannot use {op} on non-collection column {column.name}")
        if op == "CONTAINS KEY":
            if not isinstance(column.type, MapType):
                raise Invalid(f"Cannot use CONTAINS KEY on non-map column {column.name}")
            return column.type.key
        if isinstance(column.type, MapType):
            return column.type.value
        assert isinstance(column.type, ListType | SetType)
        return column.type.element
    return column.type


def check_select(table: Table, relations: tuple[ast.Relation, ...], allow_filtering: bool) -> None:
    """Refuse, as Cassandra does, WHERE clauses that would need ALLOW FILTERING."""
    if table.virtual or allow_filtering:
        return
    ops: dict[str, list[str]] = {}
    has_token = False
    for relation in relations:
        if relation.token:
            has_token = True
            continue
        ops.setdefault(relation.column, []).append(relation.op)
    pk_restricted = [c for c in table.partition_key if c.name in ops]
    if pk_restricted:
        for column in pk_restricted:
            if any(op not in ("=", "IN") for op in ops[column.name]):
                raise Invalid(
                    "Only EQ and IN relation are supported on the partition key "
                    "(unless you use the token() function or allow filtering)"
                )
        missing = [c.name for c in table.partition_key if c.name not in ops]
        if missing:
            raise Invalid(
                f"Cannot execute this query as it might involve data filtering and thus may "
                f"have unpredictable performance. Partition key parts: {', '.join(missing)} "
                f"must be restricted as other parts are"
            )
    full_partition = len(pk_restricted) == len(table.partition_key)
    indexed = _indexed_restriction(table, ops)
    for column in table.columns:
        if column.kind in ("regular", "static") and column.name in ops and column.name != indexed:
            raise Invalid(FILTERING_MESSAGE)
    if indexed is not None:
        return  # a secondary index serves the query; the other restrictions are primary key ones
    for column in table.clustering:
        column_ops = ops.get(column.name)
        if column_ops is None:
            continue
        if not full_partition and not has_token:
            raise Invalid(FILTERING_MESSAGE)
        preceding = table.clustering[: column.position]
        for earlier in preceding:
            if earlier.name not in ops:
                raise Invalid(
                    f'PRIMARY KEY column "{column.name}" cannot be restricted as preceding '
                    f'column "{earlier.name}" is not restricted'
                )
            if any(op not in ("=", "IN") for op in ops[earlier.name]):
                raise Invalid(
                    f'Clustering column "{column.name}" cannot be restricted (preceding column '
                    f'"{earlier.name}" is restricted by a non-EQ relation)'
                )
        if any(op in ("CONTAINS", "CONTAINS KEY", "!=") for op in column_ops):
            raise Invalid(FILTERING_MESSAGE)


def check_write(table: Table, statement: ast.Insert | ast.Update | ast.Delete) -> None:
    """What Cassandra refuses at PREPARE: a write that does not name its row's primary key."""
    if isinstance(statement, ast.Insert):
        named = set(statement.columns)
        missing = [c.name for c in table.partition_key if c.name not in named]
        if missing:
            raise Invalid(f"Some partition key parts are missing: {', '.join(missing)}")
        regular = any(
            (column := table.column(name)) is not None and column.kind == "regular"
            for name in named
        )
        missing = [c.name for c in table.clustering if c.name not in named]
        if missing and regular:  # static-only inserts are judged when run
            raise Invalid(f"Some clustering keys are missing: {', '.join(missing)}")
        return
    if any(relation.token for relation in statement.where):
        return  # refused when run, with the message for it
    restricted: dict[str, list[str]] = {}
    for relation in statement.where:
        column = column_of(table, relation.column)
        if column.kind in ("regular", "static"):
            raise Invalid(f"Non PRIMARY KEY columns found in where clause: {column.name}")
        restricted.setdefault(column.name, []).append(relation.op)
    missing = [c.name for c in table.partition_key if c.name not in restricted]
    if missing:
        raise Invalid(f"Some partition key parts are missing: {', '.join(missing)}")


def _token_of_call(table: Table, call: ast.FunctionCall, context: Context) -> object:
    """``token(k1, k2)`` written as a term: the Murmur3 token of those key values."""
    if len(call.args) != len(table.partition_key):
        raise Invalid(
            f"Invalid number of arguments in call to function system.token: "
            f"{len(table.partition_key)} required but {len(call.args)} provided"
        )
    parts: list[bytes] = []
    for column, arg in zip(table.partition_key, call.args, strict=True):
        value = evaluate(arg, column.type, context, column.name)
        if value is None or value is UNSET:
            return None
        parts.append(column.type.serialize(value))
    return murmur3_token(partition_key_bytes(parts))


def _is_token_call(term: object) -> bool:
    return isinstance(term, ast.FunctionCall) and term.name == "token"


def _indexed_restriction(table: Table, ops: dict[str, list[str]]) -> str | None:
    """The column whose secondary index can serve these restrictions, if one can.

    An index on ``v`` serves ``v = x``; on ``values(c)`` ``c CONTAINS x``; on ``keys(m)``
    ``m CONTAINS KEY x``. (Cassandra then reads one index; anything else is filtering.)
    """
    usable = {"": ("=",), "values": ("CONTAINS",), "keys": ("CONTAINS KEY",), "full": ("=",)}
    for name, column_ops in ops.items():
        for column_name, target in table.indexes.values():
            if column_name != name:
                continue
            kind = target.split("(")[0] if "(" in target else ""
            column = table.column(name)
            if column is not None and isinstance(column.type, CollectionType) and kind == "":
                kind = "values"
            if any(op in usable.get(kind, ()) for op in column_ops):
                return name
    return None


@dataclass
class Condition:
    column: Column
    op: ast.Operator
    value: object  # a list of values for IN


@dataclass
class Restrictions:
    """A WHERE clause with its values: what to look up directly and what to check per row."""

    equal: dict[str, list[object]]  # columns restricted by = or IN, their values
    conditions: list[Condition]
    token: list[tuple[str, int]]

    def partition_keys(self, table: Table) -> list[tuple[object, ...]] | None:
        """Every partition key the clause names, or None if it does not name them all."""
        if not all(c.name in self.equal for c in table.partition_key):
            return None
        choices = [self.equal[c.name] for c in table.partition_key]
        keys: dict[bytes, tuple[object, ...]] = {}
        for combination in itertools.product(*choices):
            raw = b"".join(
                c.type.serialize(v) + b"\x00"
                for c, v in zip(table.partition_key, combination, strict=True)
            )
            keys.setdefault(raw, combination)
        return sorted(
            keys.values(),
            key=lambda key: tuple(
                c.type.sort_key(v) for c, v in zip(table.partition_key, key, strict=True)
            ),
        )

    def token_matches(self, token: int) -> bool:
        return all(compare(token, op, bound) for op, bound in self.token)


def resolve(table: Table, relations: tuple[ast.Relation, ...], context: Context) -> Restrictions:
    """Evaluate the relations' values for this request."""
    equal: dict[str, list[object]] = {}
    conditions: list[Condition] = []
    token: list[tuple[str, int]] = []
    for relation in relations:
        if relation.token:
            assert not isinstance(relation.value, tuple)
            names = relation.column.split(",")
            if names != [c.name for c in table.partition_key]:
                raise Invalid(
                    "The token function arguments must be in the partition key order: "
                    + ", ".join(c.name for c in table.partition_key)
                )
            if isinstance(relation.value, ast.FunctionCall) and _is_token_call(relation.value):
                bound = _token_of_call(table, relation.value, context)
            else:
                bound = evaluate(relation.value, BIGINT, context)
            if bound is UNSET:
                raise Invalid("Invalid unset value for partition key token")
            if not isinstance(bound, int):
                raise Invalid("Invalid null value for partition key token")
            token.append((relation.op, bound))
            continue
        column = column_of(table, relation.column)
        operand = _operand_type(column, relation.op)
        value: object
        if relation.op == "IN":
            if isinstance(relation.value, tuple):
                values = [evaluate(t, operand, context, column.name) for t in relation.value]
            else:
                listed = evaluate(relation.value, ListType(operand, True), context)
                if listed is UNSET:
                    raise Invalid(f"Invalid unset value for column {column.name}")
                if listed is None:
                    raise Invalid(f"Invalid null value for IN restriction on {column.name}")
                assert isinstance(listed, list)
                values = listed
            if any(v is UNSET for v in values):
                raise Invalid(f"Invalid unset value for column {column.name}")
            if any(v is None for v in values):
                raise Invalid(f"Invalid null value in condition for column {column.name}")
            value = values
            if column.name in equal:
                raise Invalid(f"{column.name} cannot be restricted by more than one relation")
            equal[column.name] = values
        else:
            assert not isinstance(relation.value, tuple)
            value = evaluate(relation.value, operand, context, column.name)
            if value is UNSET:
                raise Invalid(f"Invalid unset value for column {column.name}")
            if value is None:
                raise Invalid(f"Invalid null value in condition for column {column.name}")
            if relation.op == "=":
                if column.name in equal:
                    raise Invalid(
                        f"{column.name} cannot be restricted by more than one relation if it "
                        f"includes an Equal"
                    )
                equal[column.name] = [value]
        conditions.append(Condition(column, relation.op, value))
    return Restrictions(equal, conditions, token)


def compare(left: Any, op: str, right: Any) -> bool:
    """Compare two sort keys (or tokens) with a CQL operator."""
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    raise Invalid(f"Unsupported operator {op}")


def condition_holds(condition: Condition, value: object) -> bool:
    """Whether a row whose column holds ``value`` (None if null) satisfies the condition."""
    if value is None:
        return False
    cql_type = condition.column.type
    if condition.op in ("CONTAINS", "CONTAINS KEY"):
        assert isinstance(value, list)
        if isinstance(cql_type, MapType):
            index = 0 if condition.op == "CONTAINS KEY" else 1
            element_type = cql_type.key if index == 0 else cql_type.value
            target = element_type.sort_key(condition.value)
            return any(element_type.sort_key(pair[index]) == target for pair in value)
        assert isinstance(cql_type, ListType | SetType)
        target = cql_type.element.sort_key(condition.value)
        return any(cql_type.element.sort_key(item) == target for item in value)
    key = cql_type.sort_key(value)
    if condition.op == "IN":
        assert isinstance(condition.value, list)
        return any(key == cql_type.sort_key(v) for v in condition.value)
    return compare(key, condition.op, cql_type.sort_key(condition.value))


Purpose = Literal["update", "delete"]


def write_keys(
    table: Table, restrictions: Restrictions, purpose: Purpose, *, static_only: bool
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]] | None, list[Condition]]:
    """The partitions and clustering keys an UPDATE or DELETE names.

    Returns (partition keys, full clustering keys or None when the statement
    targets whole partitions / a clustering range, conditions on a clustering
    range for DELETE).
    """
    for condition in restrictions.conditions:
        if condition.column.kind in ("regular", "static"):
            raise Invalid(f"Non PRIMARY KEY columns found in where clause: {condition.column.name}")
        if condition.column.kind == "partition_key" and condition.op not in ("=", "IN"):
            raise Invalid(
                f"Only EQ and IN relation are supported on the partition key (got {condition.op})"
            )
    if restrictions.token:
        raise Invalid("The token function cannot be used in WHERE clauses for UPDATE and DELETE")
    partition_keys = restrictions.partition_keys(table)
    if partition_keys is None:
        missing = [c.name for c in table.partition_key if c.name not in restrictions.equal]
        raise Invalid(f"Some partition key parts are missing: {', '.join(missing)}")
    named = [c for c in table.clustering if c.name in restrictions.equal]
    ranges = [
        cond for cond in restrictions.conditions
        if cond.column.kind == "clustering" and cond.op not in ("=", "IN")
    ]  # fmt: skip
    if len(named) == len(table.clustering) and not ranges:
        choices = [restrictions.equal[c.name] for c in table.clustering]
        return partition_keys, [tuple(p) for p in itertools.product(*choices)], []
    if purpose == "update" or not table.clustering:
        if static_only and not named and not ranges:
            return partition_keys, None, []
        missing = [c.name for c in table.clustering if c.name not in restrictions.equal]
        if ranges and purpose == "update":
            raise Invalid(
                "Slice restrictions are not supported on the clustering columns "
                "in UPDATE statements"
            )
        raise Invalid(f"Some clustering keys are missing: {', '.join(missing)}")
    clustering_conditions = [c for c in restrictions.conditions if c.column.kind == "clustering"]
    return partition_keys, None, clustering_conditions
