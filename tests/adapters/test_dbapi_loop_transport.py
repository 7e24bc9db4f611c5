"""psycopg2 driven by the event loop (`transport="loop"`): what asynchronous mode changes.

Against the real PostgreSQL on 127.0.0.1; the behaviour both transports share
is tested in test_dbapi_postgres.py, on both.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg2
import psycopg2.extras
import pytest

import bridge
from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import postgres, unique_table

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pg() -> dict[str, Any]:
    return postgres()


@pytest.fixture
def table(pg: dict[str, Any]) -> Iterator[str]:
    name = unique_table()
    admin = psycopg2.connect(**pg)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"create table {name} (id integer primary key, name text)")
    yield name
    with admin.cursor() as cursor:
        cursor.execute(f"drop table if exists {name}")
    admin.close()


def dbapi_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("bridge-dbapi")]


# -- which transport ------------------------------------------------------------------------


async def test_psycopg2_statements_run_on_the_loop_without_threads(pg: dict[str, Any]) -> None:
    before = dbapi_threads()
    async with create_pool(psycopg2.connect, max_size=4, **pg) as pool:
        assert pool.transport == "loop"

        async def query(n: int) -> None:
            async with pool.connection() as conn, conn.transaction():
                assert await conn.fetchone("select %s::int", (n,)) == (n,)

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(query, n)
        # No worker thread, no thread per connection (earlier pools' threads may retire meanwhile).
        assert set(dbapi_threads()) <= set(before)


async def test_other_connect_functions_keep_the_thread_transport(pg: dict[str, Any]) -> None:
    def connect() -> Any:
        return psycopg2.connect(**pg)

    async with create_pool(connect) as pool:
        assert pool.transport == "thread"  # the app's own connect may configure the connection
    with pytest.raises(ValueError, match='transport="thread"'):
        create_pool(sqlite3.connect, ":memory:", transport="loop")
    with pytest.raises(ValueError, match="transport"):
        create_pool(psycopg2.connect, transport="threads")  # type: ignore[arg-type]


async def test_run_asks_for_the_thread_transport(pg: dict[str, Any]) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        with pytest.raises(RuntimeError, match='transport="thread"'):
            await conn.run(lambda raw: raw.server_version)
    async with create_pool(psycopg2.connect, transport="thread", **pg) as pool:
        async with pool.connection() as conn:
            assert await conn.run(lambda raw: raw.server_version) > 0


# -- what asynchronous mode lacks, done with SQL --------------------------------------------


async def test_executemany_sends_each_parameter_set(pg: dict[str, Any], table: str) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        rows = [(1, "ada"), (2, "bob"), (3, "cy")]
        assert await conn.executemany(f"insert into {table} values (%s, %s)", iter(rows)) == 3
        with pytest.raises(psycopg2.errors.UniqueViolation):
            async with conn.transaction():
                await conn.executemany(f"insert into {table} values (%s, %s)", [(4, "d"), (1, "x")])
        assert await conn.fetchall(f"select id, name from {table} order by id") == rows


async def test_stream_inside_a_transaction_stays_in_it(pg: dict[str, Any], table: str) -> None:
    factory = psycopg2.extras.RealDictCursor
    async with create_pool(psycopg2.connect, cursor_factory=factory, **pg) as pool:
        async with pool.connection() as conn:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(f"insert into {table} values (1, 'ada')")
                    seen = [row async for row in conn.stream(f"select * from {table}", batch=1)]
                    assert seen == [{"id": 1, "name": "ada"}]  # the transaction's own row
                    assert await conn.fetchall("select name from pg_cursors") == []
                    raise RuntimeError("undo")
            assert await conn.fetchall(f"select * from {table}") == []  # rolled back, stream too


async def test_a_statement_larger_than_the_socket_buffer_is_written_as_it_drains(
    pg: dict[str, Any],
) -> None:
    big = "x" * (8 << 20)  # psycopg2 asks to wait for the socket to be writable (POLL_WRITE)
    async with create_pool(psycopg2.connect, **pg) as pool:
        assert await pool.fetchone("select length(%s)", (big,)) == (len(big),)
        assert await pool.fetchone("select 1") == (1,)


async def test_a_transaction_that_writes_nothing_sends_nothing(pg: dict[str, Any]) -> None:
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        async with conn.transaction():
            pass
        (status,) = await conn.fetchone("select 'idle'")
        assert status == "idle"
        assert conn.raw.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


async def test_a_rolled_back_deadline_leaves_no_statement_timeout(pg: dict[str, Any]) -> None:
    """SET is transactional: a rollback can bring back a statement_timeout the pool reset."""
    async with create_pool(psycopg2.connect, **pg) as pool, pool.connection() as conn:
        with anyio.fail_after(30):
            await conn.execute("select 1")  # sets statement_timeout, outside a transaction
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute("select 1")  # resets it, inside the transaction
                raise RuntimeError("undo")  # and the rollback undoes the reset
        assert await conn.fetchone("select current_setting('statement_timeout')") == ("0",)


# -- connecting -------------------------------------------------------------------------------


async def test_connect_timeout_applies_to_the_asynchronous_connect() -> None:
    """libpq honours connect_timeout only when it blocks; the pool applies it on the loop."""
    with socket.socket() as silent:  # accepts the TCP connection, never answers the startup
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        pool = create_pool(psycopg2.connect, host="127.0.0.1", port=port, connect_timeout=1)
        with pytest.raises(psycopg2.OperationalError, match="connect_timeout"):
            await pool.fetchone("select 1")
        stats = pool.statistics()
        assert (stats.size, stats.in_use) == (0, 0)
        await pool.close()


async def test_a_connect_given_up_on_frees_its_slot() -> None:
    with socket.socket() as silent:  # the server never answers: the connect waits on the loop
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        pool = create_pool(psycopg2.connect, host="127.0.0.1", port=port, min_size=0)
        with anyio.move_on_after(0.2) as scope:
            await pool.fetchone("select 1")
        assert scope.cancelled_caught
        stats = pool.statistics()
        assert (stats.size, stats.in_use, stats.opened) == (0, 0, 0)
        assert await pool.close()


async def test_a_message_nobody_waits_for_leaves_the_connection_working(
    pg: dict[str, Any],
) -> None:
    """A NOTIFY reaches a connection idle in the pool: its socket is readable with no
    statement waiting (the loop stops watching it), and the next statement reads both."""
    channel = f"bridge_{unique_table()}"
    admin = psycopg2.connect(**pg)
    admin.autocommit = True
    try:
        async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
            async with pool.connection() as conn:
                await conn.execute(f"listen {channel}")
                raw = conn.raw
            with admin.cursor() as cursor:
                cursor.execute(f"notify {channel}, 'hello'")
            async with pool.connection() as conn:
                assert await conn.fetchone("select 1") == (1,)
            assert [n.payload for n in raw.notifies] == ["hello"]
    finally:
        admin.close()


def test_a_pool_serves_one_loop_after_another(pg: dict[str, Any]) -> None:
    """A socket watched by a loop that has ended is watched by the next one."""
    pool = create_pool(psycopg2.connect, min_size=1, max_size=1, **pg)

    async def pid() -> int:
        await pool.open()
        return int((await pool.fetchone("select pg_backend_pid()"))[0])

    first = anyio.run(pid)
    assert anyio.run(pid, backend_options={"use_uvloop": True}) == first  # same connection
    assert anyio.run(pid, backend="trio") == first
    assert anyio.run(pid) == first
    anyio.run(pool.close)


def test_two_loops_in_two_threads_share_one_connection(pg: dict[str, Any]) -> None:
    """The connection moves between two running loops; each removes its own registration."""
    pool = create_pool(psycopg2.connect, min_size=0, max_size=1, **pg)
    both_done = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(uvloop: bool) -> None:
        async def main() -> None:
            for n in range(30):
                assert await pool.fetchone("select %s::int", (n,)) == (n,)
            await bridge.to_thread(both_done.wait, 60)  # both loops run until both are done

        try:
            anyio.run(main, backend_options={"use_uvloop": uvloop})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(uvloop,)) for uvloop in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert anyio.run(pool.fetchone, "select 7") == (7,)
    assert anyio.run(pool.close)
