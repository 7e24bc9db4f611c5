"""`AsyncSession`: a driver `Session` whose queries are awaited, bounded in flight.

Where `execute_async` itself can block, and the bound that prevents it: each
host has one pooled connection (protocol v3+; v1/v2 pools have a few) with a
fixed number of request ids (`Connection.max_in_flight`, at most 32767). When
the connection the query plan picks has none free, `HostConnection.
borrow_connection` waits up to 2 s on a condition -- on the calling thread,
which here is the loop. So every request the adapter sends first takes a token
from the session's `Limiter`, sized to half the request ids of *one*
connection: the query plan can send every request to the same host
(token-aware routing to a hot partition, or a single host left up), and the
other half is room for orphaned streams (requests the driver timed out whose
ids stay taken until the server answers), heartbeats, and sync code sharing
the session.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cassandra import OperationTimedOut  # type: ignore[import-untyped]
from cassandra.cluster import (  # type: ignore[import-untyped]
    _NOT_SET,
    EXEC_PROFILE_DEFAULT,
    Session,
)
from cassandra.concurrent import ExecutionResult  # type: ignore[import-untyped]
from cassandra.policies import HostDistance  # type: ignore[import-untyped]
from cassandra.query import (  # type: ignore[import-untyped]
    PreparedStatement,
    SimpleStatement,
    Statement,
)

import bridge
from bridge import metrics

from ._kit import current_waker, limiter_release, time_left, yield_to_passed_deadline
from ._requests import _Concurrent, _Request
from .results import AsyncResultSet
from .streams import PageStream, RowStream

# The driver's timer goes off this long after the task's deadline, so that the
# cancel scope ends the wait (the caller gets TimeoutError, as anyio and trio
# promise) and the driver then frees the stream id and the slot.
_DEADLINE_SLACK: Final = 0.02
_V2_MAX_REQUEST_ID: Final = 127  # protocol v1/v2 stream ids are one signed byte
_V3_MAX_REQUEST_ID: Final = 2**15 - 1


def default_max_in_flight(cluster: Any) -> int:
    """The in-flight bound for a session of `cluster`: half of one host's request ids.

    Read after `connect()`, when the protocol version is known. See the module
    docstring for why one host and why half.
    """
    max_in_flight = int(cluster.connection_class.max_in_flight)
    version = cluster.protocol_version or 4
    if version >= 3:
        ids = min(max_in_flight - 1, _V3_MAX_REQUEST_ID)
        connections = 1  # HostConnection: one connection per host
    else:
        ids = min(max_in_flight, _V2_MAX_REQUEST_ID)
        connections = cluster.get_core_connections_per_host(HostDistance.LOCAL)
    return max(1, connections * ids // 2)


@dataclass(frozen=True)
class SessionStatistics:
    """What an `AsyncSession` has in flight now, and has done since it was made."""

    max_in_flight: int  #: the bound (the limiter's tokens)
    in_flight: int  #: tokens held: requests sent and not yet called back, or about to be sent
    waiting: int  #: requests queued for a token
    peak: int  #: the most tokens ever held at once
    sent: int  #: requests handed to the driver (`execute_async`)
    finished: int  #: requests the driver has called back for (result or error)


class AsyncSession:
    """A driver `Session` whose queries are awaited, never run in a thread, never block the loop.

    Made by `await AsyncCluster.connect()`, or around a session you already
    have: `AsyncSession(session)` (the sync one stays usable as `.session`).
    `max_in_flight` bounds requests sent and not yet answered; the default is
    `default_max_in_flight(session.cluster)`.
    """

    def __init__(self, session: Session, *, max_in_flight: int | None = None) -> None:
        if not isinstance(session, Session):
            raise TypeError(
                f"AsyncSession() needs a cassandra.cluster.Session, got {session!r}; "
                "use `await AsyncCluster(...).connect()` to make one"
            )
        if max_in_flight is None:
            max_in_flight = default_max_in_flight(session.cluster)
        self.session = session
        self._execute_async = session.execute_async
        self._limiter = bridge.Limiter(max_in_flight, name="cassandra in-flight")
        self._closed = False
        # Counted under a lock: callbacks run on the reactor thread, on driver
        # executor threads (retries, re-prepares) and, for early errors, here.
        self._counts_lock = threading.Lock()
        self._sent = 0
        self._finished = 0
        metrics.track_cassandra_session(self)

    def _finish(self) -> None:
        """The driver called back for a request: count it, then free its slot."""
        with self._counts_lock:
            self._finished += 1
        limiter_release(self._limiter)

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"keyspace={self.session.keyspace!r}"
        return f"<AsyncSession {state} {self._limiter!r}>"

    @property
    def keyspace(self) -> str | None:
        return self.session.keyspace  # type: ignore[no-any-return]

    @property
    def limiter(self) -> bridge.Limiter:
        """The in-flight bound; pass a smaller `max_in_flight=` to be gentler with the cluster."""
        return self._limiter

    def statistics(self) -> SessionStatistics:
        s = self._limiter.statistics()
        return SessionStatistics(
            max_in_flight=s.tokens,
            in_flight=s.running,
            waiting=s.waiting,
            peak=s.peak,
            sent=self._sent,
            finished=self._finished,
        )

    @property
    def is_shutdown(self) -> bool:
        return self._closed or bool(self.session.is_shutdown)

    def _check_open(self) -> None:
        if self._closed or self.session.is_shutdown:
            self._closed = True
            raise bridge.ClosedError(
                "this Cassandra session was shut down (AsyncSession.shutdown() or "
                "AsyncCluster.shutdown()); connect again with `await cluster.connect()` "
                "(or a new AsyncCluster) to run more queries"
            )

    def _timeout(self, timeout: Any, execution_profile: Any) -> Any:
        """The driver timeout for a request: the caller's own, cut to the task's deadline.

        A request given up on by a cancel scope must not hold its stream id and
        its in-flight slot until the driver's own timeout (10 s by default): the
        time left becomes its driver timeout, so the driver drops it, and frees
        the slot, when the deadline passes.
        """
        left = time_left()
        if left == math.inf:
            return timeout
        if timeout is _NOT_SET:
            try:
                timeout = self.session._maybe_get_execution_profile(
                    execution_profile
                ).request_timeout
            except Exception:  # legacy configuration: no execution profiles
                timeout = self.session.default_timeout
        left = max(left, 0.0) + _DEADLINE_SLACK
        return left if timeout is None else min(timeout, left)

    async def _run(self, args: tuple[Any, ...], api: str) -> AsyncResultSet:
        self._check_open()
        waker = current_waker(api)
        timeout = self._timeout(args[4], args[5])
        if timeout is not args[4]:
            args = (*args[:4], timeout, *args[5:])
        try:
            return await waker.wait(_Request(self, waker, args))  # type: ignore[no-any-return]
        except OperationTimedOut:
            # The driver's timer is the deadline plus _DEADLINE_SLACK; on the thread
            # transport it runs on the reactor thread, so a loop later than the slack
            # sees it first. The caller's fail_after promises TimeoutError.
            await yield_to_passed_deadline()
            raise

    async def execute(
        self,
        query: str | Statement,
        parameters: Sequence[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | object | None = _NOT_SET,  # noqa: ASYNC109 - the driver's, per request
        execution_profile: object = EXEC_PROFILE_DEFAULT,
        paging_state: bytes | None = None,
        trace: bool = False,
        custom_payload: dict[str, bytes] | None = None,
        host: Any = None,
        execute_as: str | None = None,
    ) -> AsyncResultSet:
        """Run one query and return its first page; the driver's exceptions come through as is.

        The arguments are `Session.execute`'s. `timeout` is the driver's
        (raises `cassandra.OperationTimedOut`); anyio and trio cancel scopes
        work too: a cancelled call returns at once and its request finishes in
        the background, and under a deadline (`anyio.fail_after`,
        `trio.move_on_after`) the time left becomes the driver's timeout, so
        the driver gives the request's stream id and slot back when it passes.
        """
        if self._closed or self.session.is_shutdown:
            self._check_open()
        waker = current_waker("AsyncSession.execute()")
        timeout = self._timeout(timeout, execution_profile)
        args = (
            query,
            parameters,
            trace,
            custom_payload,
            timeout,
            execution_profile,
            paging_state,
            host,
            execute_as,
        )
        try:
            return await waker.wait(_Request(self, waker, args))  # type: ignore[no-any-return]
        except OperationTimedOut:
            # The driver's timer is the deadline plus _DEADLINE_SLACK; on the thread
            # transport it runs on the reactor thread, so a loop later than the slack
            # sees it first. The caller's fail_after promises TimeoutError.
            await yield_to_passed_deadline()
            raise

    async def execute_concurrent(
        self,
        statements_and_parameters: Iterable[tuple[str | Statement, Any]],
        *,
        concurrency: int = 100,
        raise_on_first_error: bool = True,
        timeout: float | object | None = _NOT_SET,  # noqa: ASYNC109 - the driver's, per request
        execution_profile: object = EXEC_PROFILE_DEFAULT,
    ) -> list[ExecutionResult]:
        """Run many queries, at most `concurrency` at once; results in input order.

        Like `cassandra.concurrent.execute_concurrent`: a list of
        `ExecutionResult(success, result_or_exc)`. With `raise_on_first_error`
        the first error is raised, nothing more is started, and requests in
        flight finish in the background.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self._check_open()
        timeout = self._timeout(timeout, execution_profile)
        args = [
            (query, parameters, False, None, timeout, execution_profile, None, None, None)
            for query, parameters in statements_and_parameters
        ]
        if not args:
            return []
        waker = current_waker("AsyncSession.execute_concurrent()")
        batch = _Concurrent(self, waker, args, concurrency, raise_on_first_error)
        return await waker.wait(batch)  # type: ignore[no-any-return]

    def pages(
        self,
        query: str | Statement,
        parameters: Sequence[Any] | dict[str, Any] | None = None,
        *,
        fetch_size: int | None = None,
        prefetch: int = 1,
        timeout: float | object | None = _NOT_SET,
        execution_profile: object = EXEC_PROFILE_DEFAULT,
    ) -> PageStream:
        """Every page of a query as an async iterator, at most `prefetch` pages read ahead.

        Use `async with session.pages(q) as pages: async for page in pages:`
        so that stopping early stops the fetching at once.
        """
        self._check_open()
        query, parameters = _with_fetch_size(query, parameters, fetch_size)
        args = (query, parameters, False, None, timeout, execution_profile, None, None, None)
        return PageStream(self, args, prefetch)

    def stream(
        self,
        query: str | Statement,
        parameters: Sequence[Any] | dict[str, Any] | None = None,
        *,
        fetch_size: int | None = None,
        prefetch: int = 1,
        timeout: float | object | None = _NOT_SET,
        execution_profile: object = EXEC_PROFILE_DEFAULT,
    ) -> RowStream:
        """Every row of a query as an async iterator; pages read ahead as in `pages()`.

        >>> async def names(session):  # doctest: +SKIP
        ...     async with session.stream("SELECT name FROM users", fetch_size=500) as rows:
        ...         return [row.name async for row in rows]
        """
        pages = self.pages(
            query,
            parameters,
            fetch_size=fetch_size,
            prefetch=prefetch,
            timeout=timeout,
            execution_profile=execution_profile,
        )
        return RowStream(pages)

    async def prepare(
        self,
        query: str,
        custom_payload: dict[str, bytes] | None = None,
        keyspace: str | None = None,
    ) -> PreparedStatement:
        """Prepare a statement (in a worker thread: the driver blocks, preparing on every host)."""
        self._check_open()
        return await bridge.to_thread(self.session.prepare, query, custom_payload, keyspace)

    async def set_keyspace(self, keyspace: str) -> None:
        """Switch the default keyspace on every connection (in a worker thread: it blocks)."""
        self._check_open()
        await bridge.to_thread(self.session.set_keyspace, keyspace)

    async def shutdown(self) -> None:
        """Close the session's connections; requests in flight fail with the driver's error."""
        if self._closed and self.session.is_shutdown:
            return
        self._closed = True
        await bridge.to_thread(self.session.shutdown)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


def _with_fetch_size(query: Any, parameters: Any, fetch_size: int | None) -> tuple[Any, Any]:
    """The query with its page size set, without changing the caller's statement."""
    if fetch_size is None:
        return query, parameters
    if isinstance(fetch_size, bool) or not isinstance(fetch_size, int) or fetch_size < 1:
        raise ValueError(f"fetch_size must be an int >= 1 (rows per page), got {fetch_size!r}")
    if isinstance(query, str):
        return SimpleStatement(query, fetch_size=fetch_size), parameters
    if isinstance(query, PreparedStatement):
        bound = query.bind(parameters)
        bound.fetch_size = fetch_size
        return bound, None
    statement = copy.copy(query)
    statement.fetch_size = fetch_size
    return statement, parameters
