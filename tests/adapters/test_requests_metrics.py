"""bridge.adapters.requests' metrics, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import requests

from bridge.adapters.requests import AsyncSession
from bridge.testing.httpserver import HTTPTestServer, unused_port
from tests.metrics_exporters import EXPORTERS, Exporter, open_exporter
from tests.support import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture(params=EXPORTERS)
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    yield from open_exporter(request.param)


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


async def test_request_duration_by_host_status_class_and_error(
    exporter: Exporter, server: HTTPTestServer
) -> None:
    closed = unused_port()
    async with AsyncSession() as session:
        await session.get(server.url("/status/200"))
        await session.get(server.url("/status/204"))
        await session.post(server.url("/status/503"))
        with pytest.raises(requests.ConnectionError):
            await session.get(f"http://127.0.0.1:{closed}/")
    collected = await exporter.collect()
    name = "http.client.request.duration"
    host = {"server__address": "127.0.0.1", "server__port": server.port}
    ok = collected.histogram(name, http__request__method="GET", bridge__http__status_class="2xx",
                             **host)  # fmt: skip
    assert ok.count == 2 and ok.sum > 0
    failed = collected.histogram(name, http__request__method="POST",
                                 bridge__http__status_class="5xx", **host)  # fmt: skip
    assert failed.count == 1
    refused = collected.histogram(name, server__port=closed,
                                  error__type="requests.exceptions.ConnectionError")  # fmt: skip
    assert refused.count == 1


async def test_requests_in_flight(exporter: Exporter, server: HTTPTestServer) -> None:
    async with AsyncSession() as session, anyio.create_task_group() as tg:
        tg.start_soon(session.get, server.url("/gate"))
        await eventually(lambda: server.active == 1)
        try:
            during = await exporter.collect()
        finally:
            server.gate.set()
    assert during.value("http.client.active_requests") >= 1
    after = await exporter.collect()
    assert after.value("http.client.active_requests") == 0
    assert after.value("bridge.pool.threads", bridge__pool__name="requests") >= 1
