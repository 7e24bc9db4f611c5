"""DESCRIBE as Cassandra 4.x runs it on the server, through the real driver: the listings
and the CQL of keyspaces, tables, types and indexes, which must recreate the schema."""

from __future__ import annotations

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Session

KS = "describe_ks"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    session = versioned_session  # on protocol v4, then v5
    session.execute("CREATE TYPE IF NOT EXISTS addr (street text, zip int)")
    session.execute(
        "CREATE TABLE IF NOT EXISTS events (k int, c timestamp, s text static, "
        "at frozen<addr>, tags set<text>, PRIMARY KEY ((k), c)) "
        "WITH CLUSTERING ORDER BY (c DESC) AND default_time_to_live = 60"
    )
    session.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")
    session.execute("CREATE INDEX IF NOT EXISTS kv_v ON kv (v)")
    return session


def test_listings_have_the_describe_columns_and_sorted_names(session: Session) -> None:
    keyspaces = session.execute("DESCRIBE KEYSPACES")
    assert keyspaces.column_names == ["keyspace_name", "type", "name"]
    names = [r.name for r in keyspaces]
    assert names == sorted(names) and KS in names and "system_schema" in names
    # With a current keyspace, TABLES and TYPES list only its elements.
    assert [tuple(r) for r in session.execute("DESCRIBE TABLES")] == [
        (KS, "table", "events"),
        (KS, "table", "kv"),
    ]
    assert [tuple(r) for r in session.execute("DESC TYPES")] == [(KS, "type", "addr")]
    schema = {r.keyspace_name for r in session.execute("DESCRIBE SCHEMA")}
    assert KS in schema and not any(name.startswith("system") for name in schema)
    assert "system_schema" in {r.keyspace_name for r in session.execute("DESC FULL SCHEMA")}


def test_describe_keyspace_gives_its_elements_in_cassandras_order(session: Session) -> None:
    rows = list(session.execute(f"DESCRIBE KEYSPACE {KS}"))
    assert [(r.type, r.name) for r in rows] == [
        ("keyspace", KS),
        ("type", "addr"),
        ("table", "events"),
        ("table", "kv"),
        ("index", "kv_v"),
    ]
    assert rows[0].create_statement.startswith(
        f"CREATE KEYSPACE {KS} WITH replication = "
        "{'class': 'org.apache.cassandra.locator.SimpleStrategy', 'replication_factor': '1'}"
    )
    assert rows[1].create_statement == f"CREATE TYPE {KS}.addr (\n    street text,\n    zip int\n);"
    assert rows[4].create_statement == f"CREATE INDEX kv_v ON {KS}.kv (v);"
    assert [(r.type, r.name) for r in session.execute("DESCRIBE kv")] == [
        ("table", "kv"),
        ("index", "kv_v"),
    ]


def test_a_described_table_recreates_the_same_table(session: Session) -> None:
    (row,) = session.execute(f"DESCRIBE TABLE {KS}.events")
    cql = row.create_statement
    assert cql.startswith(
        f"CREATE TABLE {KS}.events (\n    k int,\n    c timestamp,\n    s text static,\n"
        "    at frozen<addr>,\n    tags set<text>,\n    PRIMARY KEY (k, c)\n"
        ") WITH CLUSTERING ORDER BY (c DESC)\n    AND additional_write_policy = '99p'"
    )
    assert "\n    AND default_time_to_live = 60\n" in cql and cql.endswith(";")
    session.execute(f"DROP TABLE IF EXISTS {KS}.events_copy")
    session.execute(cql.replace(f"{KS}.events ", f"{KS}.events_copy ", 1))
    try:
        metadata = session.cluster.metadata.keyspaces[KS].tables
        original, copy = metadata["events"], metadata["events_copy"]
        assert [(c.name, c.cql_type, c.is_static) for c in copy.columns.values()] == [
            (c.name, c.cql_type, c.is_static) for c in original.columns.values()
        ]
        assert copy.clustering_key[0].is_reversed
        assert copy.options["default_time_to_live"] == 60
    finally:
        session.execute(f"DROP TABLE {KS}.events_copy")


def test_describe_names_what_is_missing_in_cassandras_words(session: Session) -> None:
    with pytest.raises(InvalidRequest, match="'nowhere' not found in keyspaces"):
        session.execute("DESCRIBE KEYSPACE nowhere")
    with pytest.raises(InvalidRequest, match=f"Table 'nothing' not found in keyspace '{KS}'"):
        session.execute("DESCRIBE TABLE nothing")
    with pytest.raises(InvalidRequest, match=f"User defined type 'none' not found in '{KS}'"):
        session.execute("DESCRIBE TYPE none")
    with pytest.raises(InvalidRequest, match=f"'ghost' not found in keyspace '{KS}'"):
        session.execute("DESCRIBE ghost")
