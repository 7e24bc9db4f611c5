"""AsyncCluster's default rows: the driver's named tuples, the class built once per column list.

The real driver against the in-memory CQL server over real sockets, both
transports, on asyncio, uvloop and trio; the sync driver's own rows are the
reference.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("cassandra")

from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
from cassandra.query import dict_factory, named_tuple_factory

from bridge.adapters.cassandra import AsyncCluster, AsyncSession
from bridge.adapters.cassandra._rows import cached_named_tuple_factory
from bridge.testing.cqlserver import ServerThread

from .conftest import make_cluster, make_keyspace

pytestmark = pytest.mark.anyio

KS = "rows"
KEYS = itertools.count(100)
AWKWARD = 'SELECT k AS "the key", v, writetime(v) FROM rows.kv WHERE k = 1'


@pytest.fixture(scope="module")
def keyspace(cql_server: ServerThread) -> None:
    make_keyspace(
        cql_server,
        KS,
        "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)",
        "INSERT INTO kv (k, v) VALUES (1, 'one') USING TIMESTAMP 42",
    )


@pytest.fixture(scope="module")
def reference_row(cql_server: ServerThread, keyspace: None) -> Any:
    """The sync driver's own row for AWKWARD, with its default factory."""
    cluster = make_cluster(cql_server)
    try:
        return cluster.connect().execute(AWKWARD).one()
    finally:
        cluster.shutdown()


def async_cluster(server: ServerThread, transport: str, **kwargs: Any) -> AsyncCluster:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AsyncCluster(
            server.contact_points,
            port=server.port,
            transport=transport,  # type: ignore[arg-type]
            **kwargs,
        )


@pytest.fixture(params=["loop", "thread"])
async def session(
    request: pytest.FixtureRequest, cql_server: ServerThread, keyspace: None
) -> AsyncIterator[AsyncSession]:
    async with async_cluster(cql_server, request.param) as cluster:
        yield await cluster.connect(KS)


async def test_rows_are_the_drivers_named_tuples(session: AsyncSession, reference_row: Any) -> None:
    expected = reference_row
    row = (await session.execute(AWKWARD)).one()
    assert row == expected == (1, "one", 42)
    assert row._fields == expected._fields  # names cleaned exactly as the driver cleans them
    assert type(row).__name__ == "Row"
    assert row.the_key == 1 and row.v == "one"


async def test_the_row_class_is_built_once_per_column_list(session: AsyncSession) -> None:
    first = (await session.execute(AWKWARD)).one()
    second = (await session.execute(AWKWARD)).one()
    other = (await session.execute("SELECT v FROM rows.kv WHERE k = 1")).one()
    assert type(first) is type(second)
    assert type(other) is not type(first) and other._fields == ("v",)


async def test_lwt_results_still_say_whether_they_applied(session: AsyncSession) -> None:
    # The driver recognises its own row factories by equality (ResultSet.was_applied).
    factory = session.session.cluster.profile_manager.default.row_factory
    assert factory is cached_named_tuple_factory and factory == named_tuple_factory
    k = next(KEYS)  # a fresh row for each backend and transport
    insert = "INSERT INTO rows.kv (k, v) VALUES (%s, %s) IF NOT EXISTS"
    first = await session.execute(insert, (k, "a"))
    again = await session.execute(insert, (k, "b"))
    assert first.was_applied is True
    assert again.was_applied is False
    assert again.one().v == "a"


@pytest.mark.parametrize("transport", ["loop", "thread"])
async def test_a_row_factory_of_your_own_is_left_alone(
    cql_server: ServerThread, keyspace: None, transport: str
) -> None:
    profiles = {EXEC_PROFILE_DEFAULT: ExecutionProfile(row_factory=dict_factory)}
    async with async_cluster(cql_server, transport, execution_profiles=profiles) as cluster:
        session = await cluster.connect(KS)
        row = (await session.execute("SELECT k, v FROM rows.kv WHERE k = 1")).one()
    assert row == {"k": 1, "v": "one"}
    assert cluster.cluster.profile_manager.default.row_factory is dict_factory


def test_the_cached_factory_gives_the_drivers_rows_for_any_names() -> None:
    names = ["k", "the key", "1st", "class", "v", "v"]  # spaces, digits, keywords, repeats
    rows = [[1, 2, 3, 4, 5, 6], (7, 8, 9, 10, 11, 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = named_tuple_factory(names, rows)
    got = cached_named_tuple_factory(names, rows)
    assert got == expected
    assert [r._fields for r in got] == [r._fields for r in expected]
    assert cached_named_tuple_factory(names, []) == []
