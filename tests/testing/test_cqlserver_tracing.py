"""Tracing, client warnings and echoed custom payloads, as the driver reads them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

from bridge.testing.cqlserver import ServerThread

from .conftest import make_cluster

KS = "tracing_test"


@pytest.fixture(scope="module")
def session(versioned_session: Session) -> Session:
    return versioned_session  # on protocol v4, then v5


def test_a_traced_query_has_a_session_the_driver_can_read(
    session: Session, table: Callable[..., str]
) -> None:
    t = table("k int PRIMARY KEY, v int")
    result = session.execute(f"INSERT INTO {t} (k, v) VALUES (1, 2)", trace=True)
    trace = result.get_query_trace(max_wait_sec=30)
    assert trace.request_type == "Execute CQL3 query"
    assert trace.parameters["query"] == f"INSERT INTO {t} (k, v) VALUES (1, 2)"
    assert trace.duration.total_seconds() > 0 and trace.started_at is not None
    assert [e.description for e in trace.events][-1] == "Request complete"
    assert str(trace.coordinator) == session.cluster.contact_points[0]


def test_a_traced_prepared_statement(session: Session, table: Callable[..., str]) -> None:
    t = table("k int PRIMARY KEY, v int")
    select = session.prepare(f"SELECT v FROM {t} WHERE k = ?")
    result = session.execute(select, (1,), trace=True)
    assert result.get_query_trace(max_wait_sec=30).request_type == "Execute CQL3 prepared query"
    untraced = session.execute(select, (1,))
    assert untraced.get_all_query_traces() == []  # no trace id when not asked for


def test_an_aggregate_over_every_partition_warns(
    session: Session, table: Callable[..., str]
) -> None:
    t = table("k int PRIMARY KEY, v int")
    everywhere = session.execute(SimpleStatement(f"SELECT count(*) FROM {t}"))
    assert everywhere.response_future.warnings == ["Aggregation query used without partition key"]
    one = session.execute(f"SELECT count(*) FROM {t} WHERE k = 1")
    assert not one.response_future.warnings


def test_custom_payloads_are_echoed_when_asked_for(
    cql_server_factory: Callable[..., ServerThread],
) -> None:
    server = cql_server_factory(echo_custom_payload=True)
    cluster = make_cluster(server, protocol_version=5)
    try:
        session = cluster.connect()
        session.execute(
            "CREATE KEYSPACE echo WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute("CREATE TABLE echo.t (k int PRIMARY KEY)")
        payload = {"a": b"1", "b": b""}
        future = session.execute_async(
            "SELECT count(*) FROM echo.t", custom_payload=payload, trace=True
        )
        future.result()
        assert future.custom_payload == payload
        assert future.warnings == ["Aggregation query used without partition key"]
        assert future.get_query_trace(max_wait=30).parameters["query"].startswith("SELECT")
    finally:
        cluster.shutdown()


def test_custom_payloads_are_ignored_by_default(session: Session) -> None:
    future = session.execute_async("SELECT * FROM system.local", custom_payload={"a": b"1"})
    future.result()
    assert future.custom_payload is None
