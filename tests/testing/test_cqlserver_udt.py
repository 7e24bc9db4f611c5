"""User-defined types, tuples and ``duration`` through the real driver, on protocol v4 and v5."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from cassandra import AlreadyExists, InvalidRequest
from cassandra.cluster import Session
from cassandra.cqltypes import DurationType
from cassandra.util import Duration

from bridge.testing.cqlserver._types import DURATION

KS = "udt_test"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


@pytest.fixture
def address(session: Session) -> str:
    name = f"address_{abs(hash(session)) % 10_000}"
    session.execute(f"CREATE TYPE IF NOT EXISTS {name} (street text, zip int, phones list<text>)")
    return name


def test_a_type_reaches_the_drivers_metadata(session: Session, address: str) -> None:
    user_type = session.cluster.metadata.keyspaces[KS].user_types[address]
    assert user_type.field_names == ["street", "zip", "phones"]
    assert user_type.field_types == ["text", "int", "list<text>"]
    row = session.execute(
        "SELECT field_names, field_types FROM system_schema.types "
        "WHERE keyspace_name = %s AND type_name = %s",
        (KS, address),
    ).one()
    assert (row.field_names, row.field_types) == (
        ["street", "zip", "phones"],
        ["text", "int", "list<text>"],
    )
    with pytest.raises(AlreadyExists):
        session.execute(f"CREATE TYPE {address} (a int)")


def test_udt_values_frozen_and_not_in_every_position(
    session: Session, table: Callable[..., str], address: str
) -> None:
    t = table(
        f"k int, home frozen<{address}>, work {address}, past list<frozen<{address}>>, "
        f"v int, PRIMARY KEY (k, home)"
    )
    session.execute(
        f"INSERT INTO {t} (k, home, work, past, v) VALUES "
        f"(1, {{street: 'Main', zip: 1}}, {{street: 'Dock', phones: ['555']}}, "
        f"[{{zip: 2}}], 10)"
    )
    row = session.execute(f"SELECT * FROM {t}").one()
    assert (row.home.street, row.home.zip, row.home.phones) == ("Main", 1, None)
    assert (row.work.street, row.work.phones) == ("Dock", ["555"])
    assert row.past[0].zip == 2
    insert = session.prepare(f"INSERT INTO {t} (k, home, work, v) VALUES (?, ?, ?, ?)")
    session.execute(insert, (1, ("Side", 3, ["1", "2"]), ("Far", None, None), 11))
    rows = list(session.execute(f"SELECT home, v FROM {t} WHERE k = 1"))
    assert [(r.home.street, r.v) for r in rows] == [("Main", 10), ("Side", 11)]  # key order
    by_key = session.prepare(f"SELECT v FROM {t} WHERE k = 1 AND home = ?")
    assert session.execute(by_key, (("Side", 3, ["1", "2"]),)).one().v == 11


def test_tuples(session: Session, table: Callable[..., str]) -> None:
    t = table("k frozen<tuple<int, text>> PRIMARY KEY, v tuple<int, tuple<text, double>>")
    session.execute(f"INSERT INTO {t} (k, v) VALUES ((1, 'a'), (2, ('b', 1.5)))")
    insert = session.prepare(f"INSERT INTO {t} (k, v) VALUES (?, ?)")
    session.execute(insert, ((2, "b"), (3, None)))
    rows = {r.k: r.v for r in session.execute(f"SELECT * FROM {t}")}
    assert rows == {(1, "a"): (2, ("b", 1.5)), (2, "b"): (3, None)}
    with pytest.raises(InvalidRequest, match="too many elements"):
        session.execute(f"INSERT INTO {t} (k) VALUES ((1, 'a', 3))")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("1h30m", Duration(0, 0, 5_400_000_000_000)),
        ("2y3mo", Duration(27, 0, 0)),
        ("1w2d", Duration(0, 9, 0)),
        ("-5s", Duration(0, 0, -5_000_000_000)),
        ("P1Y2M3DT4H5M6S", Duration(14, 3, 14_706_000_000_000)),
        ("10ms20us", Duration(0, 0, 10_020_000)),
    ],
)
def test_duration_literals(
    session: Session, table: Callable[..., str], literal: str, expected: Duration
) -> None:
    t = table("k int PRIMARY KEY, d duration")
    session.execute(f"INSERT INTO {t} (k, d) VALUES (0, {literal})")
    assert session.execute(f"SELECT d FROM {t}").one().d == expected


def test_duration_bound_and_refused_as_a_key(session: Session, table: Callable[..., str]) -> None:
    t = table("k int PRIMARY KEY, d duration")
    insert = session.prepare(f"INSERT INTO {t} (k, d) VALUES (?, ?)")
    value = Duration(-1, -2, -3)
    session.execute(insert, (0, value))
    assert session.execute(f"SELECT d FROM {t}").one().d == value
    with pytest.raises(InvalidRequest, match="duration type is not supported for PRIMARY KEY"):
        session.execute("CREATE TABLE bad_duration (d duration PRIMARY KEY)")


def test_duration_encoding_matches_the_drivers() -> None:
    rng = random.Random(3)
    for _ in range(300):
        sign = rng.choice([1, -1])
        parts = tuple(sign * rng.randrange(0, 2 ** rng.randrange(1, 62)) for _ in range(3))
        ours = DURATION.serialize(parts)
        assert ours == DurationType.serialize(Duration(*parts), 5)
        assert DURATION.deserialize(ours) == parts


def test_alter_and_drop_type(session: Session, table: Callable[..., str]) -> None:
    session.execute("CREATE TYPE point (x int, y int)")
    t = table("k int PRIMARY KEY, p frozen<point>")
    session.execute(f"INSERT INTO {t} (k, p) VALUES (0, {{x: 1, y: 2}})")
    session.execute("ALTER TYPE point ADD z int")
    session.execute("ALTER TYPE point RENAME x TO xx")
    assert session.cluster.metadata.keyspaces[KS].user_types["point"].field_names == [
        "xx",
        "y",
        "z",
    ]
    p = session.execute(f"SELECT p FROM {t}").one().p
    assert (p.xx, p.y, p.z) == (1, 2, None)
    with pytest.raises(InvalidRequest, match="still used by table"):
        session.execute("DROP TYPE point")
    session.execute(f"DROP TABLE {t}")
    session.execute("DROP TYPE point")
    assert "point" not in session.cluster.metadata.keyspaces[KS].user_types


def test_a_non_frozen_udt_cannot_be_a_key(session: Session, address: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid non-frozen user-defined type"):
        session.execute(f"CREATE TABLE bad_udt (k {address} PRIMARY KEY)")


def test_a_field_of_a_non_frozen_udt_is_updated_alone(
    session: Session, table: Callable[..., str], address: str
) -> None:
    t = table(f"k int PRIMARY KEY, home {address}, fixed frozen<{address}>")
    session.execute(
        f"INSERT INTO {t} (k, home, fixed) VALUES (1, {{street: 'Main', zip: 1}}, {{zip: 2}})"
    )
    session.execute(f"UPDATE {t} SET home.zip = 9 WHERE k = 1")
    update = session.prepare(f"UPDATE {t} SET home.phones = ? WHERE k = ?")
    session.execute(update, (["555"], 1))
    row = session.execute(f"SELECT home.street, home.zip, home.phones, fixed.zip FROM {t}").one()
    assert tuple(row) == ("Main", 9, ["555"], 2)
    with pytest.raises(InvalidRequest, match="for frozen UDT column fixed"):
        session.execute(f"UPDATE {t} SET fixed.zip = 3 WHERE k = 1")
