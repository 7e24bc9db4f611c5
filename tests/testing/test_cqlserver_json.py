"""SELECT JSON and INSERT JSON through the real driver, on protocol v4 and v5."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cassandra import InvalidRequest
from cassandra.cluster import Session

KS = "json_test"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


COLUMNS = (
    "k int PRIMARY KEY, t text, b blob, u uuid, ts timestamp, d date, tm time, "
    "l list<int>, s set<text>, m map<int, text>, tp tuple<int, text>, flag boolean, x double"
)
DOCUMENT = {
    "k": 1,
    "t": "héllo",
    "b": "0x00ff",
    "u": "00000000-0000-4000-8000-000000000001",
    "ts": "2024-05-06 07:08:09.123Z",
    "d": "2024-02-29",
    "tm": "13:14:15.000000123",
    "l": [3, 1],
    "s": ["b", "a"],
    "m": {"1": "one"},
    "tp": [7, "seven"],
    "flag": True,
    "x": 1.5,
}


def test_a_document_round_trips(session: Session, table: Callable[..., str]) -> None:
    t = table(COLUMNS)
    session.execute(f"INSERT INTO {t} JSON %s", (json.dumps(DOCUMENT),))
    result = session.execute(f"SELECT JSON * FROM {t}")
    assert result.column_names == ["[json]"]
    got = json.loads(result.one()[0])
    assert got == {**DOCUMENT, "s": ["a", "b"]}  # a set comes back sorted
    row = session.execute(f"SELECT l, m, tp, ts FROM {t}").one()
    assert (row.l, dict(row.m), row.tp) == ([3, 1], {1: "one"}, (7, "seven"))


def test_omitted_columns_are_nulled_unless_default_unset(
    session: Session, table: Callable[..., str]
) -> None:
    t = table("k int PRIMARY KEY, a int, b int")
    session.execute(f"INSERT INTO {t} (k, a, b) VALUES (1, 10, 20)")
    session.execute(f"""INSERT INTO {t} JSON '{{"k": 1, "a": 11}}' DEFAULT UNSET""")
    assert tuple(session.execute(f"SELECT a, b FROM {t}").one()) == (11, 20)
    prepared = session.prepare(f"INSERT INTO {t} JSON ?")
    session.execute(prepared, ('{"k": 1, "a": 12}',))  # DEFAULT NULL
    assert tuple(session.execute(f"SELECT a, b FROM {t}").one()) == (12, None)


def test_select_json_of_chosen_columns_and_aliases(
    session: Session, table: Callable[..., str]
) -> None:
    t = table("k int PRIMARY KEY, v text")
    session.execute(f"INSERT INTO {t} (k, v) VALUES (1, 'x')")
    (text,) = session.execute(f'SELECT JSON k, v AS "Value" FROM {t}').one()
    assert json.loads(text) == {"k": 1, '"Value"': "x"}


def test_bad_documents_are_refused(session: Session, table: Callable[..., str]) -> None:
    t = table("k int PRIMARY KEY, v int")
    with pytest.raises(InvalidRequest, match="unrecognized column: nope"):
        session.execute(f"""INSERT INTO {t} JSON '{{"k": 1, "nope": 2}}'""")
    with pytest.raises(InvalidRequest, match="Could not decode JSON"):
        session.execute(f"INSERT INTO {t} JSON 'not json'")
    with pytest.raises(InvalidRequest, match="Error decoding JSON value for v"):
        session.execute(f"""INSERT INTO {t} JSON '{{"k": 1, "v": "abc"}}'""")
