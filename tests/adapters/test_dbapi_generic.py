"""A PEP 249 driver the pool has no dialect for: psycopg 3's sync API, on the real PostgreSQL.

The generic answers apply: the driver's own implicit transactions (a commit
after each statement outside `transaction()`), savepoints in standard SQL,
pool threads because the module's `threadsafety` is 2, and the connection's
own `cancel()` to stop a statement when the caller gives up.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest

from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import postgres, unique_table, until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def conninfo() -> str:
    return psycopg.conninfo.make_conninfo(**postgres())


@pytest.fixture(scope="module")
def admin(conninfo: str) -> Iterator[Any]:
    conn = psycopg.connect(conninfo, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = unique_table()
    admin.execute(f"create table {name} (id integer primary key)")
    yield name
    admin.execute(f"drop table if exists {name}")


async def test_statements_commit_and_transactions_nest(conninfo: str, table: str) -> None:
    async with create_pool(psycopg.connect, conninfo, min_size=2, max_size=2) as pool:
        async with pool.connection() as writer, pool.connection() as reader:
            await writer.execute(f"insert into {table} values (1)")
            assert await reader.fetchall(f"select id from {table}") == [(1,)]  # committed
            async with writer.transaction():
                await writer.execute(f"insert into {table} values (2)")
                with pytest.raises(psycopg.errors.UniqueViolation):
                    async with writer.transaction():
                        await writer.execute(f"insert into {table} values (3)")
                        await writer.execute(f"insert into {table} values (1)")
                assert await reader.fetchall(f"select id from {table}") == [(1,)]  # not yet
            assert await reader.fetchall(f"select id from {table} order by id") == [(1,), (2,)]


async def test_connections_move_between_pool_threads(conninfo: str) -> None:
    async with create_pool(psycopg.connect, conninfo, max_size=1) as pool:
        threads = set()
        async with pool.connection() as conn:
            for _ in range(20):
                threads.add(await conn.run(lambda raw: threading.get_ident()))
        assert threading.get_ident() not in threads


async def test_cancel_uses_the_connections_own_cancel(conninfo: str, admin: Any) -> None:
    tag = f"generic-{uuid.uuid4().hex}"

    def running() -> bool:
        query = "select 1 from pg_stat_activity where state = 'active' and query like %s"
        return admin.execute(query, (f"%{tag}%",)).fetchone() is not None

    async with create_pool(psycopg.connect, conninfo, max_size=1) as pool:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.execute, f"select pg_sleep(60), '{tag}'")
            await until(running, "pg_sleep(60) started on the server")
            tg.cancel_scope.cancel()
        await until(lambda: not running(), "the cancelled pg_sleep left pg_stat_activity")
        await until(lambda: pool.statistics().idle == 1, "its connection back in the pool")
        assert (pool.statistics().cancelled, pool.statistics().replaced) == (1, 0)
        assert await pool.fetchone("select 1") == (1,)
