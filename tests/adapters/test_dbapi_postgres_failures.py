"""psycopg2 statements, transactions and streams that fail: the caller sees the real error and
the pool keeps its promises (nothing committed that should not be, the connection reusable).

Against the real PostgreSQL on 127.0.0.1, on both transports (the event loop driving
psycopg2's asynchronous mode, and a thread per call).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import psycopg2
import psycopg2.errors
import pytest

from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import postgres, unique_table

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["loop", "thread"])
def pg(request: pytest.FixtureRequest) -> dict[str, Any]:
    """create_pool keyword arguments: the server's, and the transport under test."""
    return {**postgres(), "transport": request.param}


@pytest.fixture(scope="module")
def admin() -> Iterator[Any]:
    conn = psycopg2.connect(**postgres())
    conn.autocommit = True
    yield conn
    conn.close()


def sql(admin: Any, query: str, params: Any = None) -> list[Any]:
    with admin.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    name = unique_table()
    sql(admin, f"create table {name} (id integer primary key)")
    yield name
    sql(admin, f"drop table if exists {name}")


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
