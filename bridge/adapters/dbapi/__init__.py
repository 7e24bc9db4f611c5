"""DB-API drivers, awaitable: a connection pool over any PEP 249 module.

    pool = await create_pool(psycopg2.connect, "dbname=test", max_size=20)
    async with pool.connection() as conn:
        async with conn.transaction():
            await conn.execute("INSERT INTO t VALUES (%s)", (1,))
        row = await conn.fetchone("SELECT * FROM t WHERE id = %s", (1,))

What it adds to the driver, which stays the user's (its connect call, its
parameter style, its row types, its exceptions):

* psycopg2 connections are driven by the event loop itself (asynchronous
  mode: no thread per statement); for other drivers, or with
  `transport="thread"`, each call is one trip to a thread, never on the loop,
  and threads follow the driver (sqlite3 connections keep their own
  `DedicatedThread`);
* outside `transaction()` statements commit at once; `transaction()` nests
  as savepoints;
* `stream()` reads big results through the driver's server-side cursor;
* a cancelled call (a timeout, a client gone) stops the statement on the
  server, and its connection is reused only after a rollback proves it
  healthy; deadlines also reach the server as a statement timeout;
* broken connections (a killed backend, a restarted server) are replaced.
"""

from bridge.adapters.dbapi._connection import Connection, Transaction
from bridge.adapters.dbapi._pool import (
    DEFAULT_CLOSE_TIMEOUT,
    ConnectionLease,
    Pool,
    PoolStatistics,
    create_pool,
)
from bridge.adapters.dbapi._stream import Stream

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "Connection",
    "ConnectionLease",
    "Pool",
    "PoolStatistics",
    "Stream",
    "Transaction",
    "create_pool",
]
