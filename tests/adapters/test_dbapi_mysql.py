"""bridge.adapters.dbapi with PyMySQL against the real MariaDB on 127.0.0.1 (never a mock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pymysql
import pymysql.cursors
import pytest

import bridge
from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import mariadb, unique_table, until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def my() -> dict[str, Any]:
    return mariadb()


@pytest.fixture(scope="module")
def admin(my: dict[str, Any]) -> Iterator[Any]:
    conn = pymysql.connect(autocommit=True, **my)
    yield conn
    conn.close()


def sql(admin: Any, query: str, params: Any = None) -> tuple[Any, ...]:
    with admin.cursor() as cursor:
        cursor.execute(query, params)
        return tuple(cursor.fetchall())


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = unique_table()
    sql(admin, f"create table {name} (id integer primary key, name text not null) engine=InnoDB")
    sql(admin, f"insert into {name} values (1, 'ada'), (2, 'bob')")
    yield name
    sql(admin, f"drop table if exists {name}")


def running(admin: Any, tag: str) -> tuple[Any, ...]:
    return sql(
        admin,
        "select id from information_schema.processlist "
        "where info like %s and id <> connection_id()",
        (f"%{tag}%",),
    )


async def test_rows_come_back_as_the_cursor_class_makes_them(
    my: dict[str, Any], table: str
) -> None:
    async with create_pool(pymysql.connect, **my) as pool:
        assert await pool.fetchone(f"select id, name from {table} where id = %s", (1,)) == (
            1,
            "ada",
        )
    async with create_pool(pymysql.connect, cursorclass=pymysql.cursors.DictCursor, **my) as pool:
        rows = await pool.fetchall(f"select id, name from {table} order by id")
        assert rows == [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]
        async with pool.connection() as conn:
            streamed = [row async for row in conn.stream(f"select id from {table} order by id")]
        assert streamed == [{"id": 1}, {"id": 2}]


async def test_transaction_commits_rolls_back_and_nests(my: dict[str, Any], table: str) -> None:
    async with create_pool(pymysql.connect, **my) as pool:
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(f"insert into {table} values (3, 'cy')")
                with pytest.raises(pymysql.err.IntegrityError):
                    async with conn.transaction():
                        await conn.execute(f"insert into {table} values (4, 'dee')")
                        await conn.execute(f"insert into {table} values (1, 'dup')")
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(f"insert into {table} values (5, 'eve')")
                    raise RuntimeError("undo")
        ids = await pool.fetchall(f"select id from {table} order by id")
        assert [i for (i,) in ids] == [1, 2, 3]


async def test_stream_reads_through_an_unbuffered_cursor(my: dict[str, Any]) -> None:
    query = "select seq from seq_1_to_20000"  # MariaDB's sequence engine
    async with create_pool(pymysql.connect, **my) as pool, pool.connection() as conn:
        total = 0
        async with conn.stream(query, batch=700) as rows:
            async for (i,) in rows:
                total += i
                assert rows.buffered < 700
        assert total == 20000 * 20001 // 2
        async with conn.stream(query, batch=10) as rows:
            async for _ in rows:
                break  # stopping early leaves the connection usable
        assert await conn.fetchone("select 1") == (1,)


async def test_a_deadline_reaches_the_server_as_max_statement_time(my: dict[str, Any]) -> None:
    async with create_pool(pymysql.connect, **my) as pool, pool.connection() as conn:
        with anyio.fail_after(30):
            (inside,) = await conn.fetchone("select @@max_statement_time")
        (outside,) = await conn.fetchone("select @@max_statement_time")
    assert 0 < float(inside) <= 30.1
    assert float(outside) == 0


async def test_cancelled_sleep_is_killed_on_the_server_and_the_connection_returns(
    my: dict[str, Any], admin: Any
) -> None:
    tag = f"cancel-{uuid.uuid4().hex}"
    async with create_pool(pymysql.connect, max_size=1, **my) as pool:
        (thread_id,) = await pool.fetchone("select connection_id()")
        async with anyio.create_task_group() as tg:

            async def sleep() -> None:
                async with pool.connection() as conn:
                    await conn.execute(f"select sleep(60), '{tag}'")

            tg.start_soon(sleep)
            await until(lambda: bool(running(admin, tag)), "sleep(60) started on the server")
            tg.cancel_scope.cancel()
        await until(lambda: not running(admin, tag), "the cancelled sleep left the processlist")
        await until(lambda: pool.statistics().idle == 1, "its connection back in the pool")
        stats = pool.statistics()
        assert (stats.cancelled, stats.replaced) == (1, 0)
        assert await pool.fetchone("select connection_id()") == (thread_id,)


async def test_killed_connection_costs_one_failed_call(my: dict[str, Any], admin: Any) -> None:
    async with create_pool(pymysql.connect, max_size=1, **my) as pool:
        (thread_id,) = await pool.fetchone("select connection_id()")
        await bridge.to_thread(sql, admin, f"kill connection {int(thread_id)}")  # it blocks
        with pytest.raises(pymysql.err.MySQLError):
            await pool.fetchone("select 1")
        assert await pool.fetchone("select connection_id()") != (thread_id,)
        assert pool.statistics().replaced == 1
