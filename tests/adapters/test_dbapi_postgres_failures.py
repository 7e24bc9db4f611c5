"""psycopg2 statements, transactions and streams that fail: the caller sees the real error and
the pool keeps its promises (nothing committed that should not be, the connection reusable).

Against the real PostgreSQL on 127.0.0.1, on both transports (the event loop driving
psycopg2's asynchronous mode, and a thread per call).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import anyio
import psycopg2
import psycopg2.errors
import pytest

from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import sql, unique_table, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = unique_table()
    sql(admin, f"create table {name} (id integer primary key)")
    yield name
    sql(admin, f"drop table if exists {name}")


SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # one side hung up
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def breaks_tls(pg: dict[str, Any]) -> Iterator[int]:
    """A port in front of the server that accepts TLS, then hangs up: with sslmode=prefer,
    libpq closes that socket mid-connect and tries again on a new one, without TLS."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut down: the test is over
            first = client.recv(8)
            if first == SSL_REQUEST:
                client.sendall(b"S")  # yes to TLS, then no handshake
                client.close()
                continue
            server = socket.create_connection((pg["host"], pg["port"]))
            server.sendall(first)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    thread = threading.Thread(target=serve, name="breaks-tls", daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
    listener.close()
    thread.join()


# -- connecting ------------------------------------------------------------------------------


async def test_a_connect_that_libpq_retries_on_a_new_socket_works(
    pg: dict[str, Any], breaks_tls: int
) -> None:
    """libpq closes the first socket mid-connect and opens another (often with the same
    number): the loop must wait on the socket libpq uses now, not on the first one."""
    kwargs = {**pg, "port": breaks_tls, "sslmode": "prefer", "connect_timeout": 30}
    async with create_pool(psycopg2.connect, min_size=0, max_size=2, **kwargs) as pool:
        async with pool.connection() as a, pool.connection() as b:
            assert await a.fetchone("select 1") == await b.fetchone("select 1") == (1,)


@pytest.mark.parametrize("where", ["dsn", "environment"])
async def test_connect_timeout_is_read_where_libpq_reads_it(
    pg: dict[str, Any], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a dsn string or PGCONNECT_TIMEOUT, not only a keyword argument."""
    with socket.socket() as silent:  # accepts the TCP connection, never answers the startup
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        dsn = f"host=127.0.0.1 port={silent.getsockname()[1]} dbname=test"
        if where == "dsn":
            dsn += " connect_timeout=1"
        else:
            monkeypatch.setenv("PGCONNECT_TIMEOUT", "1")
        pool = create_pool(psycopg2.connect, dsn, min_size=0, transport=pg["transport"])
        with anyio.fail_after(60):  # only a guard against the hang this test is about
            with pytest.raises(psycopg2.OperationalError):
                await pool.fetchone("select 1")
        assert await pool.close()


# -- transactions ---------------------------------------------------------------------------


async def test_a_syntax_error_first_in_a_transaction_aborts_it(
    pg: dict[str, Any], admin: Any, table: str
) -> None:
    """The rest of the block must not run outside the transaction (autocommitted)."""
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    with pytest.raises(psycopg2.errors.SyntaxError):
                        await conn.execute("selec 1")
                    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
                        await conn.execute(f"insert into {table} values (1)")
                    raise RuntimeError("undo")
            async with conn.transaction():
                with pytest.raises(psycopg2.errors.SyntaxError):
                    await conn.execute("selec 1")
            assert await conn.fetchone("select 1") == (1,)
    assert sql(admin, f"select id from {table}") == []


# -- statement timeouts ---------------------------------------------------------------------


async def test_statements_that_refuse_a_transaction_run_under_a_deadline(
    pg: dict[str, Any], table: str
) -> None:
    """The deadline's statement_timeout must not put VACUUM in a transaction block."""
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            with anyio.fail_after(30):
                await conn.execute(f"vacuum {table}")
                await conn.execute(f"create index concurrently on {table} (id)")
            await conn.execute(f"vacuum {table}")  # and the reset of the timeout after it
            assert await conn.fetchone("select current_setting('statement_timeout')") == ("0",)
            with pytest.raises(psycopg2.errors.ActiveSqlTransaction):
                async with conn.transaction():
                    with anyio.fail_after(30):
                        await conn.execute(f"vacuum {table}")  # refused as it should be


async def test_a_stream_runs_under_its_own_deadline_not_an_earlier_one(
    pg: dict[str, Any],
) -> None:
    """A deadline's statement_timeout outlives its statement until the next one resets it:
    a stream must reset it too, or a slow stream dies of an earlier call's deadline."""
    setting = "select current_setting('statement_timeout')"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool, pool.connection() as conn:
        for in_transaction in (False, True):
            with anyio.fail_after(30):
                await conn.fetchone("select 1")
            async with conn.transaction() if in_transaction else nullcontext():
                assert [row async for row in conn.stream(setting)] == [("0",)]
                with anyio.fail_after(30):
                    [(bound,)] = [row async for row in conn.stream(setting)]
                assert bound not in ("0", "0ms")
            assert await conn.fetchone(setting) == ("0",)


@pytest.mark.parametrize("nested", [False, True], ids=["transaction", "savepoint"])
async def test_a_rolled_back_reset_leaves_no_statement_timeout(
    pg: dict[str, Any], nested: bool
) -> None:
    """SET is transactional: a rollback can bring back the deadline's statement_timeout
    that a statement in the transaction reset."""
    setting = "select current_setting('statement_timeout')"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool, pool.connection() as conn:
        async with conn.transaction() if nested else nullcontext():
            with anyio.fail_after(30):
                await conn.execute("select 1")  # sets statement_timeout
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute("select 1")  # resets it, inside the transaction
                    raise RuntimeError("undo")  # and the rollback undoes the reset
            assert await conn.fetchone(setting) == ("0",)
        assert await conn.fetchone(setting) == ("0",)


# -- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "batch", "error"),
    [
        ("selec 1", 10, psycopg2.errors.SyntaxError),
        ("select 1 / (g - 3) from generate_series(1, 5) as g", 10, psycopg2.errors.DivisionByZero),
        ("select 1 / (g - 3) from generate_series(1, 5) as g", 1, psycopg2.errors.DivisionByZero),
    ],
    ids=["syntax", "first-batch", "later-batch"],
)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["alone", "in-transaction"])
async def test_a_failing_stream_raises_its_own_error(
    pg: dict[str, Any], query: str, batch: int, error: type[Exception], in_transaction: bool
) -> None:
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            with pytest.raises(error):
                async with conn.transaction() if in_transaction else nullcontext():
                    async with conn.stream(query, batch=batch) as rows:
                        async for _ in rows:
                            pass
        async with pool.connection() as conn:
            assert await conn.fetchall("select name from pg_cursors") == []
            assert await conn.fetchone("select 1") == (1,)
        assert pool.statistics().replaced == 0


async def test_a_streamed_query_may_end_with_a_comment(pg: dict[str, Any]) -> None:
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool, pool.connection() as conn:
        async with conn.stream("select 1 -- one row") as rows:
            assert [row async for row in rows] == [(1,)]
        async with conn.stream("select 2; -- one row, and a semicolon") as rows:
            assert [row async for row in rows] == [(2,)]


@pytest.mark.parametrize("in_transaction", [False, True], ids=["alone", "in-transaction"])
async def test_a_statement_failing_beside_an_open_stream_raises_its_own_error(
    pg: dict[str, Any], in_transaction: bool
) -> None:
    """The cursor dies with the failed transaction: closing the stream must not hide why."""
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            with pytest.raises(psycopg2.errors.DivisionByZero):
                async with conn.transaction() if in_transaction else nullcontext():
                    async with conn.stream("select generate_series(1, 10)", batch=2) as rows:
                        async for _ in rows:
                            await conn.execute("select 1 / 0")
            assert await conn.fetchone("select 1") == (1,)
        assert pool.statistics().replaced == 0


async def test_a_stream_given_bad_parameters_leaves_nothing_open(
    pg: dict[str, Any], admin: Any, table: str
) -> None:
    """They fail before anything is sent; the next statement must not run in a transaction
    that the stream began and the pool then rolls back."""
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            with pytest.raises(IndexError):
                async for _ in conn.stream("select %s, %s", (1,)):
                    pass
            await conn.execute(f"insert into {table} values (1)")
        assert sql(admin, f"select id from {table}") == [(1,)]


async def test_a_stream_cancelled_mid_batch_raises_the_cancellation(
    pg: dict[str, Any], admin: Any
) -> None:
    """Leaving `async with conn.stream()` must not turn the caller's cancellation (or
    timeout) into an error about the connection that the pool took back."""
    query = "select g, case when g = 3 then pg_sleep(60) end from generate_series(1, 10) as g"
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            (pid,) = await conn.fetchone("select pg_backend_pid()")

            def sleeping() -> bool:
                waits = "select 1 from pg_stat_activity where pid = %s and wait_event = 'PgSleep'"
                return bool(sql(admin, waits, (pid,)))

            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def cancel_when_sleeping() -> None:
                        await until(sleeping, "the stream's second batch sleeps on the server")
                        scope.cancel()

                    tg.start_soon(cancel_when_sleeping)
                    async with conn.stream(query, batch=2) as rows:
                        async for _ in rows:
                            pass
            assert scope.cancelled_caught
        await until(lambda: pool.statistics().idle == 1, "the connection back in the pool")
        assert await pool.fetchone("select 1") == (1,)


# -- lost connections ---------------------------------------------------------------------


async def test_a_transaction_on_a_reopened_connection_is_still_one(
    pg: dict[str, Any], admin: Any, table: str
) -> None:
    """After a restart (every backend gone), the first statement of a transaction finds
    its connection dead and reopens it: the rest must still run in a transaction."""
    async with create_pool(psycopg2.connect, min_size=2, max_size=2, **pg) as pool:
        async with pool.connection() as a, pool.connection() as b:
            pids = [(await conn.fetchone("select pg_backend_pid()"))[0] for conn in (a, b)]
        sql(admin, "select pg_terminate_backend(pid) from unnest(%s) as pid", (pids,))
        await until(
            lambda: not sql(admin, "select 1 from pg_stat_activity where pid = any(%s)", (pids,)),
            "both backends gone",
        )
        with pytest.raises(psycopg2.OperationalError):
            await pool.fetchone("select 1")  # one connection finds out: the other is suspect
        async with pool.connection() as conn:
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(f"insert into {table} values (1)")  # reopens it
                    await conn.execute(f"insert into {table} values (2)")
                    raise RuntimeError("undo")
            assert (await conn.fetchone("select pg_backend_pid()"))[0] not in pids
    assert sql(admin, f"select id from {table}") == []


async def test_a_connection_lost_mid_statement_leaves_its_socket_number_free(
    pg: dict[str, Any], admin: Any
) -> None:
    """libpq closes the socket of a connection whose server hangs up while the loop waits
    on it, and the next socket opened (a new connection's) often gets the same number: the
    lost connection's registration must go at once, not when it leaves the task's hands."""
    async with create_pool(psycopg2.connect, min_size=0, max_size=2, **pg) as pool:
        lost = pool.connection()
        conn = await lost.__aenter__()
        (pid,) = await conn.fetchone("select pg_backend_pid()")

        def sleeping() -> bool:
            waits = "select 1 from pg_stat_activity where pid = %s and wait_event = 'PgSleep'"
            return bool(sql(admin, waits, (pid,)))

        async def terminate_when_sleeping() -> None:
            await until(sleeping, "pg_sleep running")
            sql(admin, "select pg_terminate_backend(%s)", (pid,))

        async with anyio.create_task_group() as tg:
            tg.start_soon(terminate_when_sleeping)
            with pytest.raises(psycopg2.OperationalError):
                await conn.execute("select pg_sleep(60)")
        with anyio.fail_after(60):  # only a guard against the hang this test is about
            async with pool.connection() as other:  # a new connection, while the lost one is held
                assert await other.fetchone("select 1") == (1,)
                await lost.__aexit__(None, None, None)
                assert await other.fetchone("select 2") == (2,)
