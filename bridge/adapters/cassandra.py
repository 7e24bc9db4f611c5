"""`cassandra-driver`, awaitable: `AsyncCluster` and `AsyncSession`, with no thread per query.

The driver is thread based: a reactor thread owns the sockets and runs each
`ResponseFuture`'s callbacks; `Session.execute` blocks on `result()`. This
adapter sends every query with `Session.execute_async` from the loop thread and
gets its outcome back through `ResponseFuture.add_callbacks` and the loop's one
batching waker, so thousands of results finishing on the reactor cost a
handful of loop wake-ups and no worker thread at all. Only the calls that
really block -- building the `Cluster` (it resolves contact points), `connect`,
`prepare`, `set_keyspace`, `shutdown` -- run in a worker thread.

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
the session. A token is returned when the driver calls back, never earlier,
so a cancelled request holds its slot until the driver is really done with it.

Results: `execute` returns an `AsyncResultSet`, one page of rows. Iterating it
(`for row in result`) covers that page only, because fetching the next page
would block; `async for row in result` and `await result.all()` fetch the
following pages through callbacks; `stream()` and `pages()` read ahead a
bounded number of pages in the background.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cassandra.cluster import (  # type: ignore[import-untyped]
    _NOT_SET,
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ResponseFuture,
    ResultSet,
    Session,
)
from cassandra.concurrent import ExecutionResult  # type: ignore[import-untyped]
from cassandra.policies import HostDistance  # type: ignore[import-untyped]
from cassandra.query import (  # type: ignore[import-untyped]
    PreparedStatement,
    SimpleStatement,
    Statement,
)

from bridge import metrics
from bridge._exceptions import ClosedError
from bridge._waker import Slot, Waker, current_waker
from bridge.adapters import _cassandra_metrics
from bridge.limiter import Limiter
from bridge.threads import to_thread

__all__ = [
    "AsyncCluster",
    "AsyncResultSet",
    "AsyncSession",
    "PageStream",
    "RowStream",
    "SessionStatistics",
    "default_max_in_flight",
]

_get_ident = threading.get_ident

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


class _Request:
    """One `execute_async` behind the session's limiter, completed through the waker.

    A task parks on it (`execute`), or an owner does: `execute_concurrent`'s
    batch or a page stream, given as `owner`, is called on the loop instead.
    """

    __slots__ = (
        "args",
        "cancelled",
        "dropped",
        "error",
        "future",
        "handle",
        "has_token",
        "index",
        "owner",
        "result",
        "sent",
        "session",
        "started",
        "starting",
        "waker",
    )

    def __init__(
        self,
        session: AsyncSession,
        waker: Waker,
        args: tuple[Any, ...],
        owner: Callable[[_Request], None] | None = None,
        index: int = 0,
    ) -> None:
        self.session = session
        self.waker = waker
        self.args = args  # execute_async's positional arguments
        self.owner = owner
        self.index = index
        self.handle: Any = None
        self.future: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.has_token = False
        self.dropped = False
        self.starting = False
        self.sent = False
        self.started = 0.0
        self.cancelled = False

    # -- the limiter's side ---------------------------------------------------

    def start(self) -> None:
        self.starting = True
        self.session._limiter._enter(self)
        self.starting = False

    def grant(self) -> None:
        # `starting` alone is not enough: a token released on the reactor
        # thread can reach a request queued a moment ago, before `start` returns.
        if self.starting and _get_ident() == self.waker.thread_id:
            self._send()  # a free token, on the loop thread: send at once
        else:
            # Released by another request's callback, maybe on the reactor
            # thread: send from the loop, where the caller's query belongs.
            self.waker.deliver(self)

    def _send(self) -> None:
        self.sent = True
        session = self.session
        with session._counts_lock:
            session._sent += 1
        self.started = time.perf_counter() if metrics.recording() else 0.0  # 0.0: not timed
        try:
            future = session._execute_async(*self.args)
        except BaseException as exc:  # bad parameters, a closed driver session
            self._on_error(exc)
            return
        self.future = future
        future.add_callbacks(self._on_result, self._on_error)

    # -- the driver's side (reactor thread, or this thread if already done) -----

    def _on_result(self, rows: Any) -> None:
        if self.started:  # metrics on: recorded before the waiting task wakes
            _cassandra_metrics.record(self.future, self.started, None)
        self.result = rows
        self.session._finish()
        self.waker.deliver(self)

    def _on_error(self, error: BaseException) -> None:
        if self.started:
            _cassandra_metrics.record(self.future, self.started, error)
        self.error = error
        self.session._finish()
        self.waker.deliver(self)

    # -- the loop's side ----------------------------------------------------

    def complete(self) -> None:
        if not self.sent:
            if not self.cancelled:
                self._send()  # granted from another thread
            return
        owner = self.owner
        if owner is not None:
            owner(self)
            return
        handle = self.handle
        if handle is not None:
            self.handle = None
            error, self.error = self.error, None
            if error is not None:
                self.waker.finish(handle, None, error)
            else:
                self.waker.finish(handle, self.page(), None)

    def cancel(self) -> None:
        """The task gave up: an unsent request is dropped; a sent one finishes in the background."""
        self.handle = None
        self.cancelled = True
        if not self.sent:
            self.session._limiter._drop(self)

    def page(self) -> AsyncResultSet:
        return AsyncResultSet(self.session, self.future, self.result, self.args)


class AsyncResultSet:
    """One page of a result: `rows`, and the means to fetch the next pages without blocking.

    `for row in result` and `len(result)` cover this page only (fetching more
    would block the loop); `async for row in result` and `await result.all()`
    cover every page, fetched one at a time through driver callbacks.
    """

    __slots__ = ("_args", "_session", "column_names", "column_types", "response_future", "rows")

    def __init__(
        self, session: AsyncSession, future: Any, rows: Any, args: tuple[Any, ...]
    ) -> None:
        self._session = session
        self._args = args
        self.response_future: ResponseFuture = future
        if rows is None:
            rows = []
        elif not isinstance(rows, list):
            rows = [rows] if isinstance(rows, dict) else list(rows)
        self.rows: list[Any] = rows
        self.column_names: list[str] | None = future._col_names
        self.column_types: list[Any] | None = future._col_types

    @property
    def current_rows(self) -> list[Any]:
        """This page's rows (the driver's `ResultSet.current_rows`)."""
        return self.rows

    @property
    def paging_state(self) -> bytes | None:
        """Where the next page starts; pass to `execute(..., paging_state=...)` to resume."""
        return self.response_future._paging_state  # type: ignore[no-any-return]

    @property
    def has_more_pages(self) -> bool:
        return self.response_future._paging_state is not None

    @property
    def was_applied(self) -> bool:
        """For a lightweight transaction, whether it was applied (as the driver decides)."""
        return ResultSet(self.response_future, self.rows).was_applied  # type: ignore[no-any-return]

    @property
    def warnings(self) -> list[str] | None:
        return self.response_future.warnings  # type: ignore[no-any-return]

    def one(self) -> Any:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __getitem__(self, index: int) -> Any:
        return self.rows[index]

    def __repr__(self) -> str:
        more = ", more pages" if self.has_more_pages else ""
        return f"<AsyncResultSet {len(self.rows)} rows{more}>"

    async def next_page(self) -> AsyncResultSet:
        """The page after this one (the same query, resumed at `paging_state`).

        Raises `LookupError` on the last page; check `has_more_pages` first.
        """
        paging_state = self.paging_state
        if paging_state is None:
            raise LookupError("this is the last page; check `result.has_more_pages` first")
        args = _with_paging_state(self._args, paging_state)
        return await self._session._run(args, "AsyncResultSet.next_page()")

    async def __aiter__(self) -> AsyncIterator[Any]:
        page: AsyncResultSet = self
        while True:
            for row in page.rows:
                yield row
            if not page.has_more_pages:
                return
            page = await page.next_page()

    async def all(self) -> list[Any]:
        """Every row of this page and the pages after it."""
        return [row async for row in self]


def _with_paging_state(args: tuple[Any, ...], paging_state: bytes) -> tuple[Any, ...]:
    query, parameters, trace, payload, timeout, profile, _, host, execute_as = args
    return (query, parameters, trace, payload, timeout, profile, paging_state, host, execute_as)


class _Concurrent:
    """What `execute_concurrent`'s caller parks on: `concurrency` requests kept going."""

    __slots__ = (
        "args",
        "error",
        "handle",
        "live",
        "next",
        "raise_on_first_error",
        "remaining",
        "results",
        "session",
        "stopped",
        "waker",
        "window",
    )

    def __init__(
        self,
        session: AsyncSession,
        waker: Waker,
        args: list[tuple[Any, ...]],
        concurrency: int,
        raise_on_first_error: bool,
    ) -> None:
        self.session = session
        self.waker = waker
        self.args = args
        self.window = concurrency
        self.raise_on_first_error = raise_on_first_error
        self.results: list[Any] = [None] * len(args)
        self.remaining = len(args)
        self.next = 0
        self.live: dict[int, _Request] = {}
        self.stopped = False
        self.handle: Any = None

    def start(self) -> None:
        self._launch()

    def _launch(self) -> None:
        args, live = self.args, self.live
        while not self.stopped and self.next < len(args) and len(live) < self.window:
            i = self.next
            self.next = i + 1
            request = _Request(self.session, self.waker, args[i], self._done, i)
            live[i] = request
            request.start()

    def _done(self, request: _Request) -> None:
        del self.live[request.index]
        self.remaining -= 1
        error = request.error
        if error is not None:
            request.error = None
            if self.raise_on_first_error:
                self._stop(None, error)
                return
            self.results[request.index] = ExecutionResult(False, error)
        else:
            self.results[request.index] = ExecutionResult(True, request.page())
        if self.remaining == 0:
            self._stop(self.results, None)
        else:
            self._launch()

    def _stop(self, result: Any, error: BaseException | None) -> None:
        self.stopped = True
        handle = self.handle
        if handle is not None:
            self.handle = None
            self.waker.finish(handle, result, error)
        for request in list(self.live.values()):
            request.cancel()  # unsent ones are dropped; sent ones finish in the background

    def complete(self) -> None:  # pragma: no cover - owners finish through _done
        pass

    def cancel(self) -> None:
        self.handle = None
        self._stop(None, None)


class PageStream:
    """Every page of a query, read ahead in the background by at most `prefetch` pages.

    Pages requested never run more than `prefetch` ahead of the pages handed
    to the consumer (0: fetch only on demand). Each page is its own request
    resumed at the previous page's `paging_state`, behind the session's
    limiter. `aclose()` (or leaving `async with`) stops fetching; a page
    already requested finishes in the background and is dropped.
    """

    def __init__(self, session: AsyncSession, args: tuple[Any, ...], prefetch: int) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (pages read ahead), got {prefetch!r}")
        self._session = session
        self._args = args
        self._prefetch = prefetch
        self._buffer: deque[AsyncResultSet | BaseException] = deque()
        self._fetching: _Request | None = None
        self._next_state: bytes | None = None
        self._started = False
        self._exhausted = False
        self._closed = False
        self._waker: Waker | None = None
        self._waiter: Slot | None = None
        self.requested = 0  #: pages requested so far
        self.delivered = 0  #: pages handed to the consumer so far

    @property
    def buffered(self) -> int:
        """Pages fetched and not yet consumed."""
        return len(self._buffer)

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> AsyncResultSet:
        waker = current_waker("PageStream")
        self._waker = waker
        if not self._buffer:
            if self._exhausted or self._closed:
                raise StopAsyncIteration
            if self._fetching is None:
                self._fetch(waker)
            slot = self._waiter = Slot(waker)
            try:
                await waker.wait(slot)
            finally:
                self._waiter = None
            if not self._buffer:
                raise StopAsyncIteration  # closed meanwhile
        page = self._buffer.popleft()
        if isinstance(page, BaseException):
            raise page
        self.delivered += 1
        self._read_ahead(waker)
        return page

    def _read_ahead(self, waker: Waker) -> None:
        if self._fetching is None and not (self._exhausted or self._closed):
            if len(self._buffer) < self._prefetch:
                self._fetch(waker)

    def _fetch(self, waker: Waker) -> None:
        session = self._session
        try:
            session._check_open()
        except ClosedError as exc:
            self._buffer.append(exc)
            self._exhausted = True
            return
        args = self._args
        if self._started:
            assert self._next_state is not None
            args = _with_paging_state(args, self._next_state)
        self._started = True
        self.requested += 1
        request = self._fetching = _Request(session, waker, args, self._fetched)
        request.start()

    def _fetched(self, request: _Request) -> None:
        """On the loop: file the page, read further ahead, wake the consumer."""
        self._fetching = None
        if self._closed:
            return
        error = request.error
        if error is not None:
            request.error = None
            self._buffer.append(error)
            self._exhausted = True
        else:
            page = request.page()
            self._next_state = page.paging_state
            if self._next_state is None:
                self._exhausted = True
            self._buffer.append(page)
        self._read_ahead(request.waker)
        if self._waiter is not None:
            self._waiter.complete()

    async def aclose(self) -> None:
        """Stop fetching; a page in flight is dropped when it arrives."""
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        if self._fetching is not None:
            self._fetching.cancel()  # queued for a token: dropped; sent: finishes, dropped
        if self._waiter is not None:
            self._waiter.complete()

    def __del__(self) -> None:
        # Dropped mid-iteration (a `break` without `async with`): stop reading ahead.
        if not self._closed and self._fetching is not None:
            self._closed = True
            self._fetching.cancel()

    async def __aenter__(self) -> PageStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class RowStream:
    """Every row of every page of a query, pages read ahead as `PageStream` does."""

    def __init__(self, pages: PageStream) -> None:
        self.pages = pages
        self._rows: Iterator[Any] = iter(())

    def __aiter__(self) -> RowStream:
        return self

    async def __anext__(self) -> Any:
        for row in self._rows:
            return row
        while True:
            page = await self.pages.__anext__()
            rows = iter(page.rows)
            for row in rows:
                self._rows = rows
                return row

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop: no more rows, no more fetching."""
        self._rows = iter(())
        self.pages.close()

    async def __aenter__(self) -> RowStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


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
        self._limiter = Limiter(max_in_flight, name="cassandra in-flight")
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
        self._limiter._release()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"keyspace={self.session.keyspace!r}"
        return f"<AsyncSession {state} {self._limiter!r}>"

    @property
    def keyspace(self) -> str | None:
        return self.session.keyspace  # type: ignore[no-any-return]

    @property
    def limiter(self) -> Limiter:
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
            raise ClosedError(
                "this Cassandra session was shut down (AsyncSession.shutdown() or "
                "AsyncCluster.shutdown()); connect again with `await cluster.connect()` "
                "(or a new AsyncCluster) to run more queries"
            )

    async def _run(self, args: tuple[Any, ...], api: str) -> AsyncResultSet:
        self._check_open()
        waker = current_waker(api)
        return await waker.wait(_Request(self, waker, args))  # type: ignore[no-any-return]

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
        (raises `cassandra.OperationTimedOut`); anyio cancel scopes work too:
        a cancelled call returns at once and its request finishes in the background.
        """
        if self._closed or self.session.is_shutdown:
            self._check_open()
        waker = current_waker("AsyncSession.execute()")
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
        return await waker.wait(_Request(self, waker, args))  # type: ignore[no-any-return]

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
        return await to_thread(self.session.prepare, query, custom_payload, keyspace)

    async def set_keyspace(self, keyspace: str) -> None:
        """Switch the default keyspace on every connection (in a worker thread: it blocks)."""
        self._check_open()
        await to_thread(self.session.set_keyspace, keyspace)

    async def shutdown(self) -> None:
        """Close the session's connections; requests in flight fail with the driver's error."""
        if self._closed and self.session.is_shutdown:
            return
        self._closed = True
        await to_thread(self.session.shutdown)

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


class AsyncCluster:
    """A driver `Cluster` whose connect and shutdown never block the loop.

    Takes what `cassandra.cluster.Cluster` takes. The sync `Cluster` is made
    on first need: in a worker thread by `connect()` (it resolves contact
    points, which may mean DNS), or on first access to `.cluster`.

    >>> async def main():  # doctest: +SKIP
    ...     async with AsyncCluster(["10.0.0.1"]) as cluster:
    ...         session = await cluster.connect("shop")
    ...         row = (await session.execute("SELECT now() FROM system.local")).one()
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()
        self._sessions: list[AsyncSession] = []
        self._closed = False

    def _make_cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                self._cluster = Cluster(*self._args, **self._kwargs)
            return self._cluster

    @property
    def cluster(self) -> Cluster:
        """The sync `Cluster` (made now if `connect()` has not made it yet)."""
        return self._cluster if self._cluster is not None else self._make_cluster()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"{len(self._sessions)} sessions"
        return f"<AsyncCluster {state}>"

    async def connect(
        self, keyspace: str | None = None, *, max_in_flight: int | None = None
    ) -> AsyncSession:
        """Open a session (in a worker thread: connecting blocks), its queries bounded in flight."""
        if self._closed:
            raise ClosedError(
                "this AsyncCluster was shut down; create a new AsyncCluster to connect again"
            )
        session = await to_thread(self._connect, keyspace)
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
        if self._cluster is not None:
            await to_thread(self._cluster.shutdown)

    async def __aenter__(self) -> AsyncCluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
