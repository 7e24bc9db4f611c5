"""What executing a statement returns; the server encodes these as RESULT messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ._types import CQLType

if TYPE_CHECKING:
    from . import _ast as ast


@dataclass
class ColumnSpec:
    """One column of result or bind metadata."""

    keyspace: str
    table: str
    name: str
    type: CQLType


@dataclass
class VoidResult:
    pass


@dataclass
class RowsResult:
    """Rows already serialized; ``paging_state`` is opaque and None on the last page."""

    columns: list[ColumnSpec]
    rows: list[list[bytes | None]]
    paging_state: bytes | None = None
    warnings: tuple[str, ...] = ()  # client warnings Cassandra would attach


@dataclass
class SetKeyspaceResult:
    keyspace: str


@dataclass
class SchemaChangeResult:
    change_type: Literal["CREATED", "UPDATED", "DROPPED"]
    target: Literal["KEYSPACE", "TABLE", "TYPE"]
    keyspace: str
    name: str | None = None


Result = VoidResult | RowsResult | SetKeyspaceResult | SchemaChangeResult


@dataclass
class Prepared:
    """A parsed statement with its bind and result metadata, cached by ``id``."""

    id: bytes
    query: str
    keyspace: str | None
    bind: list[ColumnSpec]
    bind_names: list[str]
    pk_indexes: list[int]
    result: list[ColumnSpec] | None
    statement: ast.Statement | None = field(default=None, repr=False, compare=False)
    tables: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False, compare=False)
