"""A real PostgreSQL restart under a psycopg2 pool: only the call in flight fails.

The server is the test's own (`private_postgres`: initdb in a temp dir, a free
port), stopped and started again by `pg_ctl restart`, never the shared one.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import psycopg2
import pytest

import bridge
from bridge.adapters.dbapi import Pool, create_pool
from tests.adapters.dbapi_servers import PrivatePostgres, private_postgres, until

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture(params=["loop", "thread"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sleeping(server: PrivatePostgres, tag: str) -> bool:
    """Whether a statement carrying `tag` runs (a fresh connection: a restart kills old ones)."""
    conn = psycopg2.connect(**server.connect_kwargs)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "select count(*) from pg_stat_activity where state = 'active' and query like %s "
                "and pid <> pg_backend_pid()",
                (f"%{tag}%",),
            )
            return bool(cursor.fetchone()[0])
    finally:
        conn.close()


async def hold_all(pool: Pool) -> set[int]:
    """The backend pid of each of the pool's three connections, all held at once."""
    async with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        return {(await conn.fetchone("select pg_backend_pid()"))[0] for conn in (a, b, c)}


async def test_restart_fails_only_the_call_in_flight(
    server: PrivatePostgres, transport: str
) -> None:
    async with create_pool(
        psycopg2.connect, min_size=3, max_size=3, transport=transport, **server.connect_kwargs
    ) as pool:
        before = await hold_all(pool)
        failed: list[BaseException] = []

        async def in_flight() -> None:
            try:
                await pool.execute("select pg_sleep(60), 'restart-in-flight'")
            except psycopg2.OperationalError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await until(lambda: sleeping(server, "restart-in-flight"), "pg_sleep(60) running")
            await bridge.to_thread(server.restart)
        assert len(failed) == 1  # the statement the restart interrupted

        # Every later call succeeds: the two idle connections were found dead
        # (pinged, since one of their pool's broke) and reopened, the broken one replaced.
        async def query(n: int) -> None:
            assert await pool.fetchone("select %s::int", (n,)) == (n,)

        async with anyio.create_task_group() as tg:
            for n in range(9):
                tg.start_soon(query, n)
        after = await hold_all(pool)
        assert after.isdisjoint(before)
        assert pool.statistics().replaced == 1


async def test_restart_while_idle_costs_one_failed_call(
    server: PrivatePostgres, transport: str
) -> None:
    async with create_pool(
        psycopg2.connect, min_size=3, max_size=3, transport=transport, **server.connect_kwargs
    ) as pool:
        before = await hold_all(pool)
        await bridge.to_thread(server.restart)
        failures = 0
        for n in range(6):
            try:
                assert await pool.fetchone("select %s::int", (n,)) == (n,)
            except psycopg2.OperationalError:
                failures += 1  # a connection cannot know its server left until it is used
        assert failures == 1
        assert (await hold_all(pool)).isdisjoint(before)


async def test_calls_during_the_restart_fail_cleanly_and_the_pool_recovers(
    server: PrivatePostgres, transport: str
) -> None:
    """While the server is down a call fails with the driver's error, never hangs; once it
    is back, the pool works with no intervention."""
    async with create_pool(
        psycopg2.connect, min_size=0, max_size=2, transport=transport, **server.connect_kwargs
    ) as pool:
        await pool.fetchone("select 1")
        await bridge.to_thread(server.stop)
        try:
            for _ in range(3):
                with pytest.raises(psycopg2.OperationalError):
                    await pool.fetchone("select 1")
        finally:
            await bridge.to_thread(server.start)
        for n in range(4):
            assert await pool.fetchone("select %s::int", (n,)) == (n,)
        stats = pool.statistics()
        assert stats.size <= 2 and stats.in_use == 0
