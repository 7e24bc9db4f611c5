"""`Connection`: one pooled driver connection, awaitable, used by one task at a time.

Each method is one trip to the connection's thread: the statement, its fetch
and (for drivers without autocommit, outside a transaction) its commit run
together, so a primary-key SELECT costs one hand-off, not three.

A cancelled call stops the statement on the server (the dialect's `cancel`,
from another thread) and the connection leaves the task's hands at once: its
own thread, when the driver returns, rolls back, and only a connection that
survives the rollback goes back to the pool; any other is closed and replaced.
"""

from __future__ import annotations

import concurrent.futures
import operator
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from bridge import ClosedError, current_deadline
from bridge.adapters import _dbapi_metrics
from bridge.adapters.dbapi._call import PENDING, RUNNING, Call
from bridge.adapters.dbapi._dialect import Cursor, Dialect, Raw
from bridge.lowlevel import Executor, run_job, yield_to_passed_deadline

if TYPE_CHECKING:
    from bridge.adapters.dbapi._pool import Pool
    from bridge.adapters.dbapi._stream import Stream

T = TypeVar("T")

CANCEL_WAIT = 10.0
"""Seconds a recovering thread waits for the server-side cancel to be sent before it rolls back."""

SERVER_TIMEOUT_MARGIN = 0.02
"""Seconds added to the caller's time left when it becomes the server's statement timeout."""

_fetchone = operator.methodcaller("fetchone")
_fetchall = operator.methodcaller("fetchall")
_rowcount = operator.attrgetter("rowcount")


class Connection:
    """A pooled DB-API connection; every method runs on the connection's thread, off the loop.

    Rows come back exactly as the driver makes them (tuples, dicts, `sqlite3.Row`).
    """

    #: Its socket is driven by the event loop (`LoopConnection`), not by a thread.
    on_loop = False

    def __init__(self, pool: Pool, raw: Raw, executor: Executor, dialect: Dialect) -> None:
        self._pool = pool
        self._raw = raw
        self._executor = executor
        self._dialect = dialect
        self._cursor: Cursor | None = None
        self._depth = 0  # transaction nesting
        self._busy = False  # a call is running for the task holding the connection
        self._leased = False  # a task holds it (between acquire and release)
        self._lease_id = 0  # which acquire holds it: a late release of an old lease is ignored
        self._lost = False  # handed to recovery after a cancelled call: not the task's any more
        self._timeout_set = False  # a server-side statement timeout is in force
        self._timeout_in_transaction = False  # a rollback may bring back an old statement_timeout
        self._cancel_sent: concurrent.futures.Future[None] | None = None
        self._call_lock = threading.Lock()  # see Call
        self.stream_open: Stream | None = None
        self.broken = False  # the server is gone: close, never reuse
        self._doubtful = False  # a connection-class error the driver could not explain
        self.suspect = False  # another connection broke: ping before the next statement

    def __repr__(self) -> str:
        return f"<bridge.adapters.dbapi.Connection {self._dialect.name} {self._raw!r}>"

    @property
    def raw(self) -> Raw:
        """The driver's own connection, for `run` (use it only on the connection's thread)."""
        return self._raw

    # -- what users call ------------------------------------------------------

    async def execute(self, sql: str, params: Any = None) -> int:
        """Run one statement; returns the driver's rowcount."""
        return await self._statement(_rowcount, sql, params, "Connection.execute()")  # type: ignore[no-any-return]

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> int:
        """Run one statement per parameter set (the driver's `executemany`); returns rowcount."""
        params = list(seq_of_params)  # a generator must not be consumed on another thread
        return await self._statement(_rowcount, sql, params, "Connection.executemany()", many=True)  # type: ignore[no-any-return]

    async def fetchone(self, sql: str, params: Any = None) -> Any:
        """Run a query and return its first row, or None."""
        return await self._statement(_fetchone, sql, params, "Connection.fetchone()")

    async def fetchall(self, sql: str, params: Any = None) -> list[Any]:
        """Run a query and return all its rows."""
        return await self._statement(_fetchall, sql, params, "Connection.fetchall()")  # type: ignore[no-any-return]

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run `fn(raw_connection, *args)` on the connection's thread: the driver API as it is."""
        return await self._call(fn, (self._raw, *args), "Connection.run()")  # type: ignore[no-any-return]

    def transaction(self) -> Transaction:
        """`async with conn.transaction():` commit on success, roll back on error; nests."""
        return Transaction(self)

    def stream(self, sql: str, params: Any = None, *, batch: int = 500) -> Stream:
        """Rows of a query as they come, `batch` at a time, through a server-side cursor.

        At most `batch` rows wait in memory; psycopg2 uses a named cursor, PyMySQL
        an unbuffered one, sqlite3 steps its statement.
        """
        from bridge.adapters.dbapi._stream import Stream

        return Stream(self, sql, params, batch)

    # -- the call machinery ---------------------------------------------------

    async def _statement(
        self, op: Callable[[Cursor], Any], sql: str, params: Any, api: str, *, many: bool = False
    ) -> Any:
        if not isinstance(sql, str):
            raise TypeError(f"{api} needs the SQL text as a str, got {sql!r}")
        run = _dbapi_metrics.timed(self._run_statement, self._dialect)  # itself unless metrics on
        try:
            return await self._call(run, (op, sql, params, many), api)
        except Exception:
            # The server's statement timeout echoed the caller's deadline: the
            # caller gets its own cancellation (move_on_after, fail_after), not a
            # driver error, which it would see only if the scope is shielded.
            await yield_to_passed_deadline()
            raise

    async def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], api: str) -> Any:
        # `api` names the user's call in the error raised for misuse. Every trip to
        # the connection's thread (statements, transactions, stream batches) passes
        # here, once: the place to time a call for metrics.
        if self._busy or not self._leased or self._lost:
            self._refuse(api)
        self._busy = True
        call = Call(fn, args, self._abandoned, self._call_lock)
        try:
            return await run_job(call.run, executor=self._executor, limiter=self._pool.limiter)
        except BaseException:
            self._give_up(call)
            raise
        finally:
            self._busy = False

    def _give_up(self, call: Call) -> None:
        """On the loop, for a failed or cancelled call: stop a running statement on the server."""
        sent: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._cancel_sent = sent
        state = call.give_up()
        if state == RUNNING:
            self._lost = True  # its thread recovers it and returns it to the pool
            self._pool._cancel_on_server(self, sent)
        elif state == PENDING:
            sent.set_result(None)  # never ran: the connection is as it was

    def _refuse(self, api: str) -> None:
        if self._lost:
            raise ClosedError(
                f"{api}: this connection was taken back by its pool after a cancelled call "
                "(the pool stops the statement and rolls back). Acquire another one with "
                "`async with pool.connection()`."
            )
        if not self._leased:
            raise ClosedError(
                f"{api}: this connection went back to its pool when its "
                "`async with pool.connection()` block ended; use it inside the block."
            )
        raise RuntimeError(
            f"{api}: this connection is already running a call for another task. A "
            "connection serves one task at a time: give each task its own "
            "`async with pool.connection()`."
        )

    # -- on the connection's thread -------------------------------------------

    def _run_statement(self, op: Callable[[Cursor], Any], sql: str, params: Any, many: bool) -> Any:
        if self.suspect:
            self._revive()
        try:
            cursor = self.apply_deadline()
            if many:
                cursor.executemany(sql, params)
            elif params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
            result = op(cursor)
            if self._depth == 0 and not self._dialect.autocommit:
                self._raw.commit()
            return result
        except Exception as exc:
            self._check(exc)
            raise

    def apply_deadline(self) -> Cursor:
        """On the connection's thread: the caller's deadline becomes the server's statement
        timeout (or an earlier one is reset); returns the connection's plain cursor."""
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = self._raw.cursor()
        # The caller's deadline, read here rather than on the loop (where anyio's
        # lookup costs a few microseconds of the loop's time per statement).
        left = current_deadline()
        if left is not None or self._timeout_set:
            # The server's bound trails the caller's deadline by a little, so the
            # caller's own cancellation (which also stops the statement) normally wins.
            timeout = None if left is None else left + SERVER_TIMEOUT_MARGIN
            self._timeout_set = self._dialect.set_timeout(cursor, timeout)
            if self._depth or self.stream_open is not None:
                self._timeout_in_transaction = True  # SET is undone by a rollback
        return cursor

    def _forget_timeout(self, committed: bool) -> None:
        # SET is transactional: a rollback may have brought back the statement_timeout
        # of before it. Then reset it with the next statement, whatever it was.
        if self._timeout_in_transaction and not committed:
            self._timeout_set = True
        if self._depth <= 1:
            self._timeout_in_transaction = False

    def _check(self, error: BaseException) -> None:
        """A call failed: a connection that is gone is replaced; one in doubt is checked."""
        try:
            broken = self._dialect.is_broken(self._raw, error)
        except Exception:
            broken = True
        if broken is None:
            self._doubtful = True  # rolled back and pinged before the pool reuses it
        elif broken and not self.broken:
            self.broken = True
            self._pool._connection_broke(self)

    def _revive(self) -> None:
        """Another connection of the pool broke: this one may be dead too. Ping; reopen if so."""
        self.suspect = False
        try:
            self._dialect.ping(self._raw)
            return
        except Exception:
            if self._depth > 1:
                # Its savepoints went with the old connection: the transaction cannot
                # go on in a new one. (At depth 1 nothing ran yet: see below.)
                self.broken = True
                raise
        self._close_raw()
        try:
            self._raw = self._pool._connect_raw()
            self._dialect.setup(self._raw)
            if self._depth:
                # A transaction's first statement found the connection dead (a suspect
                # is pinged before its first statement): begin it on the new one, or the
                # rest of the block autocommits.
                self._cursor = self._raw.cursor()
                self._dialect.begin(self._raw, self._cursor)
        except BaseException:
            self.broken = True
            raise

    def _abandoned(self, result: Any, error: BaseException | None) -> None:
        """The task gave up while the driver ran: wait for the cancel to land, then recover."""
        sent = self._cancel_sent
        if sent is not None:
            # A cancel arriving after the rollback could hit the next user.
            concurrent.futures.wait((sent,), CANCEL_WAIT)
        self.recover()

    def recover(self) -> None:
        """On the connection's thread: roll back and prove it works, then back to the pool."""
        self._lost = True
        stream = self.stream_open
        if stream is not None:
            try:
                stream.close_cursor(False)
            except Exception:
                pass  # the rollback below settles the transaction it was in
        # Twice: a cancel that reaches the server late can hit the first rollback.
        if self._timeout_in_transaction:  # the rollback below may bring back an old one
            self._timeout_set, self._timeout_in_transaction = True, False
        for attempt in (1, 2):
            try:
                self._dialect.recover(self._raw)
                if self._timeout_set:
                    cursor = self._cursor or self._raw.cursor()
                    self._timeout_set = self._dialect.set_timeout(cursor, None)
                break
            except Exception:
                if attempt == 2:
                    self.broken = True
        self._depth = 0
        self._doubtful = False
        self._pool._returned(self)

    def _close_raw(self) -> None:
        self._cursor = None
        self.stream_open = None
        try:
            self._dialect.close(self._raw)
        except Exception:
            pass  # it is being thrown away because it failed; closing may fail too

    def close(self) -> None:
        """On the connection's thread: close the driver connection."""
        self._close_raw()

    # -- the pool's side --------------------------------------------------------

    def bind(self) -> None:
        """On the loop that acquired it (the loop transport waits on the socket with it)."""

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def depth(self) -> int:
        """Transaction nesting: 0 outside `transaction()`."""
        return self._depth

    @property
    def clean(self) -> bool:
        """Nothing left open by the last task: it can go back to the pool as it is."""
        return self._depth == 0 and self.stream_open is None and not (self.broken or self._doubtful)

    def lease(self) -> int:
        self._leased = True
        self._lost = False
        self._lease_id += 1
        return self._lease_id

    def unlease(self, lease_id: int) -> bool:
        """The task holding `lease_id` is done with it; False if it is no longer that task's."""
        if lease_id != self._lease_id or not self._leased:
            return False
        self._leased = False
        return not self._lost

    # -- transactions and streams: one trip to the thread each -------------------

    async def _transaction_begin(self) -> None:
        await self._call(self._begin, (), "Connection.transaction()")

    async def _transaction_end(self, commit: bool) -> None:
        await self._call(self._end, (commit,), "Connection.transaction()")

    async def _stream_batch(self, stream: Stream) -> list[Any]:
        return await self._call(stream.fetch, (), "Connection.stream()")  # type: ignore[no-any-return]

    async def _stream_close(self, stream: Stream) -> None:
        await self._call(stream.close_cursor, (True,), "Stream.aclose()")

    # -- transactions, on the connection's thread ---------------------------------

    def _begin(self) -> None:
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = self._raw.cursor()
        self._depth += 1
        if self._depth == 1:
            self._dialect.begin(self._raw, cursor)
        else:
            self._dialect.savepoint(cursor, f"bridge_sp_{self._depth}", "SAVEPOINT")

    def _end(self, commit: bool) -> None:
        depth = self._depth
        dialect, cursor = self._dialect, self._cursor
        if depth == 1:
            (dialect.commit if commit else dialect.rollback)(self._raw)
            self._forget_timeout(commit)
        elif commit:
            dialect.savepoint(cursor, f"bridge_sp_{depth}", "RELEASE SAVEPOINT")
        else:
            dialect.savepoint(cursor, f"bridge_sp_{depth}", "ROLLBACK TO SAVEPOINT")
            dialect.savepoint(cursor, f"bridge_sp_{depth}", "RELEASE SAVEPOINT")
            self._forget_timeout(False)
        self._depth = depth - 1  # not on failure: the pool then rolls back before reuse


class Transaction:
    """`async with conn.transaction()`: BEGIN/COMMIT/ROLLBACK, or a savepoint when nested."""

    __slots__ = ("_conn", "_depth")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._depth = 0

    async def __aenter__(self) -> Connection:
        conn = self._conn
        await conn._transaction_begin()
        self._depth = conn._depth
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        conn = self._conn
        if conn._lost or conn._depth != self._depth:
            return  # the connection is being recovered: its rollback is on the way
        # A failure in here (a commit refused, a cancelled rollback) leaves _depth
        # raised, so the pool rolls the connection back before anyone reuses it.
        await conn._transaction_end(exc_type is None)
