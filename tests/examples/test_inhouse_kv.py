"""The README's "Adapting your own driver" example, against its real TCP server."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from examples.inhouse_kv.aio import AsyncKV
from examples.inhouse_kv.client import KVError
from examples.inhouse_kv.server import KVServer

# Runs under the suite's strict mode: nothing the adapter does blocks the loop.
pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[KVServer]:
    # A fixture, not `with` in the test: its shutdown() blocks (the test runs under strict mode).
    with KVServer() as server:
        yield server


async def test_adapted_client_gets_sets_scans_and_closes(server: KVServer) -> None:
    kv = await AsyncKV.connect("127.0.0.1", server.port, max_in_flight=8)
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(kv.set, f"user:{i:03}", f"name{i}")
    assert await kv.get("user:007") == "name7"
    assert await kv.get("missing") is None
    assert server.store["user:199"] == "name199"
    rows = [row async for row in kv.scan("user:1", prefetch=4)]
    assert rows == [(f"user:{i}", f"name{i}") for i in range(100, 200)]
    assert kv._limiter.statistics().peak <= 8
    await kv.close()


async def test_driver_errors_come_back_as_the_drivers_own(server: KVServer) -> None:
    kv = await AsyncKV.connect("127.0.0.1", server.port)
    await kv.close()
    with pytest.raises((KVError, OSError)):
        await kv.get("anything")
