"""`cassandra-driver`, awaitable: `AsyncCluster` and `AsyncSession`, with no thread per query.

By default the application's event loop is the driver's reactor (asyncio and
uvloop): the loop reads and writes the driver's sockets, decodes a bounded
slice of responses per turn and completes each awaiting task where its
response was decoded (`_transport.py`). `AsyncCluster(transport="thread")`
keeps the driver's own reactor thread; results then come back through the
loop's one batching waker. Either way, queries go out with
`Session.execute_async` from the loop thread, bounded in flight
(`session.py`), and only the calls that really block -- building the
`Cluster`, `connect`, `prepare`, `set_keyspace`, `shutdown` -- run in a
worker thread.

Results: `execute` returns an `AsyncResultSet`, one page of rows plus the
means to fetch the rest (`results.py`); `stream()` and `pages()` read ahead a
bounded number of pages (`streams.py`).
"""

from .cluster import AsyncCluster, Transport
from .results import AsyncResultSet, MorePagesError
from .session import AsyncSession, SessionStatistics, default_max_in_flight
from .streams import PageStream, RowStream

__all__ = [
    "AsyncCluster",
    "AsyncResultSet",
    "AsyncSession",
    "MorePagesError",
    "PageStream",
    "RowStream",
    "SessionStatistics",
    "Transport",
    "default_max_in_flight",
]
