"""bridge.adapters.dbapi on sqlite3 files (real driver, real files): the pool's own behaviour."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import bridge
from bridge.adapters.dbapi import Connection, Pool, create_pool
from tests.support import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "app.db")
    raw = sqlite3.connect(path)
    raw.execute("create table users (id integer primary key, name text not null)")
    raw.executemany("insert into users (name) values (?)", [("ada",), ("bob",)])
    raw.commit()
    raw.close()
    return path


def connect_rows(path: str) -> sqlite3.Connection:
    """The user's own connect function, as a Flask app has one: rows as sqlite3.Row."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return conn


async def names(pool: Pool) -> list[str]:
    return [row[0] for row in await pool.fetchall("select name from users order by id")]


# -- the API -------------------------------------------------------------------------


async def test_rows_come_back_as_the_driver_makes_them(db: str) -> None:
    async with create_pool(connect_rows, db) as pool, pool.connection() as conn:
        row = await conn.fetchone("select id, name from users where name = ?", ("ada",))
        assert isinstance(row, sqlite3.Row)
        assert (row["name"], dict(row)) == ("ada", {"id": 1, "name": "ada"})
        rows = await conn.fetchall("select name from users order by id")
        assert [r["name"] for r in rows] == ["ada", "bob"]
        assert [dict(r) async for r in conn.stream("select name from users")] == [
            {"name": "ada"},
            {"name": "bob"},
        ]
        assert await conn.fetchone("select name from users where id = 99") is None


async def test_execute_and_executemany_return_rowcounts(db: str) -> None:
    async with create_pool(sqlite3.connect, db) as pool, pool.connection() as conn:
        assert await conn.executemany("insert into users (name) values (?)", [("c",), ("d",)]) == 2
        assert await conn.execute("update users set name = upper(name)") == 4
        assert await conn.run(lambda raw: raw.total_changes) == 6  # the driver's API as it is


async def test_sqlite_connections_stay_on_their_own_threads(db: str) -> None:
    async with create_pool(sqlite3.connect, db, max_size=2) as pool:
        seen: dict[int, set[int]] = {}

        async def use() -> None:
            async with pool.connection() as conn:
                for _ in range(5):
                    ident = await conn.run(lambda raw: (id(raw), threading.get_ident()))
                    seen.setdefault(ident[0], set()).add(ident[1])
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(use)
        assert len(seen) == 2  # two connections, each always on one thread, never the loop's
        threads = [next(iter(t)) for t in seen.values() if len(t) == 1]
        assert len(threads) == 2 and threading.get_ident() not in threads


async def test_each_statement_outside_a_transaction_commits_at_once(db: str) -> None:
    async with create_pool(sqlite3.connect, db, min_size=2, max_size=2) as pool:
        async with pool.connection() as writer, pool.connection() as reader:
            await writer.execute("insert into users (name) values ('cy')")
            assert await reader.fetchone("select count(*) from users") == (3,)


async def test_transaction_commits_rolls_back_and_nests_as_savepoints(db: str) -> None:
    async with create_pool(sqlite3.connect, db) as pool, pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("insert into users (name) values ('cy')")
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await conn.execute("insert into users (name) values ('dee')")
                1 / 0  # noqa: B018
        async with conn.transaction():
            await conn.execute("insert into users (name) values ('eve')")
            with pytest.raises(KeyError):
                async with conn.transaction():  # a savepoint: only its work is undone
                    await conn.execute("insert into users (name) values ('fay')")
                    raise KeyError("inner")
            async with conn.transaction():
                await conn.execute("insert into users (name) values ('gus')")
        assert conn.depth == 0
    async with create_pool(sqlite3.connect, db) as pool:
        assert await names(pool) == ["ada", "bob", "cy", "eve", "gus"]


async def test_stream_reads_a_batch_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "big.db")
    async with create_pool(sqlite3.connect, path) as pool, pool.connection() as conn:
        await conn.execute("create table n (i integer)")
        await conn.executemany("insert into n values (?)", [(i,) for i in range(1000)])
        seen = []
        async with conn.stream("select i from n order by i", batch=64) as rows:
            async for (i,) in rows:
                assert rows.buffered < 64
                seen.append(i)
        assert seen == list(range(1000))


async def test_stream_stopped_early_leaves_the_connection_usable(db: str) -> None:
    async with create_pool(sqlite3.connect, db, max_size=1) as pool:
        async with pool.connection() as conn:
            async with conn.stream("select name from users order by id", batch=1) as rows:
                async for (name,) in rows:
                    assert name == "ada"
                    break
            assert conn.stream_open is None
            assert await conn.fetchone("select count(*) from users") == (2,)
        async with pool.connection() as conn:
            stream = conn.stream("select name from users", batch=1)
            assert await stream.__anext__() == ("ada",)
            # Not closed by the task: the pool closes it before the next task gets the connection.
        assert await pool.fetchone("select count(*) from users") == (2,)
        assert pool.statistics().replaced == 0


# -- the pool ----------------------------------------------------------------------------


async def test_never_more_than_max_size_connections(db: str) -> None:
    async with create_pool(sqlite3.connect, db, min_size=0, max_size=3) as pool:
        peak = 0

        async def use() -> None:
            nonlocal peak
            async with pool.connection() as conn:
                peak = max(peak, pool.statistics().in_use)
                await conn.fetchone("select 1")
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(use)
        stats = pool.statistics()
        assert (peak, stats.size, stats.opened, stats.in_use) == (3, 3, 3, 0)


async def test_a_cancelled_waiter_loses_no_connection(db: str) -> None:
    async with create_pool(sqlite3.connect, db, max_size=1) as pool:
        async with pool.connection():
            with anyio.move_on_after(0.01) as scope:
                async with pool.connection():
                    pytest.fail("got a second connection from a pool of one")
            assert scope.cancelled_caught
        assert pool.statistics().idle == 1
        assert await pool.fetchone("select 1") == (1,)


async def test_cancelled_sqlite_query_is_interrupted_and_its_connection_reused(db: str) -> None:
    started = threading.Event()

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(db)
        conn.create_function("started", 0, lambda: started.set() or 1)
        return conn

    endless = (
        "with recursive c(x) as (select started() union all select x + 1 from c) "
        "select count(*) from c"
    )
    async with create_pool(connect, max_size=1) as pool:
        async with anyio.create_task_group() as tg:

            async def query() -> None:
                async with pool.connection() as conn:
                    await conn.fetchone(endless)

            tg.start_soon(query)
            await eventually(started.is_set)
            tg.cancel_scope.cancel()
        await eventually(lambda: pool.statistics().idle == 1)
        stats = pool.statistics()
        assert (stats.cancelled, stats.replaced, stats.opened) == (1, 0, 1)
        assert await pool.fetchone("select count(*) from users") == (2,)


async def test_cancelled_transaction_is_rolled_back_before_reuse(db: str) -> None:
    async with create_pool(sqlite3.connect, db, max_size=1) as pool:
        with anyio.move_on_after(0.05):
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("insert into users (name) values ('lost')")
                await anyio.sleep_forever()
        assert await names(pool) == ["ada", "bob"]


async def test_close_waits_for_connections_in_use(db: str) -> None:
    pool = await create_pool(sqlite3.connect, db, max_size=2)
    holding, release = anyio.Event(), anyio.Event()
    closed: list[bool] = []

    async def hold() -> None:
        async with pool.connection() as conn:
            holding.set()
            await release.wait()
            await conn.execute("insert into users (name) values ('last')")

    async def close() -> None:
        closed.append(await pool.close())

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await holding.wait()
        tg.start_soon(close)
        await eventually(lambda: pool.closed)
        with pytest.raises(bridge.ClosedError, match="closed"):
            async with pool.connection():
                pass
        assert closed == []
        release.set()
    assert closed == [True]
    assert pool.statistics().size == 0
    async with create_pool(sqlite3.connect, db) as other:
        assert await names(other) == ["ada", "bob", "last"]


async def test_close_gives_up_waiting_after_its_timeout(db: str) -> None:
    pool = await create_pool(sqlite3.connect, db)
    async with pool.connection() as conn:
        assert await pool.close(timeout=0.01) is False
        assert await conn.fetchone("select 1") == (1,)  # its holder may finish its work
    await eventually(lambda: pool.statistics().size == 0)


# -- misuse ---------------------------------------------------------------------------


async def test_misuse_is_refused_with_what_to_do(db: str) -> None:
    async def connect_async() -> None:
        pass

    with pytest.raises(TypeError, match="async function"):
        create_pool(connect_async)
    with pytest.raises(TypeError, match="connect function"):
        create_pool("sqlite3.connect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        create_pool(sqlite3.connect, db, max_size=0)
    with pytest.raises(ValueError, match="min_size"):
        create_pool(sqlite3.connect, db, min_size=5, max_size=2)
    async with create_pool(sqlite3.connect, db) as pool:
        async with pool.connection() as conn:
            with pytest.raises(TypeError, match="SQL text"):
                await conn.execute(b"select 1")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="batch"):
                conn.stream("select 1", batch=0)
        kept: Connection = conn
        with pytest.raises(bridge.ClosedError, match="went back to its pool"):
            await kept.fetchone("select 1")


async def test_one_connection_serves_one_task_at_a_time(db: str) -> None:
    started = threading.Event()
    go = threading.Event()

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(db)
        conn.create_function("wait_for_go", 0, lambda: (started.set(), go.wait(30))[1])
        return conn

    async with create_pool(connect) as pool, pool.connection() as conn:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.fetchone, "select wait_for_go()")
            await eventually(started.is_set)
            with pytest.raises(RuntimeError, match="one task at a time"):
                await conn.fetchone("select 1")
            go.set()


async def test_driver_errors_are_the_drivers_own(db: str) -> None:
    async with create_pool(sqlite3.connect, db) as pool:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await pool.fetchall("select * from nowhere")
        with pytest.raises(sqlite3.IntegrityError):
            await pool.execute("insert into users (id, name) values (1, 'dup')")
        assert pool.statistics().replaced == 0
        assert await pool.fetchone("select count(*) from users") == (2,)


def test_pool_works_from_sync_code_through_the_portal(db: str) -> None:
    async def main() -> Any:
        async with create_pool(sqlite3.connect, db) as pool:
            return await pool.fetchall("select name from users order by id")

    assert bridge.run(main) == [("ada",), ("bob",)]
