"""Keyspaces, tables and columns, and the ``system_schema`` rows that describe them.

The rows follow Cassandra 4.x's ``system_schema`` layout closely enough for the
cassandra-driver's ``SchemaParserV4`` to rebuild ``cluster.metadata`` (partition
keys included, so token-aware routing works).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._errors import ConfigurationError
from ._types import CollectionType, CQLType, UserType, UserTypes, parse_type

ColumnKind = Literal["partition_key", "clustering", "regular", "static"]


@dataclass
class Column:
    name: str
    type: CQLType
    kind: ColumnKind
    position: int  # index in the partition key or clustering; -1 for the others
    clustering_order: Literal["asc", "desc", "none"] = "none"
    # Where a regular or static column's cell sits in a stored row (see ``_storage.Row``);
    # given by its table, never reused, so a column dropped and added again starts empty.
    slot: int = -1


@dataclass
class Table:
    keyspace: str
    name: str
    columns: list[Column]  # as defined
    partition_key: list[Column]
    clustering: list[Column]
    options: dict[str, object] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    virtual: bool = False
    # Secondary indexes: name -> (column name, target as system_schema shows it).
    indexes: dict[str, tuple[str, str]] = field(default_factory=dict)
    slots: int = 0  # how many row slots were ever given to columns

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the name lookup (and give new columns a slot) after ALTER TABLE."""
        self._by_name = {column.name: column for column in self.columns}
        for column in self.columns:
            if column.kind in ("regular", "static") and column.slot < 0:
                column.slot = self.slots
                self.slots += 1

    def column(self, name: str) -> Column | None:
        return self._by_name.get(name)

    def select_order(self) -> list[Column]:
        """The columns of ``SELECT *``: keys, then static and regular ones as Cassandra lists them.

        Cassandra lists non-key columns by name, single-cell ones before multi-cell
        (non-frozen collection) ones, static before regular.
        """

        def rest(kind: ColumnKind) -> list[Column]:
            chosen = [c for c in self.columns if c.kind == kind]
            return sorted(chosen, key=lambda c: (_multi_cell(c.type), c.name))

        return [*self.partition_key, *self.clustering, *rest("static"), *rest("regular")]


def _multi_cell(cql_type: CQLType) -> bool:
    return isinstance(cql_type, CollectionType | UserType) and cql_type.is_multi_cell()


@dataclass
class Keyspace:
    name: str
    replication: dict[str, str]
    durable_writes: bool = True
    tables: dict[str, Table] = field(default_factory=dict)
    types: dict[str, UserType] = field(default_factory=dict)


def make_table(
    keyspace: str,
    name: str,
    columns: list[tuple[str, str, str]],
    *,
    clustering_order: Mapping[str, str] | None = None,
    options: dict[str, object] | None = None,
    virtual: bool = False,
    user_types: UserTypes | None = None,
) -> Table:
    """A table from ``(name, cql type, kind)`` triples, keys in the order given."""
    order = clustering_order or {}
    built: list[Column] = []
    positions = {"partition_key": 0, "clustering": 0}
    for column_name, type_text, kind in columns:
        assert kind in ("partition_key", "clustering", "regular", "static"), kind
        position = -1
        if kind in positions:
            position = positions[kind]
            positions[kind] += 1
        direction: Literal["asc", "desc", "none"] = "none"
        if kind == "clustering":
            direction = "desc" if order.get(column_name) == "desc" else "asc"
        cql_type = parse_type(type_text, user_types)
        built.append(Column(column_name, cql_type, kind, position, direction))  # type: ignore[arg-type]
    return Table(
        keyspace,
        name,
        built,
        [c for c in built if c.kind == "partition_key"],
        [c for c in built if c.kind == "clustering"],
        options=dict(options or {}),
        virtual=virtual,
    )


def normalize_replication(replication: dict[str, str]) -> dict[str, str]:
    """Spell the strategy class in full, as ``system_schema.keyspaces`` shows it."""
    result = dict(replication)
    strategy = result.get("class", "")
    if strategy and "." not in strategy:
        result["class"] = f"org.apache.cassandra.locator.{strategy}"
    return result


# --- system_schema ------------------------------------------------------------

_TEXT_PK = ("keyspace_name", "text", "partition_key")

SYSTEM_SCHEMA_TABLES: dict[str, list[tuple[str, str, str]]] = {
    "keyspaces": [
        _TEXT_PK,
        ("durable_writes", "boolean", "regular"),
        ("replication", "frozen<map<text, text>>", "regular"),
    ],
    "tables": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("additional_write_policy", "text", "regular"),
        ("bloom_filter_fp_chance", "double", "regular"),
        ("caching", "frozen<map<text, text>>", "regular"),
        ("cdc", "boolean", "regular"),
        ("comment", "text", "regular"),
        ("compaction", "frozen<map<text, text>>", "regular"),
        ("compression", "frozen<map<text, text>>", "regular"),
        ("crc_check_chance", "double", "regular"),
        ("default_time_to_live", "int", "regular"),
        ("extensions", "frozen<map<text, blob>>", "regular"),
        ("flags", "frozen<set<text>>", "regular"),
        ("gc_grace_seconds", "int", "regular"),
        ("id", "uuid", "regular"),
        ("max_index_interval", "int", "regular"),
        ("memtable_flush_period_in_ms", "int", "regular"),
        ("min_index_interval", "int", "regular"),
        ("read_repair", "text", "regular"),
        ("speculative_retry", "text", "regular"),
    ],
    "columns": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("column_name", "text", "clustering"),
        ("clustering_order", "text", "regular"),
        ("column_name_bytes", "blob", "regular"),
        ("kind", "text", "regular"),
        ("position", "int", "regular"),
        ("type", "text", "regular"),
    ],
    "dropped_columns": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("column_name", "text", "clustering"),
        ("dropped_time", "timestamp", "regular"),
        ("kind", "text", "regular"),
        ("type", "text", "regular"),
    ],
    "types": [
        _TEXT_PK,
        ("type_name", "text", "clustering"),
        ("field_names", "frozen<list<text>>", "regular"),
        ("field_types", "frozen<list<text>>", "regular"),
    ],
    "functions": [
        _TEXT_PK,
        ("function_name", "text", "clustering"),
        ("argument_types", "frozen<list<text>>", "clustering"),
        ("argument_names", "frozen<list<text>>", "regular"),
        ("body", "text", "regular"),
        ("called_on_null_input", "boolean", "regular"),
        ("language", "text", "regular"),
        ("return_type", "text", "regular"),
    ],
    "aggregates": [
        _TEXT_PK,
        ("aggregate_name", "text", "clustering"),
        ("argument_types", "frozen<list<text>>", "clustering"),
        ("final_func", "text", "regular"),
        ("initcond", "text", "regular"),
        ("return_type", "text", "regular"),
        ("state_func", "text", "regular"),
        ("state_type", "text", "regular"),
    ],
    "indexes": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("index_name", "text", "clustering"),
        ("kind", "text", "regular"),
        ("options", "frozen<map<text, text>>", "regular"),
    ],
    "triggers": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("trigger_name", "text", "clustering"),
        ("options", "frozen<map<text, text>>", "regular"),
    ],
    "views": [
        _TEXT_PK,
        ("view_name", "text", "clustering"),
        ("base_table_id", "uuid", "regular"),
        ("base_table_name", "text", "regular"),
        ("include_all_columns", "boolean", "regular"),
        ("where_clause", "text", "regular"),
        ("id", "uuid", "regular"),
    ],
}

SYSTEM_VIRTUAL_SCHEMA_TABLES: dict[str, list[tuple[str, str, str]]] = {
    "keyspaces": [_TEXT_PK],
    "tables": [_TEXT_PK, ("table_name", "text", "clustering"), ("comment", "text", "regular")],
    "columns": [
        _TEXT_PK,
        ("table_name", "text", "clustering"),
        ("column_name", "text", "clustering"),
        ("clustering_order", "text", "regular"),
        ("column_name_bytes", "blob", "regular"),
        ("kind", "text", "regular"),
        ("position", "int", "regular"),
        ("type", "text", "regular"),
    ],
}

# The system keyspaces a Cassandra 4 node lists, with their replication.
SYSTEM_KEYSPACES: dict[str, dict[str, str]] = {
    "system": {"class": "org.apache.cassandra.locator.LocalStrategy"},
    "system_schema": {"class": "org.apache.cassandra.locator.LocalStrategy"},
    "system_auth": {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "1",
    },
    "system_distributed": {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "3",
    },
    "system_traces": {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "2",
    },
}

# Defaults Cassandra 4 shows for a table created without options.
TABLE_OPTION_DEFAULTS: dict[str, object] = {
    "additional_write_policy": "99p",
    "bloom_filter_fp_chance": 0.01,
    "caching": {"keys": "ALL", "rows_per_partition": "NONE"},
    "cdc": False,
    "comment": "",
    "compaction": {
        "class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
        "max_threshold": "32",
        "min_threshold": "4",
    },
    "compression": {
        "chunk_length_in_kb": "16",
        "class": "org.apache.cassandra.io.compress.LZ4Compressor",
    },
    "crc_check_chance": 1.0,
    "default_time_to_live": 0,
    "extensions": {},
    "gc_grace_seconds": 864000,
    "max_index_interval": 2048,
    "memtable_flush_period_in_ms": 0,
    "min_index_interval": 128,
    "read_repair": "BLOCKING",
    "speculative_retry": "99p",
}


def normalize_table_options(options: Mapping[str, object]) -> dict[str, object]:
    """Options as Cassandra stores them: strategy classes in full, compression's defaults."""
    result = dict(options)
    compression = result.get("compression")
    if isinstance(compression, dict):
        result["compression"] = _compression(compression)
    compaction = result.get("compaction")
    if isinstance(compaction, dict) and "class" in compaction:
        compaction = dict(compaction)
        compaction["class"] = _full_class(
            compaction["class"], "org.apache.cassandra.db.compaction."
        )
        compaction.setdefault("max_threshold", "32")
        compaction.setdefault("min_threshold", "4")
        result["compaction"] = compaction
    return result


def _compression(given: dict[str, str]) -> dict[str, str]:
    """``CompressionParams.asMap``: disabled is ``{'enabled': 'false'}``, else class and chunk."""
    options = dict(given)
    enabled = options.pop("enabled", "true").lower() != "false"
    if "sstable_compression" in options:  # the pre-3.0 spelling
        options.setdefault("class", options.pop("sstable_compression"))
    if "chunk_length_kb" in options:
        options.setdefault("chunk_length_in_kb", options.pop("chunk_length_kb"))
    if not enabled or not options:
        return {"enabled": "false"}
    if not options.get("class"):
        raise ConfigurationError("Missing sub-option 'class' for the 'compression' option.")
    options["class"] = _full_class(options["class"], "org.apache.cassandra.io.compress.")
    options.setdefault("chunk_length_in_kb", "16")
    return options


def _full_class(name: str, package: str) -> str:
    return name if "." in name else package + name


def table_option(table: Table, name: str) -> object:
    """An option as ``system_schema.tables`` shows it: the table's own value or the default."""
    value = table.options.get(name, TABLE_OPTION_DEFAULTS.get(name))
    if isinstance(value, dict):
        return sorted(value.items())
    return value


def keyspace_rows(keyspaces: list[Keyspace]) -> list[dict[str, object]]:
    return [
        {
            "keyspace_name": ks.name,
            "durable_writes": ks.durable_writes,
            "replication": sorted(ks.replication.items()),
        }
        for ks in keyspaces
    ]


def table_rows(keyspaces: list[Keyspace]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for ks in keyspaces:
        for table in ks.tables.values():
            row: dict[str, object] = {"keyspace_name": ks.name, "table_name": table.name}
            for option in TABLE_OPTION_DEFAULTS:
                row[option] = table_option(table, option)
            row["flags"] = ["compound"]
            row["id"] = table.id
            rows.append(row)
    return rows


def index_rows(keyspaces: list[Keyspace]) -> list[dict[str, object]]:
    return [
        {
            "keyspace_name": ks.name,
            "table_name": table.name,
            "index_name": name,
            "kind": "COMPOSITES",
            "options": [("target", target)],
        }
        for ks in keyspaces
        for table in ks.tables.values()
        for name, (_column, target) in table.indexes.items()
    ]


def type_rows(keyspaces: list[Keyspace]) -> list[dict[str, object]]:
    return [
        {
            "keyspace_name": ks.name,
            "type_name": user_type.type_name,
            "field_names": [name for name, _ in user_type.fields],
            "field_types": [field_type.name for _, field_type in user_type.fields],
        }
        for ks in keyspaces
        for user_type in ks.types.values()
    ]


def column_rows(keyspaces: list[Keyspace]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for ks in keyspaces:
        for table in ks.tables.values():
            for column in table.columns:
                rows.append(
                    {
                        "keyspace_name": ks.name,
                        "table_name": table.name,
                        "column_name": column.name,
                        "clustering_order": column.clustering_order,
                        "column_name_bytes": column.name.encode(),
                        "kind": column.kind,
                        "position": column.position,
                        "type": column.type.name,
                    }
                )
    return rows
