"""psycopg2 driven by the event loop: what a caller or libpq does behind the pool's back.

Against the real PostgreSQL on 127.0.0.1 (`transport="loop"` only: the thread transport's
connections are blocking ones, where none of this arises).
"""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

from bridge.adapters.dbapi import create_pool
from tests.adapters.dbapi_servers import postgres

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pg() -> dict[str, Any]:
    return postgres()


async def test_a_query_left_running_on_raw_does_not_reach_the_next_user(
    pg: dict[str, Any],
) -> None:
    """conn.raw is asynchronous: its cursor's execute() returns at once, the query still runs.
    The pool stops it and reads its answer before anyone else gets the connection."""
    async with create_pool(psycopg2.connect, max_size=1, **pg) as pool:
        async with pool.connection() as conn:
            conn.raw.cursor().execute("select pg_sleep(60)")
            assert conn.raw.isexecuting()
        assert await pool.fetchone("select 1") == (1,)
        stats = pool.statistics()
        assert (stats.cancelled, stats.replaced) == (1, 0)
