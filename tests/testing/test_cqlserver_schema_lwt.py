"""ALTER TABLE / ALTER KEYSPACE and lightweight transactions, through the real driver.

Schema changes must reach ``cluster.metadata`` (the driver refreshes on the
SCHEMA_CHANGE event), and conditional writes must answer ``[applied]`` as
Cassandra does; each on protocol v4 and v5.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Session
from cassandra.query import BatchStatement

KS = "schema_lwt"


def _columns(session: Session, name: str) -> dict[str, str]:
    table = session.cluster.metadata.keyspaces[KS].tables[name]
    return {c.name: c.cql_type for c in table.columns.values()}


# --- ALTER ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


def test_alter_table_add_reaches_metadata_and_prepared_selects(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v int")
    session.execute(f"INSERT INTO {t} (k, v) VALUES (1, 10)")
    select_all = session.prepare(f"SELECT * FROM {t} WHERE k = ?")
    assert session.execute(select_all, (1,)).one()._fields == ("k", "v")
    session.execute(f"ALTER TABLE {t} ADD (note text, tags set<text>)")
    assert _columns(session, t) == {
        "k": "int",
        "v": "int",
        "note": "text",
        "tags": "set<text>",
    }
    session.execute(f"UPDATE {t} SET note = 'hi', tags = {{'a'}} WHERE k = 1")
    # The statement is prepared again behind the scenes: SELECT * now has the new columns.
    row = session.execute(select_all, (1,)).one()
    assert (row.k, row.v, row.note, row.tags) == (1, 10, "hi", {"a"})


def test_alter_table_drop_forgets_the_data(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY, v int, w int")
    session.execute(f"INSERT INTO {t} (k, v, w) VALUES (1, 10, 20)")
    session.execute(f"ALTER TABLE {t} DROP w")
    assert _columns(session, t) == {"k": "int", "v": "int"}
    assert tuple(session.execute(f"SELECT * FROM {t}").one()) == (1, 10)
    session.execute(f"ALTER TABLE {t} ADD w int")
    assert session.execute(f"SELECT w FROM {t} WHERE k = 1").one().w is None


def test_alter_table_rename_a_key_column(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int, c int, v int, PRIMARY KEY (k, c)")
    session.execute(f"INSERT INTO {t} (k, c, v) VALUES (1, 2, 3)")
    session.execute(f"ALTER TABLE {t} RENAME c TO c2")
    assert session.execute(f"SELECT c2, v FROM {t} WHERE k = 1 AND c2 = 2").one() == (
        2,
        3,
    )
    assert [c.name for c in session.cluster.metadata.keyspaces[KS].tables[t].clustering_key] == [
        "c2"
    ]
    with pytest.raises(InvalidRequest, match="Cannot rename non PRIMARY KEY column v"):
        session.execute(f"ALTER TABLE {t} RENAME v TO w")


def test_alter_table_errors_are_cassandras(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY, v int")
    with pytest.raises(InvalidRequest, match="Column with name 'v' already exists"):
        session.execute(f"ALTER TABLE {t} ADD v text")
    session.execute(f"ALTER TABLE {t} ADD IF NOT EXISTS v text")  # no error, no change
    assert _columns(session, t)["v"] == "int"
    with pytest.raises(InvalidRequest, match="Cannot drop PRIMARY KEY column k"):
        session.execute(f"ALTER TABLE {t} DROP k")
    with pytest.raises(InvalidRequest, match=f"Column nope was not found in table {KS}.{t}"):
        session.execute(f"ALTER TABLE {t} DROP nope")
    with pytest.raises(InvalidRequest, match="Altering column types is no longer supported"):
        session.execute(f"ALTER TABLE {t} ALTER v TYPE bigint")


def test_alter_table_with_options(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY")
    session.execute(f"ALTER TABLE {t} WITH comment = 'hello' AND default_time_to_live = 60")
    options = session.cluster.metadata.keyspaces[KS].tables[t].options
    assert options["comment"] == "hello" and options["default_time_to_live"] == 60


def test_alter_keyspace(session: Session) -> None:
    session.execute(
        "CREATE KEYSPACE ks_alter WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    try:
        session.execute(
            "ALTER KEYSPACE ks_alter WITH replication = "
            "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3} AND durable_writes = false"
        )
        space = session.cluster.metadata.keyspaces["ks_alter"]
        assert space.replication_strategy.dc_replication_factors == {"datacenter1": 3}
        assert space.durable_writes is False
    finally:
        session.execute("DROP KEYSPACE ks_alter")
    with pytest.raises(InvalidRequest, match="system keyspace is not user-modifiable"):
        session.execute("ALTER KEYSPACE system WITH durable_writes = false")


# --- lightweight transactions -----------------------------------------------------------


def test_update_if_condition(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY, v int, w text")
    session.execute(f"INSERT INTO {t} (k, v, w) VALUES (0, 1, 'a')")
    update = session.prepare(f"UPDATE {t} SET v = ? WHERE k = ? IF v = ? AND w = ?")
    applied = session.execute(update, (2, 0, 1, "a"))
    assert applied.was_applied and applied.column_names == ["[applied]"]
    refused = session.execute(update, (3, 0, 1, "a"))
    assert not refused.was_applied
    assert refused.column_names == ["[applied]", "v", "w"]
    assert tuple(refused.one()) == (False, 2, "a")
    assert session.execute(f"SELECT v FROM {t} WHERE k = 0").one().v == 2
    missing = session.execute(f"UPDATE {t} SET v = 9 WHERE k = 5 IF v = 1")
    assert missing.column_names == ["[applied]"] and not missing.was_applied


@pytest.mark.parametrize(
    ("condition", "applied"),
    [
        ("v > 1", True),
        ("v >= 3", False),
        ("v != 2", False),
        ("v IN (1, 2, 3)", True),
        ("v = null", False),
        ("m['a'] = 1", True),
        ("m['b'] = null", True),
    ],
)
def test_condition_operators(
    session: Session, table: Callable[[str], str], condition: str, applied: bool
) -> None:
    t = table("k int PRIMARY KEY, v int, m map<text, int>")
    session.execute(f"INSERT INTO {t} (k, v, m) VALUES (0, 2, {{'a': 1}})")
    result = session.execute(f"UPDATE {t} SET v = 7 WHERE k = 0 IF {condition}")
    assert result.was_applied is applied
    assert session.execute(f"SELECT v FROM {t} WHERE k = 0").one().v == (7 if applied else 2)


def test_delete_if_condition_and_if_exists(session: Session, table: Callable[[str], str]) -> None:
    t = table("k int PRIMARY KEY, v int")
    session.execute(f"INSERT INTO {t} (k, v) VALUES (0, 1)")
    refused = session.execute(f"DELETE FROM {t} WHERE k = 0 IF v = 5")
    assert tuple(refused.one()) == (False, 1)
    assert session.execute(f"DELETE FROM {t} WHERE k = 0 IF v = 1").was_applied
    assert session.execute(f"SELECT * FROM {t} WHERE k = 0").one() is None
    assert not session.execute(f"DELETE FROM {t} WHERE k = 0 IF EXISTS").was_applied


def test_conditional_batch_applies_all_or_nothing(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int, c int, v int, PRIMARY KEY (k, c)")
    session.execute(f"INSERT INTO {t} (k, c, v) VALUES (0, 1, 10)")
    insert = session.prepare(f"INSERT INTO {t} (k, c, v) VALUES (?, ?, ?) IF NOT EXISTS")
    update = session.prepare(f"UPDATE {t} SET v = ? WHERE k = ? AND c = ? IF v = ?")

    batch = BatchStatement()
    batch.add(insert, (0, 2, 20))
    batch.add(update, (11, 0, 1, 99))  # fails: v is 10
    refused = session.execute(batch)
    assert not refused.was_applied
    assert refused.column_names == ["[applied]", "k", "c", "v"]
    assert [tuple(r) for r in refused] == [(False, 0, 1, 10)]
    assert [tuple(r) for r in session.execute(f"SELECT c, v FROM {t}")] == [(1, 10)]

    batch = BatchStatement()
    batch.add(insert, (0, 2, 20))
    batch.add(update, (11, 0, 1, 10))
    assert session.execute(batch).was_applied
    assert [tuple(r) for r in session.execute(f"SELECT c, v FROM {t}")] == [
        (1, 11),
        (2, 20),
    ]


def test_conditional_batch_within_one_partition_only(
    session: Session, table: Callable[[str], str]
) -> None:
    t = table("k int PRIMARY KEY, v int")
    with pytest.raises(
        InvalidRequest, match="Batch with conditions cannot span multiple partitions"
    ):
        session.execute(
            f"BEGIN BATCH INSERT INTO {t} (k, v) VALUES (0, 0) IF NOT EXISTS; "
            f"INSERT INTO {t} (k, v) VALUES (1, 1) APPLY BATCH"
        )
