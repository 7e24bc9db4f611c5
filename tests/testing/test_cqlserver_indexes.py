"""Secondary indexes and the ALLOW FILTERING rules around them, through the real driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Session

KS = "index_test"
FILTERING = "ALLOW FILTERING"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


@pytest.fixture
def users(session: Session, table: Callable[..., str]) -> str:
    t = table("id int PRIMARY KEY, email text, age int, tags set<text>, attrs map<text, int>")
    insert = session.prepare(
        f"INSERT INTO {t} (id, email, age, tags, attrs) VALUES (?, ?, ?, ?, ?)"
    )
    session.execute(insert, (1, "a@x", 30, {"admin"}, {"k": 1}))
    session.execute(insert, (2, "b@x", 30, {"dev"}, {"j": 2}))
    session.execute(insert, (3, "c@x", 41, {"dev", "admin"}, None))
    return t


def test_an_indexed_column_is_queried_without_allow_filtering(session: Session, users: str) -> None:
    with pytest.raises(InvalidRequest, match=FILTERING):
        session.execute(f"SELECT id FROM {users} WHERE age = 30")
    session.execute(f"CREATE INDEX ON {users} (age)")
    assert {r.id for r in session.execute(f"SELECT id FROM {users} WHERE age = 30")} == {1, 2}
    by_age = session.prepare(f"SELECT id FROM {users} WHERE age = ?")
    assert [r.id for r in session.execute(by_age, (41,))] == [3]
    # A second, unindexed restriction is filtering again.
    with pytest.raises(InvalidRequest, match=FILTERING):
        session.execute(f"SELECT id FROM {users} WHERE age = 30 AND email = 'a@x'")
    rows = session.execute(f"SELECT id FROM {users} WHERE age = 30 AND email = 'a@x' {FILTERING}")
    assert [r.id for r in rows] == [1]


def test_collection_indexes(session: Session, users: str) -> None:
    session.execute(f"CREATE INDEX {users}_tags ON {users} (tags)")
    session.execute(f"CREATE INDEX ON {users} (keys(attrs))")
    admins = session.execute(f"SELECT id FROM {users} WHERE tags CONTAINS 'admin'")
    assert {r.id for r in admins} == {1, 3}
    assert [
        r.id for r in session.execute(f"SELECT id FROM {users} WHERE attrs CONTAINS KEY 'j'")
    ] == [2]


def test_indexes_reach_metadata_and_can_be_dropped(session: Session, users: str) -> None:
    session.execute(f"CREATE INDEX email_idx ON {users} (email)")
    index = session.cluster.metadata.keyspaces[KS].tables[users].indexes["email_idx"]
    assert index.index_options == {"target": "email"}
    session.execute(f"CREATE INDEX IF NOT EXISTS email_idx ON {users} (email)")
    with pytest.raises(InvalidRequest, match="Index 'email_idx' already exists"):
        session.execute(f"CREATE INDEX email_idx ON {users} (age)")
    session.execute("DROP INDEX email_idx")
    assert "email_idx" not in session.cluster.metadata.keyspaces[KS].tables[users].indexes
    with pytest.raises(InvalidRequest, match=FILTERING):
        session.execute(f"SELECT id FROM {users} WHERE email = 'a@x'")
    session.execute("DROP INDEX IF EXISTS email_idx")
    with pytest.raises(InvalidRequest, match="could not be found"):
        session.execute("DROP INDEX email_idx")


def test_the_only_partition_key_column_cannot_be_indexed(session: Session, users: str) -> None:
    with pytest.raises(InvalidRequest, match="only partition key column id"):
        session.execute(f"CREATE INDEX ON {users} (id)")
