"""The in-memory CQL engine: statements, paging, TTLs, errors and system_schema."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.testing.cqlserver._engine import (
    AlreadyExists,
    CQLSyntaxError,
    Engine,
    Invalid,
    RowsResult,
    SchemaChangeResult,
    SetKeyspaceResult,
    VoidResult,
)
from bridge.testing.cqlserver._types import parse_type


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> Engine:
    engine = Engine(clock=clock)
    engine.execute(
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    engine.execute(
        "CREATE TABLE ks.t (k int, c int, v text, l list<int>, s set<text>, m map<text, int>,"
        " PRIMARY KEY (k, c))"
    )
    return engine


def rows(result: object) -> list[list[Any]]:
    """Decode a RowsResult into Python values."""
    assert isinstance(result, RowsResult)
    return [
        [
            None if raw is None else spec.type.deserialize(raw)
            for spec, raw in zip(result.columns, row, strict=True)
        ]
        for row in result.rows
    ]


def q(engine: Engine, query: str, **kwargs: Any) -> list[list[Any]]:
    return rows(engine.execute(query, keyspace="ks", **kwargs))


def fill(engine: Engine, partitions: int, per_partition: int) -> None:
    for k in range(partitions):
        for c in range(per_partition):
            engine.execute(f"INSERT INTO t (k, c, v) VALUES ({k}, {c}, 'v{k}.{c}')", keyspace="ks")


ALL_TYPES = {
    "a_text": ("text", "héllo"),
    "a_ascii": ("ascii", "plain"),
    "a_varchar": ("varchar", "v"),
    "a_int": ("int", -5),
    "a_bigint": ("bigint", 2**40),
    "a_smallint": ("smallint", 300),
    "a_tinyint": ("tinyint", -3),
    "a_boolean": ("boolean", True),
    "a_float": ("float", 1.5),
    "a_double": ("double", 2.25),
    "a_decimal": ("decimal", __import__("decimal").Decimal("3.14")),
    "a_varint": ("varint", 10**30),
    "a_uuid": ("uuid", __import__("uuid").UUID("12345678-1234-5678-1234-567812345678")),
    "a_timeuuid": ("timeuuid", __import__("uuid").UUID("5f3a9c40-0000-1000-8000-000000000001")),
    "a_timestamp": ("timestamp", 1704164645678),
    "a_date": ("date", 19000),
    "a_time": ("time", 3_600_000_000_001),
    "a_blob": ("blob", b"\x00\xff"),
    "a_inet": ("inet", __import__("ipaddress").ip_address("10.0.0.1")),
    "a_list": ("list<int>", [3, 1, 3]),
    "a_set": ("set<text>", ["a", "b"]),
    "a_map": ("map<text, double>", [("x", 1.0), ("y", 2.0)]),
}

LITERALS = {
    "a_text": "'héllo'", "a_ascii": "'plain'", "a_varchar": "'v'", "a_int": "-5",
    "a_bigint": str(2**40), "a_smallint": "300", "a_tinyint": "-3", "a_boolean": "true",
    "a_float": "1.5", "a_double": "2.25", "a_decimal": "3.14", "a_varint": str(10**30),
    "a_uuid": "12345678-1234-5678-1234-567812345678",
    "a_timeuuid": "5f3a9c40-0000-1000-8000-000000000001",
    "a_timestamp": "'2024-01-02 03:04:05.678+0000'", "a_date": "'2022-01-08'",
    "a_time": "'01:00:00.000000001'", "a_blob": "0x00ff", "a_inet": "'10.0.0.1'",
    "a_list": "[3, 1, 3]", "a_set": "{'b', 'a'}", "a_map": "{'y': 2.0, 'x': 1}",
}  # fmt: skip


@pytest.fixture
def typed(engine: Engine) -> Engine:
    columns = ", ".join(f"{name} {type_name}" for name, (type_name, _) in ALL_TYPES.items())
    engine.execute(f"CREATE TABLE ks.typed (id int PRIMARY KEY, {columns})")
    return engine


def test_every_type_round_trips_through_bind_values(typed: Engine) -> None:
    names = list(ALL_TYPES)
    prepared = typed.prepare(
        f"INSERT INTO typed (id, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))})",
        "ks",
    )
    assert [spec.type.name for spec in prepared.bind[1:]] == [
        parse_type(t).name for t, _ in ALL_TYPES.values()
    ]
    values = [parse_type("int").serialize(1)] + [
        spec.type.serialize(value)
        for spec, (_, value) in zip(prepared.bind[1:], ALL_TYPES.values(), strict=True)
    ]
    assert isinstance(typed.execute(prepared, values), VoidResult)
    (row,) = q(typed, f"SELECT {', '.join(names)} FROM typed WHERE id = 1")
    expected = [value for _, value in ALL_TYPES.values()]
    expected[names.index("a_set")] = ["a", "b"]
    assert row == expected


def test_every_type_accepts_its_literal(typed: Engine) -> None:
    names = list(ALL_TYPES)
    literals = ", ".join(LITERALS[n] for n in names)
    typed.execute(
        f"INSERT INTO typed (id, {', '.join(names)}) VALUES (2, {literals})", keyspace="ks"
    )
    (row,) = q(typed, f"SELECT {', '.join(names)} FROM typed WHERE id = 2")
    assert row == [value for _, value in ALL_TYPES.values()]


def test_named_bind_markers_take_values_by_name(engine: Engine) -> None:
    prepared = engine.prepare("INSERT INTO t (k, c, v) VALUES (:key, :col, :val)", "ks")
    assert prepared.bind_names == ["key", "col", "val"]
    assert prepared.pk_indexes == [0]
    int_type = parse_type("int")
    engine.execute(
        prepared, {"val": b"x", "key": int_type.serialize(7), "col": int_type.serialize(1)}
    )
    assert q(engine, "SELECT v FROM t WHERE k = 7") == [["x"]]


def test_paging_over_ten_pages_resumes_exactly_after_the_last_row(engine: Engine) -> None:
    fill(engine, 10, 10)
    expected = q(engine, "SELECT k, c FROM t")
    seen: list[list[Any]] = []
    state = None
    pages = 0
    while True:
        result = engine.execute(
            "SELECT k, c FROM t", keyspace="ks", page_size=10, paging_state=state
        )
        assert isinstance(result, RowsResult)
        seen += rows(result)
        pages += 1
        state = result.paging_state
        if state is None:
            break
    assert pages == 11  # ten full pages, each with a state, then an empty one (as Cassandra)
    assert seen == expected and len(seen) == 100


def test_paging_an_empty_table_and_an_exact_multiple(engine: Engine) -> None:
    empty = engine.execute("SELECT * FROM t", keyspace="ks", page_size=5)
    assert isinstance(empty, RowsResult) and empty.rows == [] and empty.paging_state is None
    fill(engine, 1, 10)
    first = engine.execute("SELECT * FROM t", keyspace="ks", page_size=5)
    assert isinstance(first, RowsResult) and first.paging_state is not None
    full = engine.execute(
        "SELECT * FROM t", keyspace="ks", page_size=5, paging_state=first.paging_state
    )
    # Cassandra's pager cannot know a full page was the last: it hands back a
    # state, and the page after it is empty and final.
    assert isinstance(full, RowsResult) and len(full.rows) == 5 and full.paging_state is not None
    last = engine.execute(
        "SELECT * FROM t", keyspace="ks", page_size=5, paging_state=full.paging_state
    )
    assert isinstance(last, RowsResult) and last.rows == [] and last.paging_state is None


def test_paging_with_limit_stops_at_the_limit(engine: Engine) -> None:
    fill(engine, 3, 5)
    first = engine.execute("SELECT * FROM t LIMIT 7", keyspace="ks", page_size=5)
    assert isinstance(first, RowsResult)
    rest = engine.execute(
        "SELECT * FROM t LIMIT 7", keyspace="ks", page_size=5, paging_state=first.paging_state
    )
    assert isinstance(rest, RowsResult) and len(rest.rows) == 2 and rest.paging_state is None


def test_partitions_come_in_token_order(engine: Engine) -> None:
    from cassandra.murmur3 import murmur3

    fill(engine, 20, 1)
    keys = [row[0] for row in q(engine, "SELECT k FROM t")]
    int_type = parse_type("int")
    assert keys == sorted(range(20), key=lambda k: murmur3(int_type.serialize(k)))


def test_clustering_ranges_and_order_by(engine: Engine) -> None:
    fill(engine, 1, 10)
    assert q(engine, "SELECT c FROM t WHERE k = 0 AND c > 2 AND c <= 5") == [[3], [4], [5]]
    assert q(engine, "SELECT c FROM t WHERE k = 0 AND c >= 7 ORDER BY c DESC") == [[9], [8], [7]]
    assert q(engine, "SELECT c FROM t WHERE k = 0 ORDER BY c DESC LIMIT 2") == [[9], [8]]


def test_desc_clustering_order_is_kept_in_storage(engine: Engine) -> None:
    engine.execute(
        "CREATE TABLE ks.d (k int, c int, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)"
    )
    for c in (2, 9, 5):
        engine.execute(f"INSERT INTO d (k, c) VALUES (1, {c})", keyspace="ks")
    assert q(engine, "SELECT c FROM d WHERE k = 1") == [[9], [5], [2]]
    assert q(engine, "SELECT c FROM d WHERE k = 1 ORDER BY c ASC") == [[2], [5], [9]]
    result = engine.execute(
        "SELECT c FROM d WHERE k = 1 ORDER BY c ASC", keyspace="ks", page_size=2
    )
    assert isinstance(result, RowsResult)
    more = engine.execute(
        "SELECT c FROM d WHERE k = 1 ORDER BY c ASC",
        keyspace="ks",
        page_size=2,
        paging_state=result.paging_state,
    )
    assert rows(more) == [[9]]


def test_in_on_the_partition_key_count_and_limit(engine: Engine) -> None:
    fill(engine, 5, 3)
    assert q(engine, "SELECT k, c FROM t WHERE k IN (3, 1) AND c = 2") == [[1, 2], [3, 2]]
    prepared = engine.prepare("SELECT c FROM t WHERE k IN ?", "ks")
    values = [parse_type("frozen<list<int>>").serialize([4])]
    assert rows(engine.execute(prepared, values)) == [[0], [1], [2]]
    assert q(engine, "SELECT count(*) FROM t") == [[15]]
    assert q(engine, "SELECT COUNT(*) AS n FROM t WHERE k = 2") == [[3]]
    assert len(q(engine, "SELECT * FROM t LIMIT 4")) == 4
    assert q(engine, "SELECT c FROM t WHERE k IN (1, 2) ORDER BY c DESC LIMIT 3") == [[2], [2], [1]]


def test_ttl_expires_on_the_injected_clock(engine: Engine, clock: Clock) -> None:
    engine.execute("INSERT INTO t (k, c, v) VALUES (1, 1, 'x') USING TTL 10", keyspace="ks")
    engine.execute("INSERT INTO t (k, c, v) VALUES (1, 2, 'y')", keyspace="ks")
    assert q(engine, "SELECT ttl(v) FROM t WHERE k = 1 AND c = 1") == [[10]]
    clock.now += 9.5
    assert len(q(engine, "SELECT * FROM t")) == 2
    clock.now += 1
    assert q(engine, "SELECT c, v FROM t") == [[2, "y"]]


def test_delete_row_range_and_column(engine: Engine) -> None:
    fill(engine, 2, 6)
    engine.execute("DELETE FROM t WHERE k = 0 AND c = 0", keyspace="ks")
    engine.execute("DELETE FROM t WHERE k = 0 AND c >= 4", keyspace="ks")
    engine.execute("DELETE v FROM t WHERE k = 0 AND c = 1", keyspace="ks")
    assert q(engine, "SELECT c, v FROM t WHERE k = 0") == [[1, None], [2, "v0.2"], [3, "v0.3"]]
    engine.execute("DELETE FROM t WHERE k = 1", keyspace="ks")
    assert q(engine, "SELECT count(*) FROM t WHERE k = 1") == [[0]]


def test_update_of_collections(engine: Engine) -> None:
    base = "WHERE k = 1 AND c = 1"
    engine.execute(f"UPDATE t SET l = [1, 2], s = {{'a'}}, m = {{'x': 1}} {base}", keyspace="ks")
    engine.execute(f"UPDATE t SET l = l + [3], s = s + {{'b'}}, m['y'] = 2 {base}", keyspace="ks")
    engine.execute(
        f"UPDATE t SET l = [0] + l, s = s - {{'a'}}, m = m - {{'x'}} {base}", keyspace="ks"
    )
    assert q(engine, f"SELECT l, s, m FROM t {base}") == [[[0, 1, 2, 3], ["b"], [("y", 2)]]]
    engine.execute(f"UPDATE t SET l[1] = 9 {base}", keyspace="ks")
    engine.execute(f"DELETE m['y'] FROM t {base}", keyspace="ks")
    assert q(engine, f"SELECT l, m FROM t {base}") == [[[0, 9, 2, 3], None]]


def test_update_is_an_upsert_and_counters_increment(engine: Engine) -> None:
    engine.execute("UPDATE t SET v = 'new' WHERE k = 5 AND c = 5", keyspace="ks")
    assert q(engine, "SELECT v FROM t WHERE k = 5") == [["new"]]
    engine.execute("CREATE TABLE ks.hits (k text PRIMARY KEY, n counter)")
    for _ in range(3):
        engine.execute("UPDATE hits SET n = n + 2 WHERE k = 'a'", keyspace="ks")
    assert q(engine, "SELECT n FROM hits WHERE k = 'a'") == [[6]]


def test_insert_if_not_exists_reports_applied(engine: Engine) -> None:
    first = q(engine, "INSERT INTO t (k, c, v) VALUES (1, 1, 'a') IF NOT EXISTS")
    second = q(engine, "INSERT INTO t (k, c, v) VALUES (1, 1, 'b') IF NOT EXISTS")
    assert first == [[True]]
    assert second[0][0] is False and "a" in second[0]


def test_truncate_empties_the_table(engine: Engine) -> None:
    fill(engine, 3, 3)
    assert isinstance(engine.execute("TRUNCATE t", keyspace="ks"), VoidResult)
    assert q(engine, "SELECT * FROM t") == []


def test_ddl_if_not_exists_and_already_exists(engine: Engine) -> None:
    changes: list[SchemaChangeResult] = []
    engine.add_schema_listener(changes.append)
    create = "CREATE TABLE ks.x (k int PRIMARY KEY)"
    assert isinstance(engine.execute(create), SchemaChangeResult)
    with pytest.raises(AlreadyExists) as raised:
        engine.execute(create)
    assert (raised.value.keyspace, raised.value.table) == ("ks", "x")
    assert isinstance(
        engine.execute("CREATE TABLE IF NOT EXISTS ks.x (k int PRIMARY KEY)"), VoidResult
    )
    with pytest.raises(AlreadyExists):
        engine.execute("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy'}")
    assert isinstance(engine.execute("DROP TABLE ks.x"), SchemaChangeResult)
    assert isinstance(engine.execute("DROP TABLE IF EXISTS ks.x"), VoidResult)
    assert isinstance(engine.execute("DROP KEYSPACE IF EXISTS nope"), VoidResult)
    assert [(c.change_type, c.target, c.name) for c in changes] == [
        ("CREATED", "TABLE", "x"),
        ("DROPPED", "TABLE", "x"),
    ]
    assert isinstance(engine.execute("USE ks"), SetKeyspaceResult)


def test_unknown_keyspace_table_and_column_use_cassandras_words(engine: Engine) -> None:
    with pytest.raises(Invalid, match="Keyspace 'nope' does not exist"):
        engine.execute("SELECT * FROM nope.t")
    with pytest.raises(Invalid, match="unconfigured table y"):
        engine.execute("SELECT * FROM ks.y")
    with pytest.raises(Invalid, match="Undefined column name zz"):
        engine.execute("SELECT zz FROM ks.t")
    with pytest.raises(Invalid, match="No keyspace has been specified"):
        engine.execute("SELECT * FROM t")
    with pytest.raises(Invalid, match="ALLOW FILTERING"):
        engine.execute("SELECT * FROM ks.t WHERE v = 'a'")
    with pytest.raises(Invalid, match="Some clustering keys are missing: c"):
        engine.execute("INSERT INTO ks.t (k, v) VALUES (1, 'a')")


@pytest.mark.parametrize(
    ("query", "position", "near"),
    [
        ("SELEC * FROM t", "line 1:0", "SELEC"),
        ("SELECT * FRM t", "line 1:9", "FRM"),
        ("SELECT *\nFROM t WHERE", "line 2:12", "<EOF>"),
        ("INSERT INTO t (a) VALUES ('x)", "line 1:26", "unterminated"),
    ],
)
def test_syntax_errors_name_the_position(
    engine: Engine, query: str, position: str, near: str
) -> None:
    with pytest.raises(CQLSyntaxError) as raised:
        engine.execute(query, keyspace="ks")
    assert raised.value.message.startswith(position)
    assert near in raised.value.message


def test_bad_bind_values_are_invalid_not_crashes(engine: Engine) -> None:
    prepared = engine.prepare("SELECT * FROM t WHERE k = ?", "ks")
    with pytest.raises(Invalid, match="Expected 4 or 0 byte int"):
        engine.execute(prepared, [b"\x01"])
    with pytest.raises(Invalid, match="markers"):
        engine.execute(prepared, [])
    with pytest.raises(Invalid, match="paging state"):
        engine.execute(prepared, [b"\x00\x00\x00\x01"], page_size=1, paging_state=b"garbage")


# The exact statements cassandra-driver 3.30's SchemaParserV4 sends.
DRIVER_SCHEMA_QUERIES = [
    "SELECT * FROM system_schema.keyspaces",
    "SELECT * FROM system_schema.tables",
    "SELECT * FROM system_schema.columns",
    "SELECT * FROM system_schema.types",
    "SELECT * FROM system_schema.functions",
    "SELECT * FROM system_schema.aggregates",
    "SELECT * FROM system_schema.triggers",
    "SELECT * FROM system_schema.indexes",
    "SELECT * FROM system_schema.views",
    "SELECT * from system_virtual_schema.keyspaces",
    "SELECT * from system_virtual_schema.tables",
    "SELECT * from system_virtual_schema.columns",
]


def _dicts(result: object) -> list[dict[str, Any]]:
    assert isinstance(result, RowsResult)
    names = [spec.name for spec in result.columns]
    return [dict(zip(names, row, strict=True)) for row in rows(result)]


def test_driver_schema_queries_build_correct_metadata(engine: Engine) -> None:
    from cassandra.metadata import SchemaParserV4

    engine.execute(
        "CREATE TABLE ks.wide (a text, b int, c timeuuid, d int, v map<text, int>, st text static,"
        " PRIMARY KEY ((a, b), c, d)) WITH CLUSTERING ORDER BY (c DESC, d ASC) AND comment = 'hi'"
    )
    results = [_dicts(engine.execute(query)) for query in DRIVER_SCHEMA_QUERIES]

    class FakeConnection:
        def wait_for_responses(self, *queries: Any, **kwargs: Any) -> list[tuple[bool, Any]]:
            assert [m.query for m in queries] == DRIVER_SCHEMA_QUERIES
            return [(True, _Rows(r)) for r in results]

    class _Rows:
        def __init__(self, parsed: list[dict[str, Any]]) -> None:
            self.parsed_rows = [_convert(r) for r in parsed]

    parser = SchemaParserV4(FakeConnection(), timeout=1)
    parser._handle_results = lambda ok, result, expected_failures=(): result.parsed_rows  # type: ignore[method-assign]
    keyspaces = {ks.name: ks for ks in parser.get_all_keyspaces()}
    assert {"ks", "system", "system_schema", "system_auth"} <= set(keyspaces)
    ks = keyspaces["ks"]
    assert ks.replication_strategy.replication_factor == 1
    wide = ks.tables["wide"]
    assert [c.name for c in wide.partition_key] == ["a", "b"]
    assert [c.name for c in wide.clustering_key] == ["c", "d"]
    assert wide.columns["c"].is_reversed and not wide.columns["d"].is_reversed
    assert wide.columns["st"].is_static
    assert wide.columns["v"].cql_type == "map<text, int>"
    assert wide.options["comment"] == "hi"
    assert not wide.is_compact_storage
    assert "PRIMARY KEY ((a, b), c, d)" in wide.export_as_string()
    assert [c.name for c in ks.tables["t"].partition_key] == ["k"]


def _convert(row: dict[str, Any]) -> dict[str, Any]:
    """Engine values -> what the driver's decoder would hand the parser (maps as dicts)."""
    return {
        k: dict(v) if isinstance(v, list) and v and isinstance(v[0], tuple) else v
        for k, v in row.items()
    }


def test_schema_tables_answer_the_drivers_filtered_queries(engine: Engine) -> None:
    tables = _dicts(
        engine.execute(
            "SELECT * FROM system_schema.tables WHERE keyspace_name = 'ks' AND table_name = 't'"
        )
    )
    assert len(tables) == 1 and tables[0]["flags"] == ["compound"]
    columns = _dicts(
        engine.execute(
            "SELECT * FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 't'"
        )
    )
    kinds = {
        c["column_name"]: (c["kind"], c["position"], c["clustering_order"], c["type"])
        for c in columns
    }
    assert kinds["k"] == ("partition_key", 0, "none", "int")
    assert kinds["c"] == ("clustering", 0, "asc", "int")
    assert kinds["m"] == ("regular", -1, "none", "map<text, int>")
    keyspace = _dicts(
        engine.execute("SELECT * FROM system_schema.keyspaces WHERE keyspace_name = 'ks'")
    )
    assert dict(keyspace[0]["replication"]) == {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "1",
    }


def test_virtual_tables_serve_rows_per_request(engine: Engine) -> None:
    engine.register_virtual_table(
        "system", "local", [("key", "text", "partition_key"), ("tokens", "set<text>", "regular")],
        lambda node: [{"key": "local", "tokens": {str(node)}}],
    )  # fmt: skip
    result = engine.execute("SELECT tokens FROM system.local WHERE key='local'", context=7)
    assert rows(result) == [[["7"]]]
