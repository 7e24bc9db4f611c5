"""Plans for prepared INSERT and SELECT: the same results and errors as the general path.

Bind values given by name (a dict) always take the general path, so twin engines fed
the same requests, one by position and one by name, must answer alike.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from bridge.testing.cqlserver._engine import CQLError, Engine, Prepared, RowsResult, Unprepared
from bridge.testing.cqlserver._murmur3 import murmur3_token, python_murmur3_token
from bridge.testing.cqlserver._types import BIGINT, INT, TEXT, CQLType

_KEYSPACE = (
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
)
_TABLES = (
    "CREATE TABLE ks.c (a uuid, b text, c int, d bigint, s int static, v text, l list<int>,"
    " m map<text, int>, PRIMARY KEY ((a, b), c, d)) WITH CLUSTERING ORDER BY (c DESC, d ASC)",
    "CREATE TABLE ks.t (k text PRIMARY KEY, v blob) WITH default_time_to_live = 100",
)
_PLANNED = (
    "INSERT INTO ks.c (a, b, c, d, s, v, l, m) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " USING TTL ? AND TIMESTAMP ?",
    "INSERT INTO ks.c (d, c, b, a, v) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "INSERT INTO ks.t (k, v) VALUES (?, ?)",
    "INSERT INTO ks.t (k, v) VALUES (?, ?) USING TTL ?",
    "SELECT * FROM ks.c WHERE a = ? AND b = ?",
    "SELECT v, writetime(v), ttl(v), s, l FROM ks.c WHERE b = ? AND a = ? LIMIT ?",
    "SELECT * FROM ks.c WHERE a = ? AND b = ? PER PARTITION LIMIT 2",
    "SELECT k, v, ttl(v) FROM ks.t WHERE k = ?",
)
_GENERAL = (
    "INSERT INTO ks.c (b, a, s) VALUES (?, ?, ?)",  # no clustering key: an error
    "INSERT INTO ks.c (a, b, c, d) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    "SELECT * FROM ks.c WHERE a = ? AND b = ? AND c = ?",
    "SELECT count(*) FROM ks.c WHERE a = ? AND b = ?",
    "UPDATE ks.c SET v = ? WHERE a = ? AND b = ? AND c = ? AND d = ?",
    "UPDATE ks.c USING TTL ? SET s = ? WHERE a = ? AND b = ?",
    "DELETE FROM ks.c WHERE a = ? AND b = ? AND c = ?",
)

_UUIDS = [uuid.UUID(int=1), uuid.UUID(int=2 << 64)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_engine(clock: Clock) -> Engine:
    engine = Engine(clock=clock)
    for query in (_KEYSPACE, *_TABLES):
        engine.execute(query)
    return engine


def outcome(engine: Engine, prepared: Prepared, values: Any, **kwargs: Any) -> object:
    try:
        result = engine.execute(prepared, values, **kwargs)
    except CQLError as error:
        return (type(error).__name__, error.message)
    if isinstance(result, RowsResult):
        return ([c.name for c in result.columns], result.rows, result.paging_state)
    return type(result).__name__


def planned(engine: Engine, prepared: Prepared) -> bool:
    entry = engine._plans.get(prepared.id)
    return entry is not None and entry.plan is not None


def random_value(rng: random.Random, name: str, cql_type: CQLType) -> bytes | None:
    """Mostly good values of a few keys, with nulls, empty and malformed bytes mixed in."""
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.08:
        return b""
    if roll < 0.10:
        return b"\x01\x02\x03"
    if name == "[ttl]":
        return INT.serialize(rng.choice([0, 5, 50, -1, 700_000_000]))
    if name == "[timestamp]":
        return BIGINT.serialize(rng.randrange(1_699_999_990_000_000, 1_700_000_100_000_000))
    if name in ("[limit]", "[per_partition_limit]"):
        return INT.serialize(rng.choice([1, 2, 5, 0]))
    if cql_type.name == "uuid":
        return cql_type.serialize(rng.choice(_UUIDS))
    if cql_type.name in ("int", "bigint"):
        return cql_type.serialize(rng.randrange(4))
    if cql_type.name == "text":
        return TEXT.serialize(rng.choice(["", "a", "b", "é"]))
    if cql_type.name == "blob":
        return rng.randbytes(rng.randrange(3))
    if cql_type.name == "list<int>":
        return cql_type.serialize([rng.randrange(5) for _ in range(rng.randrange(3))])
    if cql_type.name == "map<text, int>":
        return cql_type.serialize(
            sorted({rng.choice("xyz"): 1 for _ in range(rng.randrange(3))}.items())
        )
    raise AssertionError(cql_type.name)


def test_twin_engines_answer_alike_by_position_and_by_name() -> None:
    clock = Clock()
    by_position, by_name = make_engine(clock), make_engine(clock)
    statements = [
        (by_position.prepare(query, None), by_name.prepare(query, None))
        for query in (*_PLANNED, *_GENERAL)
    ]
    rng = random.Random(7)
    for step in range(3000):
        first, second = rng.choice(statements)
        values = [random_value(rng, spec.name, spec.type) for spec in first.bind]
        kwargs: dict[str, Any] = {
            "timestamp": rng.choice([None, None, 1_700_000_050_000_000]),
            "page_size": rng.choice([None, 1, 2, 5000]),
        }
        named = {spec.name: value for spec, value in zip(second.bind, values, strict=True)}
        assert outcome(by_position, first, values, **kwargs) == outcome(
            by_name, second, named, **kwargs
        ), (step, first.query, values, kwargs)
        clock.now += rng.choice([0.0, 0.0, 1.0, 30.0])
        if rng.random() < 0.005:
            for engine in (by_position, by_name):
                engine.execute("TRUNCATE ks.c")
    assert all(planned(by_position, p) for p, _ in statements[: len(_PLANNED)])
    assert not any(planned(by_position, p) for p, _ in statements[len(_PLANNED) :])


def test_too_many_or_too_few_values_are_refused_as_before() -> None:
    engine = make_engine(Clock())
    insert = engine.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)", None)
    with pytest.raises(CQLError, match="There were 2 markers"):
        engine.execute(insert, [b"k"])
    with pytest.raises(CQLError, match="There were 2 markers"):
        engine.execute(insert, [b"k", b"v", b"w"])


def test_a_select_prepared_before_the_table_was_recreated_sees_the_new_columns() -> None:
    engine = make_engine(Clock())
    query = "SELECT * FROM ks.t WHERE k = ?"
    old = engine.prepare(query, None)
    assert outcome(engine, old, [b"k"]) == (["k", "v"], [], None)
    engine.execute("DROP TABLE ks.t")
    with pytest.raises(Unprepared):
        engine.get_prepared(old.id)
    engine.execute("CREATE TABLE ks.t (k text PRIMARY KEY, v int, w text)")
    engine.execute("INSERT INTO ks.t (k, v, w) VALUES ('k', 1, 'x')")
    new = engine.prepare(query, None)
    assert new.id == old.id
    assert outcome(engine, new, [b"k"]) == (
        ["k", "v", "w"],
        [[b"k", INT.serialize(1), b"x"]],
        None,
    )


def test_an_insert_held_across_drop_and_create_writes_to_the_new_table() -> None:
    engine = make_engine(Clock())
    insert = engine.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)", None)
    engine.execute(insert, [b"before", b"\x01"])
    engine.execute("DROP TABLE ks.t")
    engine.execute("CREATE TABLE ks.t (k text PRIMARY KEY, v blob)")
    engine.execute(insert, [b"after", b"\x02"])
    result = engine.execute("SELECT k, v FROM ks.t")
    assert isinstance(result, RowsResult)
    assert result.rows == [[b"after", b"\x02"]]


def test_an_insert_held_across_a_type_change_takes_the_general_path() -> None:
    clock = Clock()
    twins = make_engine(clock), make_engine(clock)
    held = [e.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)", None) for e in twins]
    for engine in twins:
        engine.execute("DROP TABLE ks.t")
        engine.execute("CREATE TABLE ks.t (k text PRIMARY KEY, v int)")
    assert outcome(twins[0], held[0], [b"k", b"\x01"]) == outcome(
        twins[1], held[1], {"k": b"k", "v": b"\x01"}
    )
    assert not planned(twins[0], held[0])


def test_truncate_and_drop_keyspace_leave_no_stale_rows_behind() -> None:
    engine = make_engine(Clock())
    insert = engine.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)", None)
    select = engine.prepare("SELECT v FROM ks.t WHERE k = ?", None)
    engine.execute(insert, [b"k", b"\x01"])
    assert outcome(engine, select, [b"k"]) == (["v"], [[b"\x01"]], None)
    engine.execute("TRUNCATE ks.t")
    assert outcome(engine, select, [b"k"]) == (["v"], [], None)
    engine.execute(insert, [b"k", b"\x02"])
    assert outcome(engine, select, [b"k"]) == (["v"], [[b"\x02"]], None)
    engine.execute("DROP KEYSPACE ks")
    assert engine._plans == {}
    for query in (_KEYSPACE, *_TABLES):
        engine.execute(query)
    assert outcome(engine, select, [b"k"]) == (["v"], [], None)


def test_bound_ttl_and_timestamp_are_honoured() -> None:
    clock = Clock()
    engine = make_engine(clock)
    insert = engine.prepare(
        "INSERT INTO ks.c (a, b, c, d, v) VALUES (?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
        None,
    )
    select = engine.prepare("SELECT v, writetime(v), ttl(v) FROM ks.c WHERE a = ? AND b = ?", None)
    key = [_UUIDS[0].bytes, b"b", INT.serialize(1), BIGINT.serialize(1)]

    def write(value: bytes, ttl: int, stamp: int) -> None:
        engine.execute(insert, [*key, value, INT.serialize(ttl), BIGINT.serialize(stamp)])

    def read() -> object:
        return outcome(engine, select, key[:2])

    write(b"new", 10, 2_000)
    write(b"old", 10, 1_000)  # an older timestamp loses
    assert read() == (
        ["v", "writetime(v)", "ttl(v)"],
        [[b"new", BIGINT.serialize(2_000), INT.serialize(10)]],
        None,
    )
    clock.now += 10
    assert read() == (["v", "writetime(v)", "ttl(v)"], [], None)


def test_the_request_timestamp_and_the_tables_default_ttl_are_honoured() -> None:
    clock = Clock()
    engine = make_engine(clock)
    insert = engine.prepare("INSERT INTO ks.t (k, v) VALUES (?, ?)", None)
    select = engine.prepare("SELECT writetime(v), ttl(v) FROM ks.t WHERE k = ?", None)
    engine.execute(insert, [b"k", b"\x01"], timestamp=42)
    assert outcome(engine, select, [b"k"]) == (
        ["writetime(v)", "ttl(v)"],
        [[BIGINT.serialize(42), INT.serialize(100)]],
        None,
    )
    clock.now += 100
    assert outcome(engine, select, [b"k"]) == (["writetime(v)", "ttl(v)"], [], None)


def test_a_prepared_select_of_a_big_partition_still_pages() -> None:
    engine = make_engine(Clock())
    insert = engine.prepare("INSERT INTO ks.c (a, b, c, d) VALUES (?, ?, ?, ?)", None)
    for c in range(5):
        engine.execute(insert, [_UUIDS[0].bytes, b"b", INT.serialize(c), BIGINT.serialize(0)])
    select = engine.prepare("SELECT c FROM ks.c WHERE a = ? AND b = ?", None)
    seen: list[list[bytes | None]] = []
    state = None
    while True:
        result = engine.execute(select, [_UUIDS[0].bytes, b"b"], page_size=2, paging_state=state)
        assert isinstance(result, RowsResult)
        seen += result.rows
        state = result.paging_state
        if state is None:
            break
    assert seen == [[INT.serialize(c)] for c in (4, 3, 2, 1, 0)]


@pytest.mark.parametrize("key", [b"", b"k", bytes(range(256)) * 3])
def test_murmur3_tokens_from_the_drivers_hash_equal_the_pure_python_ones(key: bytes) -> None:
    assert murmur3_token(key) == python_murmur3_token(key)
