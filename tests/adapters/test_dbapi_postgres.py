"""bridge.adapters.dbapi with psycopg2 against the real PostgreSQL on 127.0.0.1 (never a mock).

Every test runs on both transports: the event loop driving psycopg2's
asynchronous mode (the default) and a thread per call (`transport="thread"`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg2
import psycopg2.extras
import pytest

import bridge
from bridge.adapters.dbapi import Pool, create_pool
from tests.adapters.dbapi_servers import sql, unique_table, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = unique_table()
    sql(admin, f"create table {name} (id integer primary key, name text not null)")
    sql(admin, f"insert into {name} values (1, 'ada'), (2, 'bob')")
    yield name
    sql(admin, f"drop table if exists {name}")


def running(admin: Any, tag: str) -> list[Any]:
    """Backends whose current statement carries `tag` (pg_stat_activity, seen from outside)."""
    return sql(
        admin,
        "select pid from pg_stat_activity where state = 'active' and query like %s "
        "and pid <> pg_backend_pid()",
        (f"%{tag}%",),
    )


async def backend_pid(pool: Pool) -> int:
    row = await pool.fetchone("select pg_backend_pid()")
    return int(row[0])


# -- the API ---------------------------------------------------------------------------


async def test_rows_come_back_as_the_cursor_factory_makes_them(
    pg: dict[str, Any], table: str
) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool:
        assert await pool.fetchone(f"select id, name from {table} where id = %s", (1,)) == (
            1,
            "ada",
        )
    factory = psycopg2.extras.RealDictCursor
    async with create_pool(psycopg2.connect, cursor_factory=factory, **pg) as pool:
        rows = await pool.fetchall(f"select id, name from {table} order by id")
        assert rows == [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]


async def test_transaction_commits_rolls_back_and_nests(pg: dict[str, Any], table: str) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool:
        async with pool.connection() as conn:
            async with conn.transaction():
                await conn.execute(f"insert into {table} values (3, 'cy')")
                async with conn.transaction():
                    await conn.execute(f"insert into {table} values (4, 'dee')")
                with pytest.raises(psycopg2.errors.UniqueViolation):
                    async with conn.transaction():  # a savepoint: the outer one survives
                        await conn.execute(f"insert into {table} values (5, 'eve')")
                        await conn.execute(f"insert into {table} values (1, 'dup')")
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(f"insert into {table} values (6, 'fay')")
                    raise RuntimeError("undo")
        ids = await pool.fetchall(f"select id from {table} order by id")
        assert [i for (i,) in ids] == [1, 2, 3, 4]


async def test_stream_uses_a_named_cursor_and_bounded_batches(pg: dict[str, Any]) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        total = 0
        async with conn.stream("select i from generate_series(1, 20000) as i", batch=500) as rows:
            async for (i,) in rows:
                total += i
                assert rows.buffered < 500
                if i == 1:  # the server holds the rest: a cursor of this session
                    cursors = await conn.fetchall("select name from pg_cursors")
                    assert any(name.startswith("bridge_stream_") for (name,) in cursors)
        assert total == 20000 * 20001 // 2
        assert await conn.fetchall("select name from pg_cursors") == []
        assert await conn.fetchone("select 1") == (1,)


async def test_a_stream_left_open_is_closed_before_the_connection_is_reused(
    pg: dict[str, Any],
) -> None:
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            rows = conn.stream("select i from generate_series(1, 1000) as i", batch=10)
            async for (i,) in rows:
                if i == 5:
                    break  # neither exhausted nor closed: the task lets go mid-stream
        await until(lambda: pool.statistics().idle == 1, "the connection back in the pool")
        async with pool.connection() as conn:
            assert await conn.fetchall("select name from pg_cursors") == []
            assert await conn.fetchone("select 1") == (1,)
        assert pool.statistics().replaced == 0


async def test_a_deadline_reaches_the_server_as_statement_timeout(pg: dict[str, Any]) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        with anyio.fail_after(30):
            (inside,) = await conn.fetchone("select current_setting('statement_timeout')")
        (outside,) = await conn.fetchone("select current_setting('statement_timeout')")
    assert inside.endswith(("ms", "s")) and inside not in ("0", "0ms")
    seconds = int(inside[:-2]) / 1000 if inside.endswith("ms") else int(inside[:-1])
    assert 0 < seconds <= 30.1
    assert outside == "0"


# -- cancellation ------------------------------------------------------------------------


async def test_cancelled_pg_sleep_stops_on_the_server_and_the_connection_returns(
    pg: dict[str, Any], admin: Any
) -> None:
    tag = f"cancel-{uuid.uuid4().hex}"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        pid = await backend_pid(pool)
        async with anyio.create_task_group() as tg:

            async def sleep() -> None:
                async with pool.connection() as conn:
                    await conn.execute(f"select pg_sleep(60), '{tag}'")

            tg.start_soon(sleep)
            await until(lambda: bool(running(admin, tag)), "pg_sleep(60) started on the server")
            tg.cancel_scope.cancel()
        await until(lambda: not running(admin, tag), "the cancelled pg_sleep left pg_stat_activity")
        await until(lambda: pool.statistics().idle == 1, "its connection back in the pool")
        stats = pool.statistics()
        assert (stats.cancelled, stats.replaced, stats.opened) == (1, 0, 1)
        assert await backend_pid(pool) == pid  # the same connection, reused after its rollback


async def test_deadline_cancels_the_statement_on_the_server(pg: dict[str, Any], admin: Any) -> None:
    tag = f"deadline-{uuid.uuid4().hex}"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):
                await pool.execute(f"select pg_sleep(60), '{tag}'")
        await until(lambda: not running(admin, tag), "the timed-out pg_sleep left pg_stat_activity")
        await until(lambda: pool.statistics().idle == 1, "its connection back in the pool")
        assert await pool.fetchone("select 1") == (1,)
        assert pool.statistics().replaced == 0


async def test_cancelled_transaction_is_rolled_back(
    pg: dict[str, Any], admin: Any, table: str
) -> None:
    tag = f"txn-{uuid.uuid4().hex}"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with anyio.create_task_group() as tg:

            async def write_then_sleep() -> None:
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute(f"insert into {table} values (3, 'cy')")
                    await conn.execute(f"select pg_sleep(60), '{tag}'")

            tg.start_soon(write_then_sleep)
            await until(
                lambda: bool(running(admin, tag)), "pg_sleep(60) started in the transaction"
            )
            tg.cancel_scope.cancel()
        await until(lambda: pool.statistics().idle == 1, "the connection back in the pool")
        assert await pool.fetchall(f"select id from {table} order by id") == [(1,), (2,)]


# -- broken connections -------------------------------------------------------------------


async def test_killed_backend_costs_one_failed_call(pg: dict[str, Any], admin: Any) -> None:
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        pid = await backend_pid(pool)
        sql(admin, "select pg_terminate_backend(%s)", (pid,))
        await until(
            lambda: not sql(admin, "select 1 from pg_stat_activity where pid = %s", (pid,)),
            "backend gone",
        )
        with pytest.raises(psycopg2.OperationalError):
            await pool.fetchone("select 1")
        assert await backend_pid(pool) != pid
        assert pool.statistics().replaced == 1


async def test_all_backends_killed_like_a_restart_costs_one_failed_call(
    pg: dict[str, Any], admin: Any
) -> None:
    async with create_pool(psycopg2.connect, min_size=3, max_size=3, **pg) as pool:
        assert pool.statistics().idle == 3
        pids = [row[0] for row in await _hold_all(pool)]
        for pid in pids:
            sql(admin, "select pg_terminate_backend(%s)", (pid,))
        await until(
            lambda: not sql(admin, "select 1 from pg_stat_activity where pid = any(%s)", (pids,)),
            "all three backends gone",
        )
        failures = 0
        for _ in range(6):
            try:
                assert await pool.fetchone("select 1") == (1,)
            except psycopg2.OperationalError:
                failures += 1
        assert failures == 1
        assert set(row[0] for row in await _hold_all(pool)).isdisjoint(pids)


async def _hold_all(pool: Pool) -> list[Any]:
    """Each connection's backend pid, all held at once so that every connection answers."""
    async with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        return [await conn.fetchone("select pg_backend_pid()") for conn in (a, b, c)]


# -- a limiter on the statements in flight -----------------------------------------------


async def through_pool(
    pg: dict[str, Any], limiter: bridge.Limiter, max_size: int, sql: str, n: int, column: int
) -> list[Any]:
    """`sql` with each of 0..n-1 from as many tasks at once; `column` of each answer, sorted."""
    results: list[Any] = []
    async with create_pool(psycopg2.connect, max_size=max_size, limiter=limiter, **pg) as pool:

        async def one(i: int) -> None:
            row = await pool.fetchone(sql, (i,))
            results.append(row[column])

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return sorted(results)


async def test_a_limiter_bounds_the_statements_in_flight(pg: dict[str, Any]) -> None:
    limiter = bridge.Limiter(2)
    results = await through_pool(pg, limiter, 6, "select pg_sleep(0.02), %s", 6, 1)
    stats = limiter.statistics()
    assert results == list(range(6))
    assert stats.peak <= 2 and stats.total >= 6 and stats.running == 0


async def test_an_adaptive_limiter_serves_a_pool(pg: dict[str, Any]) -> None:
    limiter = bridge.Limiter.adaptive(max=8, target_lateness=0.005)
    results = await through_pool(pg, limiter, 8, "select %s + 1", 40, 0)
    stats = limiter.statistics()
    assert results == list(range(1, 41))
    assert stats.total >= 40 and stats.running == 0 and stats.peak <= 8


def test_a_limiter_that_is_not_one_is_refused() -> None:
    with pytest.raises(TypeError, match=r"create_pool\(limiter=\.\.\.\) needs a bridge\.Limiter"):
        create_pool(psycopg2.connect, limiter=5)  # type: ignore[arg-type]
