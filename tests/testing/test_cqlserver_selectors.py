"""SELECT lists beyond plain columns, through the real driver: aggregates and GROUP BY,
token(), functions, CAST; on protocol v4 and v5."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Session
from cassandra.murmur3 import murmur3

KS = "selectors_test"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


@pytest.fixture
def scores(session: Session, table: Callable[..., str]) -> str:
    t = table("team text, player int, points int, rating double, PRIMARY KEY (team, player)")
    rows = [("a", 1, 10, 1.5), ("a", 2, 30, 2.5), ("a", 3, None, 4.0), ("b", 1, -7, 0.5)]
    insert = session.prepare(f"INSERT INTO {t} (team, player, points, rating) VALUES (?, ?, ?, ?)")
    for row in rows:
        session.execute(insert, row)
    return t


def test_aggregates_over_all_rows(session: Session, scores: str) -> None:
    result = session.execute(
        f"SELECT count(*), count(points), min(points), max(points), sum(points), avg(points), "
        f"avg(rating) FROM {scores}"
    )
    assert result.column_names == [
        "count",
        "system.count(points)",
        "system.min(points)",
        "system.max(points)",
        "system.sum(points)",
        "system.avg(points)",
        "system.avg(rating)",
    ]
    assert tuple(result.one()) == (4, 3, -7, 30, 33, 11, 2.125)


def test_aggregates_of_no_rows(session: Session, scores: str) -> None:
    row = session.execute(
        f"SELECT count(*), min(points), sum(points), avg(points) FROM {scores} WHERE team = 'z'"
    ).one()
    assert tuple(row) == (0, None, 0, 0)


def test_group_by_the_partition_key(session: Session, scores: str) -> None:
    rows = session.execute(f"SELECT team, count(*), max(points) FROM {scores} GROUP BY team")
    assert sorted(tuple(r) for r in rows) == [("a", 3, 30), ("b", 1, -7)]
    limited = list(session.execute(f"SELECT team FROM {scores} GROUP BY team LIMIT 1"))
    assert len(limited) == 1
    with pytest.raises(InvalidRequest, match="Group by currently only support groups of columns"):
        session.execute(f"SELECT count(*) FROM {scores} GROUP BY player")


def test_token_in_the_select_list(session: Session, scores: str) -> None:
    rows = {r.team: r[1] for r in session.execute(f"SELECT team, token(team) FROM {scores}")}
    assert rows == {t: murmur3(t.encode()) for t in ("a", "b")}


def test_time_functions_and_uuid(session: Session, scores: str) -> None:
    row = session.execute(
        f"SELECT now(), uuid(), toTimestamp(now()), toUnixTimestamp(now()), currentDate() "
        f"FROM {scores} WHERE team = 'b'"
    ).one()
    assert row[0].version == 1 and isinstance(row[1], uuid.UUID) and row[1].version == 4
    assert isinstance(row[2], datetime.datetime)
    seconds = row[3] / 1000
    assert abs(seconds - row[2].replace(tzinfo=datetime.UTC).timestamp()) < 1
    assert row[4].date() == row[2].date()


def test_cast_and_blob_conversions(session: Session, scores: str) -> None:
    row = session.execute(
        f"SELECT CAST(points AS text), CAST(rating AS int), intAsBlob(points) AS b "
        f"FROM {scores} WHERE team = 'a' AND player = 2"
    ).one()
    assert tuple(row) == ("30", 2, b"\x00\x00\x00\x1e")
    with pytest.raises(InvalidRequest, match="cannot be cast to"):
        session.execute(f"SELECT CAST(team AS int) FROM {scores}")
