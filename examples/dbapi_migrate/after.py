"""After: the same service, async, on any event loop, through `bridge.adapters.dbapi`.

What changed: the connection became a pool made from the same `connect`
function; each method is `async` and awaits the pool; `with conn:` became
`async with conn.transaction()`; the report streams rows instead of holding a
cursor. What did not: the SQL, the driver, `sqlite3.Row` rows, sqlite3's own
exceptions. Each sqlite3 connection stays on a thread of its own, and many
tasks can use the service at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bridge.adapters.dbapi import Pool, create_pool
from examples.dbapi_migrate.before import ADD, PUT, SCHEMA, TAKE, connect


class Stock:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, path: str, *, connections: int = 4) -> Stock:
        pool = await create_pool(connect, path, max_size=connections)
        await pool.execute(SCHEMA)
        return cls(pool)

    async def add(self, sku: str, name: str, qty: int) -> None:
        await self.pool.execute(ADD, (sku, name, qty))  # commits at once

    async def get(self, sku: str) -> dict[str, Any] | None:
        row = await self.pool.fetchone("select * from stock where sku = ?", (sku,))
        return dict(row) if row else None

    async def move(self, source: str, target: str, qty: int) -> None:
        """Both updates or neither, as before; cancelling the caller rolls back too."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(TAKE, (qty, source))
            await conn.execute(PUT, (qty, target))

    async def report(self) -> AsyncIterator[dict[str, Any]]:
        async with self.pool.connection() as conn:
            async for row in conn.stream("select * from stock order by sku"):
                yield dict(row)

    async def close(self) -> None:
        await self.pool.close()
