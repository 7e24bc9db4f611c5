"""bridge.adapters.dbapi pools in the metrics: sqlite3 files (no server needed)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from bridge.adapters.dbapi import create_pool
from tests.metrics_exporters import EXPORTERS, Exporter, open_exporter
from tests.support import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture(params=EXPORTERS)
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    yield from open_exporter(request.param)


async def test_connections_by_state_and_tasks_waiting(exporter: Exporter, tmp_path: Path) -> None:
    pool_name = {"db__client__connection__pool__name": "sqlite3"}
    async with create_pool(sqlite3.connect, str(tmp_path / "m.db"), max_size=1) as pool:
        async with anyio.create_task_group() as tg:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
                tg.start_soon(pool.execute, "SELECT 2")  # waits: the one connection is ours
                await eventually(lambda: pool.statistics().waiting == 1)
                held = await exporter.collect()
        after = await exporter.collect()
    used = {"db__client__connection__state": "used", **pool_name}
    assert held.value("db.client.connection.count", **used) == 1
    assert held.value("db.client.connection.max", **pool_name) >= 1
    assert held.value("db.client.connection.pending_requests", **pool_name) == 1
    assert after.value("db.client.connection.pending_requests", **pool_name) == 0
    idle = {"db__client__connection__state": "idle", **pool_name}
    assert after.value("db.client.connection.count", **idle) >= 1
