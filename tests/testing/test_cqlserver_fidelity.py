"""Where the server used to differ from Cassandra, checked with the real driver over sockets.

Each test pins one behaviour a real Cassandra 4.1 shows (unset values, the
``[applied]`` row, UNPREPARED after a drop, PREPARE-time checks, paging of an
exact multiple, stored table options, error texts), on protocol v4 and v5.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Cluster, Session
from cassandra.murmur3 import murmur3
from cassandra.query import UNSET_VALUE, SimpleStatement

from bridge.testing.cqlserver import ServerThread

KS = "fidelity"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


def test_an_unset_value_leaves_the_column_alone_on_insert(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v0 int, v1 int")
    insert = session.prepare(f"INSERT INTO {t} (k, v0, v1) VALUES (?, ?, ?)")
    session.execute(insert, (0, 0, 0))
    session.execute(insert, (0, 1))  # the driver sends v1 as UNSET
    assert tuple(session.execute(f"SELECT k, v0, v1 FROM {t}").one()) == (0, 1, 0)


def test_an_unset_value_leaves_the_column_alone_on_update(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v0 int, v1 int, tags set<text>")
    session.execute(f"INSERT INTO {t} (k, v0, v1, tags) VALUES (0, 0, 0, {{'a'}})")
    update = session.prepare(f"UPDATE {t} SET v0 = ?, v1 = ?, tags = tags + ? WHERE k = ?")
    session.execute(update, (5, UNSET_VALUE, UNSET_VALUE, 0))
    assert tuple(session.execute(f"SELECT v0, v1, tags FROM {t}").one()) == (5, 0, {"a"})


def test_an_unset_key_is_refused_with_cassandras_message(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int, c int, v int, PRIMARY KEY (k, c)")
    insert = session.prepare(f"INSERT INTO {t} (k, c, v) VALUES (?, ?, ?)")
    # (The driver itself refuses an unset partition key; a clustering key reaches the server.)
    with pytest.raises(InvalidRequest, match="Invalid unset value for column c"):
        session.execute(insert, (0, UNSET_VALUE, 1))


def test_insert_if_not_exists_not_applied_returns_the_existing_row(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v0 int, v1 text")
    insert = session.prepare(f"INSERT INTO {t} (k, v0, v1) VALUES (?, ?, ?) IF NOT EXISTS")
    first = session.execute(insert, (0, 1, "one"))
    assert first.was_applied
    second = session.execute(insert, (0, 2, "two"))
    assert not second.was_applied
    assert second.column_names == ["[applied]", "k", "v0", "v1"]
    assert tuple(second.one()) == (False, 0, 1, "one")
    again = session.execute(insert, (1, 3, "three"))  # applied again: one column only
    assert again.column_names == ["[applied]"] and again.was_applied


def test_prepare_refuses_writes_that_miss_the_primary_key(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int, c int, v int, PRIMARY KEY (k, c)")
    with pytest.raises(InvalidRequest, match="Some partition key parts are missing: k"):
        session.prepare(f"INSERT INTO {t} (c, v) VALUES (?, ?)")
    with pytest.raises(InvalidRequest, match="Some clustering keys are missing: c"):
        session.prepare(f"INSERT INTO {t} (k, v) VALUES (?, ?)")
    with pytest.raises(InvalidRequest, match="Non PRIMARY KEY columns found in where clause: v"):
        session.prepare(f"UPDATE {t} SET v = ? WHERE v = ?")
    with pytest.raises(InvalidRequest, match="Some partition key parts are missing: k"):
        session.prepare(f"DELETE FROM {t} WHERE c = ?")


def test_an_exact_multiple_of_the_page_size_ends_with_an_empty_page(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int, c int, PRIMARY KEY (k, c)")
    for c in range(4):
        session.execute(f"INSERT INTO {t} (k, c) VALUES (0, {c})")
    for query in (f"SELECT * FROM {t}", f"SELECT * FROM {t} WHERE k = 0"):
        result = session.execute(SimpleStatement(query, fetch_size=2))
        pages = [len(result.current_rows)]
        while result.has_more_pages:
            result.fetch_next_page()
            pages.append(len(result.current_rows))
        assert pages == [2, 2, 0], query


def _compression(session: Session, name: str) -> dict[str, str]:
    row = session.execute(
        "SELECT compression FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (KS, name),
    ).one()
    return dict(row.compression)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("{}", {"enabled": "false"}),
        ("{'enabled': false}", {"enabled": "false"}),
        (
            "{'class': 'LZ4Compressor'}",
            {"class": "org.apache.cassandra.io.compress.LZ4Compressor", "chunk_length_in_kb": "16"},
        ),
        (
            "{'class': 'SnappyCompressor', 'chunk_length_in_kb': 64}",
            {
                "class": "org.apache.cassandra.io.compress.SnappyCompressor",
                "chunk_length_in_kb": "64",
            },
        ),
    ],
)
def test_table_compression_is_stored_as_cassandra_stores_it(
    session: Session, table: Callable[..., str], given: str, stored: dict[str, str]
) -> None:
    t = table("k int PRIMARY KEY", f" WITH compression = {given}")
    assert _compression(session, t) == stored
    options = session.cluster.metadata.keyspaces[KS].tables[t].options
    assert options["compression"] == stored


def test_blob_conversion_functions_in_values(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY, v int, b blob")
    session.execute(f"INSERT INTO {t} (k, v, b) VALUES (0, blobAsInt(0x0000002a), intAsBlob(7))")
    assert tuple(session.execute(f"SELECT v, b FROM {t}").one()) == (
        42,
        b"\x00\x00\x00\x07",
    )
    wrong_type = r"cannot assign result of function system\.blobastext"
    with pytest.raises(InvalidRequest, match=wrong_type):
        session.execute(f"INSERT INTO {t} (k, v) VALUES (1, blobAsText(0x41))")


def test_token_of_a_literal_in_a_where_clause(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY")
    for k in range(10):
        session.execute(f"INSERT INTO {t} (k) VALUES ({k})")
    token = murmur3((0).to_bytes(4, "big", signed=True))
    expected = {k for k in range(10) if murmur3(k.to_bytes(4, "big", signed=True)) > token}
    got = {row.k for row in session.execute(f"SELECT k FROM {t} WHERE token(k) > token(0)")}
    assert got == expected and 0 < len(got) < 10
    bound = session.prepare(f"SELECT k FROM {t} WHERE token(k) > token(?)")
    assert {row.k for row in session.execute(bound, (0,))} == expected


def test_more_values_than_columns_is_unmatched(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v int")
    with pytest.raises(InvalidRequest, match="Unmatched column names/values"):
        session.prepare(f"INSERT INTO {t} (k, v) VALUES (?, ?, ?)")


def test_a_statement_prepared_again_after_a_drop_is_unprepared_on_other_nodes(
    cql_server_factory: Callable[..., ServerThread],
) -> None:
    server = cql_server_factory(nodes=3)
    cluster = Cluster(server.contact_points, port=server.port, prepare_on_all_hosts=False)
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE ks WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 3}"
        )
        session.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v int)")
        query = "SELECT v FROM ks.t WHERE k = ?"
        hosts = sorted(cluster.metadata.all_hosts(), key=lambda h: h.endpoint.address)
        statement = session.prepare(query)
        for host in hosts:  # now every node knows the statement
            session.execute(statement, (0,), host=host)
        session.execute("DROP TABLE ks.t")
        session.execute("CREATE TABLE ks.t (k int PRIMARY KEY, v int)")
        session.execute("INSERT INTO ks.t (k, v) VALUES (0, 7)")
        server.clear_activity()
        statement = session.prepare(query)  # on one node only
        (prepared_on,) = {a.node for a in server.activity(opcode="PREPARE")}
        for host in hosts:
            assert session.execute(statement, (0,), host=host).one().v == 7
        for node in range(3):
            opcodes = [a.opcode for a in server.activity(node=node) if a.query == query]
            # Every other node forgot the statement with the table: it answers
            # UNPREPARED, and the driver prepares there before executing again.
            expected = (
                ["PREPARE", "EXECUTE"] if node == prepared_on else ["EXECUTE", "PREPARE", "EXECUTE"]
            )
            assert opcodes == expected, (node, opcodes)
    finally:
        cluster.shutdown()


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t WHERE k IS NOT NULL PRIMARY KEY (k)",
            "Materialized views are disabled. Enable in cassandra.yaml to use.",
        ),
        (
            "CREATE OR REPLACE FUNCTION f (a int) RETURNS NULL ON NULL INPUT RETURNS int "
            "LANGUAGE java AS 'return a;'",
            "User-defined functions are disabled in cassandra.yaml",
        ),
    ],
)
def test_features_off_by_default_in_cassandra_4_1_are_refused_as_it_does(
    session: Session, statement: str, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        session.execute(statement)
