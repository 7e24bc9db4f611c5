"""bridge.adapters.dbapi in the metrics: pool gauges and statement latency, on sqlite3 files
and the real PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import bridge.metrics
from bridge.adapters.dbapi import create_pool
from tests.metrics_exporters import EXPORTERS, Collected, Exporter, Histogram, open_exporter
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


# -- statement latency: db.client.operation.duration -------------------------------------------

DURATION = "db.client.operation.duration"


def _successes(collected: Collected, **attrs: str) -> Histogram:
    """The one series matching `attrs` that has no error.type."""
    want = {k.replace("__", "."): v for k, v in attrs.items()}
    found = [
        value
        for labels, value in collected.series.get(DURATION, [])
        if "error.type" not in labels and all(labels.get(k) == v for k, v in want.items())
    ]
    assert len(found) == 1, f"{attrs}: {collected.series.get(DURATION)}"
    return found[0]  # type: ignore[no-any-return]


async def test_sqlite_statements_by_command_and_error_type(
    exporter: Exporter, tmp_path: Path
) -> None:
    async with create_pool(sqlite3.connect, str(tmp_path / "d.db"), max_size=2) as pool:
        await pool.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
        async with pool.connection() as conn:
            await conn.executemany("INSERT INTO kv VALUES (?, ?)", [(1, "a"), (2, "b")])
            await conn.execute("insert into kv values (?, ?)", (3, "c"))  # as the user wrote it
            assert len(await conn.fetchall("SELECT k, v FROM kv")) == 3
            assert await conn.fetchone("SELECT v FROM kv WHERE k = ?", (2,)) == ("b",)
        with pytest.raises(sqlite3.OperationalError):
            await pool.execute("DELETE FROM missing")
    collected = await exporter.collect()
    sqlite = {"db__system__name": "sqlite"}
    assert _successes(collected, db__operation__name="SELECT", **sqlite).count == 2
    assert _successes(collected, db__operation__name="INSERT", **sqlite).count == 1
    assert _successes(collected, db__operation__name="BATCH INSERT", **sqlite).count == 1
    assert _successes(collected, db__operation__name="CREATE", **sqlite).count == 1
    failed = collected.histogram(
        DURATION, error__type="sqlite3.OperationalError", db__operation__name="DELETE", **sqlite
    )
    assert failed.count == 1 and failed.sum > 0


async def test_postgres_statements_timed_in_the_thread_for_every_task(exporter: Exporter) -> None:
    import psycopg2

    from tests.adapters.dbapi_servers import postgres

    async with create_pool(psycopg2.connect, **postgres(), max_size=4) as pool:

        async def sleeper() -> None:
            await pool.execute("SELECT pg_sleep(0.01)")

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(sleeper)
        await pool.fetchall("SELECT 1; SELECT 2")  # two statements: no operation name
        with pytest.raises(psycopg2.errors.UndefinedTable):
            await pool.fetchall("SELECT * FROM bridge_no_such_table")
    collected = await exporter.collect()
    pg = {"db__system__name": "postgresql"}
    sleeps = _successes(collected, db__operation__name="SELECT", **pg)
    assert sleeps.count == 12
    assert sleeps.sum >= 12 * 0.01  # the server's own sleep is inside each timed call
    several = [
        labels
        for labels, _ in collected.series[DURATION]
        if labels.get("db.system.name") == "postgresql" and "db.operation.name" not in labels
    ]
    assert len(several) == 1
    failed = collected.histogram(DURATION, error__type="psycopg2.errors.UndefinedTable", **pg)
    assert failed.count == 1


def test_statement_function_is_not_wrapped_while_metrics_are_off() -> None:
    from bridge.adapters._dbapi_metrics import timed

    assert not bridge.metrics.enabled()

    def run(*args: object) -> None:
        return None

    assert timed(run, object()) is run  # off costs one check, no wrapper, no clock read


@pytest.mark.parametrize(
    ("sql", "many", "name"),
    [
        ("SELECT 1", False, "SELECT"),
        ("  select *\nFROM t", False, "SELECT"),
        ("INSERT INTO t VALUES (?)", True, "BATCH INSERT"),
        ("UPDATE t SET v = 1;", False, "UPDATE"),
        ("SELECT 1; DROP TABLE t", False, None),
        ("/* hint */ SELECT 1", False, None),
        ("", False, None),
    ],
)
def test_operation_name_is_the_sql_command_of_a_single_statement(
    sql: str, many: bool, name: str | None
) -> None:
    from bridge.adapters._dbapi_metrics import operation

    assert operation(sql, many) == name
