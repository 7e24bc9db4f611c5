"""`AsyncCluster`: a driver `Cluster` bound to the loop that connects it.

The transport decides who reads the driver's sockets: "loop" (the loop that
first awaits `connect()`, see `_transport.py`) or "thread" (the driver's own
reactor thread, libev by default). The default is the one that measures
faster on the running backend (bench/cassandra.py): the loop, on asyncio,
uvloop and trio alike (with 120 busy tasks 1.4-1.6x the thread transport's
rate, and heartbeat p99 0.3-0.8 ms against 14-16 ms with a task per request).
"""

from __future__ import annotations

import threading
from typing import Any, Literal

import sniffio
from cassandra.cluster import (  # type: ignore[import-untyped]
    Cluster,
    DefaultConnection,
    Session,
)

import bridge

from ._kit import current_waker
from ._rows import use_cached_rows
from ._timers import weak_timers
from ._transport import Reactor, asyncio_reactor, bind_connection_class
from .session import AsyncSession

Transport = Literal["loop", "thread"]

#: The transport `AsyncCluster` uses when given none, per backend.
DEFAULT_TRANSPORT: dict[str, Transport] = {"asyncio": "loop", "trio": "loop"}


class AsyncCluster:
    """A driver `Cluster` whose connect and shutdown never block the loop.

    Takes what `cassandra.cluster.Cluster` takes, plus `transport`: "loop"
    (the loop that first awaits `connect()` reads and writes the driver's
    sockets; the cluster belongs to that loop and is shut down when it ends),
    "thread" (the driver's own reactor thread), or None for the faster one on
    the running backend (`DEFAULT_TRANSPORT`). A `connection_class=` of your
    own means "thread". The sync `Cluster` is made on first need: in a worker
    thread by `connect()` (it resolves contact points, which may mean DNS), or
    on first access to `.cluster`.

    >>> async def main():  # doctest: +SKIP
    ...     async with AsyncCluster(["10.0.0.1"]) as cluster:
    ...         session = await cluster.connect("shop")
    ...         row = (await session.execute("SELECT now() FROM system.local")).one()
    """

    def __init__(self, *args: Any, transport: Transport | None = None, **kwargs: Any) -> None:
        if transport not in (None, "loop", "thread"):
            raise ValueError(
                f'transport must be "loop" (the event loop reads the sockets), "thread" (the '
                f"driver's reactor thread) or None (the faster one here), got {transport!r}"
            )
        if transport == "loop" and kwargs.get("connection_class") is not None:
            raise ValueError(
                'transport="loop" brings its own connection class; pass either transport="loop" '
                "or connection_class=, not both"
            )
        if kwargs.get("connection_class") is not None:
            transport = "thread"
        self._args = args
        self._kwargs = kwargs
        self._transport: Transport | None = transport
        self._reactor: Reactor | None = None
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()
        self._sessions: list[AsyncSession] = []
        self._closed = False

    @property
    def transport(self) -> Transport | None:
        """ "loop" or "thread"; None until the first `connect()` picks the default."""
        return self._transport

    def _make_cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                self._cluster = Cluster(*self._args, **self._kwargs)
                use_cached_rows(self._cluster)
            return self._cluster

    def _bind(self) -> None:
        """On the loop, before connecting: pick the transport; "loop" binds it to this loop."""
        if self._transport is None:
            self._transport = DEFAULT_TRANSPORT.get(sniffio.current_async_library(), "thread")
        if self._transport != "loop":
            with self._lock:
                if self._cluster is None and self._kwargs.get("connection_class") is None:
                    # The driver's own reactor, with timers that let finished requests go.
                    connection_class = weak_timers(DefaultConnection)
                    self._kwargs = {**self._kwargs, "connection_class": connection_class}
            return
        waker = current_waker("AsyncCluster.connect()")
        reactor = self._reactor
        if reactor is not None:
            if reactor.waker is not waker:
                raise RuntimeError(
                    'an AsyncCluster with transport="loop" belongs to the event loop that first '
                    'connected it; make one AsyncCluster per loop (or use transport="thread")'
                )
            return
        if sniffio.current_async_library() == "trio":
            from ._trio_transport import trio_reactor

            reactor = trio_reactor(waker, self._loop_ended)
        else:
            reactor = asyncio_reactor(waker, self._loop_ended)
        self._reactor = reactor
        connection_class = bind_connection_class(reactor)
        with self._lock:
            if self._cluster is None:
                self._kwargs = {**self._kwargs, "connection_class": connection_class}
            else:
                self._cluster.connection_class = connection_class

    def _loop_ended(self) -> None:
        """The loop that owned the connections ended: shut the cluster down, off any loop."""
        self._closed = True
        for session in self._sessions:
            session._closed = True
        cluster = self._cluster
        if cluster is not None and not cluster.is_shutdown:
            threading.Thread(
                target=cluster.shutdown, name="bridge-cassandra-shutdown", daemon=True
            ).start()

    @property
    def cluster(self) -> Cluster:
        """The sync `Cluster` (made now if `connect()` has not made it yet)."""
        return self._cluster if self._cluster is not None else self._make_cluster()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"{len(self._sessions)} sessions"
        return f"<AsyncCluster {state} transport={self._transport}>"

    async def connect(
        self, keyspace: str | None = None, *, max_in_flight: int | None = None
    ) -> AsyncSession:
        """Open a session (in a worker thread: connecting blocks), its queries bounded in flight."""
        if self._closed:
            raise bridge.ClosedError(
                "this AsyncCluster was shut down; create a new AsyncCluster to connect again"
            )
        self._bind()
        session = await bridge.to_thread(self._connect, keyspace)
        async_session = AsyncSession(session, max_in_flight=max_in_flight)
        self._sessions.append(async_session)
        return async_session

    def _connect(self, keyspace: str | None) -> Session:
        return self._make_cluster().connect(keyspace)

    async def shutdown(self) -> None:
        """Close every session and connection (in a worker thread). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for session in self._sessions:
            session._closed = True
        try:
            if self._cluster is not None:
                await bridge.to_thread(self._cluster.shutdown)
        finally:
            if self._reactor is not None:
                self._reactor.close()

    async def __aenter__(self) -> AsyncCluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
