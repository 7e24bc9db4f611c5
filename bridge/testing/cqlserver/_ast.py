"""The syntax tree the CQL parser produces: one frozen dataclass per construct.

Kept apart from the parser so the type and execution modules can read terms
without importing the grammar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# --- terms (values written in a statement) ---------------------------------

ConstantKind = Literal["string", "integer", "float", "boolean", "uuid", "hex", "duration"]


@dataclass(frozen=True)
class Constant:
    """A literal as written; its meaning depends on the type it is assigned to."""

    kind: ConstantKind
    text: str


@dataclass(frozen=True)
class Null:
    """The literal ``null``."""


@dataclass(frozen=True)
class BindMarker:
    """``?`` or ``:name``; ``index`` counts markers in order of appearance."""

    index: int
    name: str | None


@dataclass(frozen=True)
class ListTerm:
    items: tuple[Term, ...]


@dataclass(frozen=True)
class SetTerm:
    items: tuple[Term, ...]


@dataclass(frozen=True)
class MapTerm:
    items: tuple[tuple[Term, Term], ...]


@dataclass(frozen=True)
class TupleTerm:
    """``(1, 'a')``: a tuple value."""

    items: tuple[Term, ...]


@dataclass(frozen=True)
class UserTypeTerm:
    """``{street: 'x', zip: 1}``: a user-defined type value, fields by name."""

    fields: tuple[tuple[str, Term], ...]


@dataclass(frozen=True, eq=False)
class Decoded:
    """A value already decoded (from an INSERT JSON document); evaluates to itself."""

    value: object


@dataclass(frozen=True)
class FunctionCall:
    """A function in a term position, e.g. ``now()`` or ``toTimestamp(now())``."""

    name: str
    args: tuple[Term, ...]


@dataclass(frozen=True)
class ColumnRef:
    """A column used inside a term: only ``c = c + ...`` style updates need it."""

    name: str


Term = (
    Constant
    | Null
    | BindMarker
    | ListTerm
    | SetTerm
    | MapTerm
    | TupleTerm
    | UserTypeTerm
    | FunctionCall
    | ColumnRef
    | Decoded
)


# --- statement parts --------------------------------------------------------


@dataclass(frozen=True)
class TableName:
    keyspace: str | None
    name: str


Operator = Literal["=", "<", "<=", ">", ">=", "!=", "IN", "CONTAINS", "CONTAINS KEY"]


@dataclass(frozen=True)
class Relation:
    """``column op value`` in a WHERE clause; ``IN`` takes a tuple or one marker."""

    column: str
    op: Operator
    value: Term | tuple[Term, ...]
    token: bool = False  # token(column) op value


@dataclass(frozen=True)
class Selector:
    """One item of a SELECT list.

    ``aggregate`` is min/max/sum/avg of ``column``; ``token``, ``cast`` and
    ``function`` take their operands as selectors in ``args``.
    """

    kind: Literal[
        "column", "count", "writetime", "ttl", "aggregate", "token", "cast", "function", "field"
    ]
    column: str | None
    alias: str | None
    function: str | None = None
    args: tuple[Selector, ...] = ()
    cast: str | None = None  # the target type's text (for "field": the field's name)


@dataclass(frozen=True)
class Using:
    ttl: Term | None = None
    timestamp: Term | None = None


@dataclass(frozen=True)
class Assignment:
    """One item of UPDATE ... SET.

    ``op`` is ``=`` (``c = v``), ``+`` (``c = c + v``), ``prepend`` (``c = v + c``),
    ``-`` (``c = c - v``), ``index`` (``c[k] = v``) or ``field`` (``udt.f = v``, the
    field's name in ``field``).
    """

    column: str
    op: Literal["=", "+", "-", "prepend", "index", "field"]
    value: Term
    key: Term | None = None
    field: str | None = None


# --- statements -------------------------------------------------------------


@dataclass(frozen=True)
class Select:
    table: TableName
    selectors: tuple[Selector, ...]  # empty means *
    where: tuple[Relation, ...]
    order_by: tuple[tuple[str, Literal["asc", "desc"]], ...]
    limit: Term | None
    per_partition_limit: Term | None
    allow_filtering: bool
    distinct: bool = False
    group_by: tuple[str, ...] = ()
    json: bool = False  # SELECT JSON: one "[json]" text column per row


@dataclass(frozen=True)
class Insert:
    table: TableName
    columns: tuple[str, ...]
    values: tuple[Term, ...]
    if_not_exists: bool
    using: Using
    json: Term | None = None  # INSERT ... JSON: the document (columns and values then empty)
    json_default_unset: bool = False  # DEFAULT UNSET: columns the document omits stay


@dataclass(frozen=True)
class IfCondition:
    """One ``IF`` condition of a lightweight transaction: ``column[key] op value``."""

    column: str
    op: Operator
    value: Term | tuple[Term, ...]
    key: Term | None = None


@dataclass(frozen=True)
class Update:
    table: TableName
    using: Using
    assignments: tuple[Assignment, ...]
    where: tuple[Relation, ...]
    if_exists: bool
    conditions: tuple[IfCondition, ...] = ()


@dataclass(frozen=True)
class DeleteTarget:
    """A column to delete, or one element of a collection column (``m[k]``)."""

    column: str
    key: Term | None = None


@dataclass(frozen=True)
class Delete:
    table: TableName
    targets: tuple[DeleteTarget, ...]  # empty means the whole row(s)
    using: Using
    where: tuple[Relation, ...]
    if_exists: bool
    conditions: tuple[IfCondition, ...] = ()


@dataclass(frozen=True)
class Batch:
    kind: Literal["logged", "unlogged", "counter"]
    using: Using
    statements: tuple[Insert | Update | Delete, ...]


@dataclass(frozen=True)
class ColumnDefinition:
    name: str
    type: str
    static: bool
    primary_key: bool


@dataclass(frozen=True)
class CreateKeyspace:
    name: str
    if_not_exists: bool
    options: dict[str, object] = field(hash=False)


@dataclass(frozen=True)
class CreateTable:
    table: TableName
    if_not_exists: bool
    columns: tuple[ColumnDefinition, ...]
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    clustering_order: tuple[tuple[str, Literal["asc", "desc"]], ...]
    options: dict[str, object] = field(hash=False)


@dataclass(frozen=True)
class DropKeyspace:
    name: str
    if_exists: bool


@dataclass(frozen=True)
class DropTable:
    table: TableName
    if_exists: bool


@dataclass(frozen=True)
class AlterTable:
    """``ALTER TABLE``: one of ADD columns, DROP columns, RENAME key columns, WITH options."""

    table: TableName
    action: Literal["add", "drop", "rename", "with"]
    added: tuple[ColumnDefinition, ...] = ()
    dropped: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    options: dict[str, object] = field(default_factory=dict, hash=False)
    if_exists: bool = False  # the table
    if_column: bool = False  # ADD IF NOT EXISTS / DROP IF EXISTS / RENAME IF EXISTS


@dataclass(frozen=True)
class AlterKeyspace:
    name: str
    if_exists: bool
    options: dict[str, object] = field(hash=False)


@dataclass(frozen=True)
class CreateType:
    keyspace: str | None
    name: str
    if_not_exists: bool
    fields: tuple[tuple[str, str], ...]  # (name, type text)


@dataclass(frozen=True)
class DropType:
    keyspace: str | None
    name: str
    if_exists: bool


@dataclass(frozen=True)
class AlterType:
    """``ALTER TYPE``: ADD a field, or RENAME fields."""

    keyspace: str | None
    name: str
    added: tuple[tuple[str, str], ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CreateIndex:
    """``CREATE INDEX [name] ON table (target)``; ``target`` is ``v``, ``keys(m)``, ..."""

    table: TableName
    name: str | None
    column: str
    target: Literal["values", "keys", "entries", "full"] | None  # None: the column itself
    if_not_exists: bool
    custom: str | None = None  # USING 'class'


@dataclass(frozen=True)
class DropIndex:
    keyspace: str | None
    name: str
    if_exists: bool


@dataclass(frozen=True)
class RoleStatement:
    """CREATE / ALTER / DROP of a ROLE (or USER, the older spelling that implies LOGIN)."""

    action: Literal["create", "alter", "drop"]
    name: str
    if_flag: bool  # IF NOT EXISTS / IF EXISTS
    user_syntax: bool
    options: dict[str, object] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ListRoles:
    """LIST ROLES [OF role] [NORECURSIVE], or LIST USERS (the older spelling)."""

    users: bool
    of: str | None = None
    recursive: bool = True


@dataclass(frozen=True)
class Describe:
    """DESCRIBE [FULL] SCHEMA | KEYSPACES | TABLES | TYPES | KEYSPACE [ks] | TABLE [ks.]t |
    TYPE [ks.]t | [ks.]name (generic: a keyspace, else a table)."""

    kind: Literal["schema", "keyspaces", "tables", "types", "keyspace", "table", "type", "generic"]
    keyspace: str | None = None
    name: str | None = None
    full: bool = False


@dataclass(frozen=True)
class Resource:
    """What a permission is on: ``data`` (all keyspaces), ``keyspace`` (ks), ``table``
    (ks or None for the session's, t), ``roles`` (all roles) or ``role`` (name)."""

    kind: Literal["data", "keyspace", "table", "roles", "role"]
    names: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class GrantRole:
    """GRANT role TO grantee, or REVOKE role FROM grantee: role membership."""

    action: Literal["grant", "revoke"]
    role: str
    grantee: str


@dataclass(frozen=True)
class Grant:
    """GRANT permission ON resource TO role, or REVOKE ... FROM role."""

    action: Literal["grant", "revoke"]
    permissions: tuple[str, ...] | None  # None: ALL PERMISSIONS
    resource: Resource
    role: str


@dataclass(frozen=True)
class ListPermissions:
    """LIST permission|ALL [ON resource] [OF role] [NORECURSIVE]."""

    permissions: tuple[str, ...] | None
    resource: Resource | None
    role: str | None
    recursive: bool


@dataclass(frozen=True)
class Disabled:
    """A statement Cassandra 4.1 refuses in its default configuration (views, functions)."""

    message: str


@dataclass(frozen=True)
class Truncate:
    table: TableName


@dataclass(frozen=True)
class Use:
    keyspace: str


Statement = (
    Select
    | Insert
    | Update
    | Delete
    | Batch
    | CreateKeyspace
    | CreateTable
    | DropKeyspace
    | DropTable
    | AlterTable
    | AlterKeyspace
    | CreateType
    | DropType
    | AlterType
    | CreateIndex
    | DropIndex
    | RoleStatement
    | ListRoles
    | Describe
    | GrantRole
    | Grant
    | ListPermissions
    | Disabled
    | Truncate
    | Use
)
