"""bridge.adapters.cassandra's metrics: the real driver against the CQL test server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.metrics_exporters import (
    EXPORTERS,
    TEMPORALITIES,
    Exporter,
    Wrapped,
    histogram_points,
    open_exporter,
    open_wrapped,
    same_histogram,
)
from tests.support import eventually

from .conftest import make_cluster

pytestmark = pytest.mark.anyio


@pytest.fixture(params=EXPORTERS)
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    yield from open_exporter(request.param)


@pytest.fixture(scope="module")
def sync_session(cql_server: Any) -> Iterator[Any]:
    cluster = make_cluster(cql_server)
    session = cluster.connect()
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture(autouse=True)
def no_faults(cql_server: Any) -> Iterator[None]:
    yield
    cql_server.clear_faults()


async def three_answered_and_one_timed_out(cql_server: Any, sync_session: Any) -> None:
    from cassandra import ReadTimeout

    from bridge.adapters.cassandra import AsyncSession

    session = AsyncSession(sync_session)
    for _ in range(3):
        await session.execute("SELECT release_version FROM system.local")
    cql_server.prime("SELECT peer FROM system.peers", error="read_timeout")
    with pytest.raises(ReadTimeout):
        await session.execute("SELECT peer FROM system.peers")


async def test_request_duration_by_host_and_error_type(
    exporter: Exporter, cql_server: Any, sync_session: Any
) -> None:
    await three_answered_and_one_timed_out(cql_server, sync_session)
    collected = await exporter.collect()
    name = "db.client.operation.duration"
    host = {"db__system__name": "cassandra", "server__port": cql_server.port}
    ok = [v for labels, v in collected.series[name] if "error.type" not in labels]
    assert sum(h.count for h in ok) >= 3  # connection set-up queries are not ours: only >=
    timed_out = collected.histogram(name, error__type="cassandra.ReadTimeout", **host)
    assert timed_out.count == 1 and timed_out.sum > 0


async def test_requests_in_flight_and_waiting(
    exporter: Exporter, cql_server: Any, sync_session: Any
) -> None:
    from bridge.adapters.cassandra import AsyncSession

    session = AsyncSession(sync_session, max_in_flight=1)
    cql_server.prime("SELECT peer FROM system.peers", no_response=True, times=1)
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(session.execute, "SELECT peer FROM system.peers")
        await eventually(lambda: session.statistics().waiting == 1)
        try:
            during = await exporter.collect()
        finally:
            cql_server.clear_faults()
            tg.cancel_scope.cancel()
    assert during.value("bridge.cassandra.requests.active") >= 1
    assert during.value("bridge.cassandra.requests.waiting") >= 1


@pytest.fixture(params=TEMPORALITIES)
def wrapped(request: pytest.FixtureRequest) -> Iterator[Wrapped]:
    yield from open_wrapped(request.param)


async def test_pre_aggregated_request_durations_match_the_sdk(
    wrapped: Wrapped, cql_server: Any, sync_session: Any
) -> None:
    """Through bridge.metrics.opentelemetry_exporter: the same points as the SDK's own
    aggregation of every value, exact counts, min and max included."""
    await three_answered_and_one_timed_out(cql_server, sync_session)
    name = "db.client.operation.duration"
    ours, sdk = histogram_points(wrapped.export(), name), histogram_points(wrapped.oracle(), name)
    assert ours.keys() == sdk.keys()
    for key, point in ours.items():
        same_histogram(point, sdk[key])
    (timed_out,) = [p for key, p in ours.items() if ("error.type", "cassandra.ReadTimeout") in key]
    assert timed_out.count == 1 and timed_out.min == timed_out.max == timed_out.sum > 0
    assert sum(p.count for p in ours.values()) >= 4
