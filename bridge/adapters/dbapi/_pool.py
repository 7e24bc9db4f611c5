"""`Pool`: driver connections shared by many tasks, one task per connection at a time.

The pool's state sits behind one `threading.Lock`, because connections come
back from threads as often as from the loop: a connection whose call was
cancelled is recovered (rolled back, or closed and replaced) by its own
thread, and handed straight to the next waiting task from there. A task that
finds no connection parks on a `concurrent.futures.Future` through
`bridge.wrap_future`, so the hand-over wakes it through the loop's waker
whichever thread makes it.

psycopg2 connections are driven by the event loop instead (`transport="loop"`,
the default for `psycopg2.connect`; see `_loop_connection.py`): no thread per
statement at all. Everything else follows the thread transport.

Threads follow the driver: each connection is opened on a fresh
`DedicatedThread`; if the driver is thread-bound (sqlite3, or a PEP 249
`threadsafety` of 0) the connection keeps that thread for life, otherwise the
thread ends and the connection's calls run on the pool's worker threads: at
most `max_size`, as many as the calls need (see `bridge.lowlevel.WorkerPool`).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import itertools
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio

from bridge import ClosedError, DedicatedThread, Limiter, metrics, wrap_future
from bridge.adapters.dbapi._call import DONE, PENDING, Call
from bridge.adapters.dbapi._connection import Connection
from bridge.adapters.dbapi._dialect import Raw, dialect_for
from bridge.adapters.dbapi._loop_io import LoopIO, SocketWait, loop_io
from bridge.lowlevel import Executor, Job, WorkerPool, current_waker, run_job

DEFAULT_CLOSE_TIMEOUT = 30.0
"""Seconds `Pool.close()` waits for connections still in use."""

Transport = Literal["loop", "thread"]

_RETRY = object()  # a waiter is told: a slot is free, open a connection yourself
_thread_names = itertools.count(1)


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of a connection pool."""

    size: int  #: connections open or being opened
    idle: int  #: ready in the pool
    in_use: int  #: held by tasks, or being recovered after a cancelled call
    waiting: int  #: tasks waiting for a connection
    min_size: int
    max_size: int
    opened: int  #: connections opened since the pool was made
    replaced: int  #: connections closed because they broke or failed recovery
    cancelled: int  #: statements stopped on the server after their caller gave up


class Pool:
    """A pool of connections made by a PEP 249 driver's own `connect`; see `create_pool`."""

    def __init__(
        self,
        connect: Callable[..., Raw],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        min_size: int,
        max_size: int,
        transport: Transport | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.transport: Transport = _choose_transport(connect, kwargs, transport)
        self.limiter = limiter  # statements in flight, when the user bounds them
        self._on_loop = self.transport == "loop"
        self._connect = connect
        self._args = args
        self._kwargs = kwargs
        self.min_size = min_size
        self.max_size = max_size
        self._lock = threading.Lock()
        self._idle: list[Connection] = []  # last in, first out: hot connections stay hot
        self._waiters: deque[concurrent.futures.Future[Any]] = deque()
        self._size = 0
        self._in_use = 0
        self._closing = False
        self._drained = False  # closing, and no connection is in use any more
        self._drain_waiters: list[concurrent.futures.Future[None]] = []
        self._opened = 0
        self._replaced = 0
        self._cancelled = 0
        # Up to one thread per connection. Half of them start without measuring:
        # a statement is a round trip, and the more of them run at once, the more
        # results reach the loop per wake-up. The worker pool's own default (CPU
        # count + 2, more only while the workers leave the CPU idle) suits calls
        # that compute; it held PyMySQL (which parses in Python, so its workers
        # look busy) at 4 threads, where 12-25 of 50 did 1.3-1.5x the queries at
        # half the loop's CPU per query (bench/RESULTS.md, DB-API). Slow queries
        # still grow the pool to `max_size`.
        self._workers = WorkerPool(max_size, core=max(1, max_size // 2), name="bridge-dbapi")
        self._canceller: concurrent.futures.ThreadPoolExecutor | None = None
        module = getattr(connect, "__module__", None) or "dbapi"
        metrics.track_db_pool(self, module.split(".")[0].lstrip("_"))  # _sqlite3 -> sqlite3

    def __repr__(self) -> str:
        s = self.statistics()
        name = getattr(self._connect, "__module__", None) or repr(self._connect)
        state = "closed" if self._closing else f"{s.in_use} in use, {s.idle} idle"
        return f"<bridge.adapters.dbapi.Pool of {name} {state}, max {s.max_size}>"

    # -- the API ------------------------------------------------------------------

    def connection(self) -> ConnectionLease:
        """`async with pool.connection() as conn:` a connection for this task alone."""
        return ConnectionLease(self)

    async def execute(self, sql: str, params: Any = None) -> int:
        """One statement on any free connection; returns the rowcount."""
        async with self.connection() as conn:
            return await conn.execute(sql, params)

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> int:
        async with self.connection() as conn:
            return await conn.executemany(sql, seq_of_params)

    async def fetchone(self, sql: str, params: Any = None) -> Any:
        """One query on any free connection; its first row or None."""
        async with self.connection() as conn:
            return await conn.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Any = None) -> list[Any]:
        async with self.connection() as conn:
            return await conn.fetchall(sql, params)

    async def open(self) -> Pool:
        """Open `min_size` connections now (otherwise they open on first use)."""
        while True:
            with self._lock:
                if self._closing:
                    raise ClosedError("Pool.open(): this pool was closed; create a new one")
                if self._size >= self.min_size:
                    return self
                self._size += 1
                self._in_use += 1
            self._give_back(await self._open())

    def __await__(self) -> Generator[Any, None, Pool]:
        return self.open().__await__()

    async def __aenter__(self) -> Pool:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> bool:  # noqa: ASYNC109 - a grace period, not a cancellation
        """Close idle connections now, and wait up to `timeout` seconds for those in use.

        New acquires fail with `bridge.ClosedError`. A connection still in use when
        the timeout passes is closed as soon as its task lets go of it. Returns
        True if every connection was closed in time.
        """
        drained: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._closing = True
            idle, self._idle = self._idle, []
            waiters, self._waiters = self._waiters, deque()
            self._drain_waiters.append(drained)
            self._check_drained()
        for waiter in waiters:
            if waiter.set_running_or_notify_cancel():
                waiter.set_exception(ClosedError("the pool was closed while this task waited"))
        for conn in idle:
            if conn.on_loop:
                self._close_idle(conn)  # closing an asynchronous connection does not block
            else:
                await run_job(self._close_idle, conn, executor=conn.executor)
        with anyio.move_on_after(timeout):
            await wrap_future(drained)
        if self._canceller is not None:
            self._canceller.shutdown(wait=False)
        return self._drained

    @property
    def closed(self) -> bool:
        return self._closing

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(
                size=self._size,
                idle=len(self._idle),
                in_use=self._in_use,
                waiting=sum(not w.done() for w in self._waiters),
                min_size=self.min_size,
                max_size=self.max_size,
                opened=self._opened,
                replaced=self._replaced,
                cancelled=self._cancelled,
            )

    # -- acquire and release, on the loop ---------------------------------------

    async def _acquire(self) -> Connection:
        while True:
            with self._lock:
                if self._closing:
                    raise ClosedError(
                        "Pool.connection(): this pool was closed; make a new one with create_pool()"
                    )
                if self._idle:
                    self._in_use += 1
                    return self._idle.pop()
                opening = self._size < self.max_size
                if opening:
                    self._size += 1
                    self._in_use += 1
                else:
                    waiter: concurrent.futures.Future[Any] = concurrent.futures.Future()
                    self._waiters.append(waiter)
            if opening:
                return await self._open()
            try:
                got: Any = await wrap_future(waiter)
            except BaseException:
                with self._lock:
                    handed = not waiter.cancel()  # False: a connection was already handed to us
                if handed and waiter.exception() is None:
                    got = waiter.result()
                    if got is _RETRY:
                        self._wake_one()  # pass the free slot on
                    else:
                        self._give_back(got)
                raise
            if got is not _RETRY:
                return got  # type: ignore[no-any-return]

    def _release(self, conn: Connection, lease_id: int) -> None:
        if not conn.unlease(lease_id):
            return  # recovery owns it, and returns it when it is healthy
        if conn.clean:
            self._give_back(conn)
        elif conn.broken or self._closing:
            self._discard_soon(conn)
        elif conn.on_loop:
            conn.recover_soon()  # type: ignore[attr-defined]
        else:
            # Left mid-transaction or mid-stream (the task was cancelled): roll back first.
            _spawn(conn.recover, conn.executor)

    def _discard_soon(self, conn: Connection) -> None:
        """On the loop: close `conn` for good (on its thread, unless the loop drives it)."""
        if conn.on_loop:
            self._discard(conn)
        else:
            _spawn(lambda: self._discard(conn), conn.executor)

    async def _open(self) -> Connection:
        """Open a connection in the slot the caller reserved."""
        if self._on_loop:
            return await self._open_on_loop()
        thread = DedicatedThread(name=f"bridge-dbapi-conn-{next(_thread_names)}")
        call = Call(self._open_on, (thread,), self._opened_for_nobody, threading.Lock())
        try:
            return await run_job(call.run, executor=thread)
        except BaseException:
            state = call.give_up()
            if state == PENDING:
                thread.close()
                self._slot_freed(replaced=False)
            elif state == DONE and isinstance(call.result, Connection):
                self._give_back(call.result)  # opened, but the task was cancelled on its way back
            raise

    # -- from any thread --------------------------------------------------------------

    def _put_back(self, conn: Connection) -> bool:
        """Hand `conn` to the oldest waiter, or keep it idle; False if the pool is closing."""
        with self._lock:
            if self._closing:
                return False
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(conn)
                    return True
            self._in_use -= 1
            self._idle.append(conn)
            return True

    def _give_back(self, conn: Connection) -> None:
        """On the loop: a clean connection back to the pool, or closed if the pool is."""
        if not self._put_back(conn):
            self._discard_soon(conn)

    def _returned(self, conn: Connection) -> None:
        """On the connection's thread, after recovery: back to the pool, or closed and replaced."""
        if conn.broken or not self._put_back(conn):
            self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        """On the connection's thread: close it for good and free its slot."""
        conn.close()
        executor = conn.executor
        if isinstance(executor, DedicatedThread):
            executor.close()
        self._slot_freed(replaced=conn.broken)

    def _close_idle(self, conn: Connection) -> None:
        conn.close()
        if isinstance(conn.executor, DedicatedThread):
            conn.executor.close()
        with self._lock:
            self._size -= 1

    def _slot_freed(self, *, replaced: bool) -> None:
        with self._lock:
            self._size -= 1
            self._in_use -= 1
            if replaced:
                self._replaced += 1
            if self._closing:
                self._check_drained()
                return
        self._wake_one()

    def _check_drained(self) -> None:
        """Under the lock, while closing: wake `close()` once nothing is in use."""
        if self._in_use == 0:
            self._drained = True
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(None)

    def _wake_one(self) -> None:
        """A slot is free: the oldest waiter opens a connection in it."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(_RETRY)
                    return

    def _open_on(self, thread: DedicatedThread) -> Connection:
        raw = None
        try:
            raw = self._connect_raw()
            dialect = dialect_for(raw)
            dialect.setup(raw)
        except BaseException:
            thread.close()
            if raw is not None:
                try:
                    raw.close()
                except Exception:
                    pass  # the error that matters is the one being raised
            self._slot_freed(replaced=False)
            raise
        if not dialect.thread_bound:
            thread.close()  # calls go to the worker threads; this one ends
        with self._lock:
            self._opened += 1
        return Connection(self, raw, thread if dialect.thread_bound else self._workers, dialect)

    def _opened_for_nobody(self, conn: Any, error: BaseException | None) -> None:
        if isinstance(conn, Connection):
            self._returned(conn)
        # on error, _open_on has freed the slot already

    def _connect_raw(self) -> Raw:
        return self._connect(*self._args, **self._kwargs)

    # -- the loop transport ---------------------------------------------------------

    async def _open_on_loop(self) -> Connection:
        """Open an asynchronous psycopg2 connection in the slot the caller reserved."""
        from bridge.adapters.dbapi._loop_connection import LoopConnection

        try:
            io = loop_io(None)
            raw, sock = await self._connect_on_loop(io)
        except BaseException:
            self._slot_freed(replaced=False)
            raise
        with self._lock:
            self._opened += 1
        return LoopConnection(self, raw, self._workers, dialect_for(raw), io, sock)

    async def _connect_on_loop(self, io: LoopIO) -> tuple[Raw, SocketWait]:
        """Connect in asynchronous mode: libpq's start (a DNS lookup: it may block) on a
        thread, the rest (TCP, TLS, authentication) polled by the loop."""
        from bridge.adapters.dbapi._loop_connection import wait_connected

        raw = await run_job(self._start_connect)
        try:
            timeout = _connect_timeout(raw)
            with anyio.move_on_after(timeout) as scope:
                await wait_connected(raw, io)  # watches no socket when it returns or raises
        except BaseException:
            raw.close()
            raise
        if scope.cancelled_caught:
            raw.close()
            raise raw.OperationalError(  # the driver's error, as its blocking connect raises
                f"connection timed out after {timeout} s (connect_timeout)"
            )
        return raw, io.socket(raw.fileno())

    def _start_connect(self) -> Raw:
        return self._connect(*self._args, async_=True, **self._kwargs)

    def _connection_broke(self, conn: Connection) -> None:
        """One connection found its server gone: the idle ones may be dead too (a restart)."""
        with self._lock:
            for other in self._idle:
                other.suspect = True

    def _cancel_on_server(self, conn: Connection, sent: concurrent.futures.Future[None]) -> None:
        """On the loop: stop `conn`'s statement from another thread; `sent` is done when done."""
        if self._canceller is None:
            self._canceller = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="bridge-dbapi-cancel"
            )
        try:
            self._canceller.submit(self._cancel, conn, sent)
        except RuntimeError:  # shut down: the pool is closed; the statement just runs out
            sent.set_result(None)

    def _cancel(self, conn: Connection, sent: concurrent.futures.Future[None]) -> None:
        try:
            conn.dialect.cancel(conn.raw, self._connect_raw)
            with self._lock:
                self._cancelled += 1
        except Exception:
            pass  # the statement then runs to its end; recovery still rolls back
        finally:
            sent.set_result(None)


def _connect_timeout(raw: Raw) -> float | None:
    """The connect_timeout libpq found (keyword, dsn string or PGCONNECT_TIMEOUT), or None.

    libpq applies it only to blocking connects: the pool applies it on the loop.
    """
    value = raw.get_dsn_parameters().get("connect_timeout")
    seconds = float(value) if value else 0.0
    return seconds if seconds > 0 else None


def _spawn(fn: Callable[[], None], executor: Executor) -> None:
    """Start `fn()` on `executor` from the loop; nobody awaits it and it is never dropped.

    For the pool's own cleanup (a rollback, a close), which handles its own errors.
    """
    job = Job(fn, (), {}, current_waker("bridge.adapters.dbapi"), executor, None)
    job.cleanup = True
    job.start()


class ConnectionLease:
    """What `pool.connection()` returns: `async with` it to hold a connection."""

    __slots__ = ("_conn", "_lease_id", "_pool")

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: Connection | None = None
        self._lease_id = 0

    async def __aenter__(self) -> Connection:
        if self._conn is not None:
            raise RuntimeError(
                "this pool.connection() is already in use; call pool.connection() again"
            )
        conn = await self._pool._acquire()
        self._conn, self._lease_id = conn, conn.lease()
        conn.bind()
        return conn

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._release(conn, self._lease_id)


def create_pool(
    connect: Callable[..., Raw],
    /,
    *args: Any,
    min_size: int = 1,
    max_size: int = 10,
    transport: Transport | None = None,
    limiter: Limiter | None = None,
    **kwargs: Any,
) -> Pool:
    """A connection pool over any PEP 249 driver, made with its own `connect(*args, **kwargs)`.

    `await create_pool(...)` or `async with create_pool(...) as pool:` opens
    `min_size` connections up front; at most `max_size` are ever open.

    `transport` says who does the driver's I/O: "thread" (each call is one trip
    to a thread; any driver), "loop" (the event loop drives the connection's
    socket; psycopg2's asynchronous mode, `psycopg2.connect` only), or None: "loop"
    for `psycopg2.connect`, "thread" for everything else. "loop" spends 1.7-3.3x
    less client CPU per query; "thread" keeps the driver's blocking API for
    `conn.run()`.

    `limiter` bounds the statements in flight across the pool's connections (on
    either transport), e.g. `Limiter.adaptive(max=50, target_lateness=0.005)`
    to hold the loop's lateness while the connections stay open; without one,
    `max_size` is the only bound.

    >>> import bridge, sqlite3
    >>> from bridge.adapters.dbapi import create_pool
    >>> async def main():
    ...     async with create_pool(sqlite3.connect, ":memory:") as pool:
    ...         return await pool.fetchone("select 40 + 2")
    >>> bridge.run(main)
    (42,)
    """
    if not callable(connect):
        raise TypeError(
            "create_pool() needs the driver's connect function (e.g. psycopg2.connect), "
            f"got {connect!r}"
        )
    if inspect.iscoroutinefunction(connect):
        raise TypeError(
            f"create_pool() got the async function {connect.__qualname__}(); it pools blocking "
            "PEP 249 drivers (psycopg2.connect, pymysql.connect, sqlite3.connect). "
            "An async driver has its own pool: use that."
        )
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"create_pool({name}=...) needs an int, got {value!r}")
    if max_size < 1:
        raise ValueError(
            f"create_pool(max_size={max_size}) would never open a connection: use >= 1"
        )
    if not 0 <= min_size <= max_size:
        raise ValueError(
            f"create_pool(min_size={min_size}) must be between 0 and max_size ({max_size})"
        )
    if limiter is not None and not isinstance(limiter, Limiter):
        raise TypeError(
            "create_pool(limiter=...) needs a bridge.Limiter (e.g. bridge.Limiter(20) or "
            f"bridge.Limiter.adaptive(max=50, target_lateness=0.005)), got {limiter!r}"
        )
    return Pool(
        connect,
        args,
        kwargs,
        min_size=min_size,
        max_size=max_size,
        transport=transport,
        limiter=limiter,
    )


def _choose_transport(
    connect: Callable[..., Raw], kwargs: dict[str, Any], asked: Transport | None
) -> Transport:
    """The transport a pool uses: the one asked for, else the loop where it is faithful."""
    if asked not in (None, "loop", "thread"):
        raise ValueError(
            f'create_pool(transport=...) must be "loop" (the event loop drives psycopg2\'s '
            f'socket), "thread" (a thread per call, any driver) or None (the best one for the '
            f"driver), got {asked!r}"
        )
    if asked == "thread":
        return "thread"
    why_not = _loop_unfit(connect, kwargs)
    if why_not is None:
        return "loop"
    if asked == "loop":
        raise ValueError(f'create_pool(transport="loop"): {why_not}; use transport="thread"')
    return "thread"


def _loop_unfit(connect: Callable[..., Raw], kwargs: dict[str, Any]) -> str | None:
    """Why `connect` cannot make connections the loop drives, or None if it can."""
    psycopg2 = sys.modules.get("psycopg2")
    if psycopg2 is None or connect is not psycopg2.connect:
        return "the loop transport needs psycopg2.connect itself (asynchronous mode)"
    if "async_" in kwargs or "async" in kwargs:
        return "the pool chooses psycopg2's asynchronous mode itself; leave out async_="
    if psycopg2.extensions.get_wait_callback() is not None:
        return "a psycopg2 wait callback is set (psycogreen?), and it rules out asynchronous mode"
    return None
