"""`LoopConnection`: a psycopg2 connection in asynchronous mode, driven by the event loop.

psycopg2 can run a connection without blocking (`async_=True`): `execute`
sends the statement and returns, and `poll()` reads what has arrived and says
whether it waits to read or to write the socket. Here the loop waits on the
socket itself (reader callbacks on asyncio and uvloop, `wait_readable` on
trio), so a statement costs no trip to a thread and back: 1.7-3.3x less client
CPU per query than the thread transport (bench/RESULTS.md, DB-API run J).

What asynchronous mode takes away, and what stands in for it:

* autocommit is always on: a transaction is BEGIN (sent in one query string
  with its first statement: no round trip of its own), COMMIT or ROLLBACK, and
  nested ones are SAVEPOINTs, all as SQL;
* no named cursors: `stream()` DECLAREs a cursor and FETCHes a batch per
  round trip, inside the caller's transaction or one of its own;
* no `executemany`: one statement per parameter set, which is what
  psycopg2's own `executemany` sends too;
* no blocking API for `run()`: use `transport="thread"` for that.

A cancelled statement is cancelled on the server (`cancel()`, which opens a
connection of its own, so on a thread) and the connection is recovered by a
background task on the loop: it reads what the server still sends, rolls
back and proves the connection works before the pool reuses it.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import psycopg2.errors  # type: ignore[import-untyped]
import psycopg2.extensions  # type: ignore[import-untyped]

from bridge import wrap_future
from bridge.adapters import _dbapi_metrics
from bridge.adapters.dbapi._connection import CANCEL_WAIT, SERVER_TIMEOUT_MARGIN, Connection
from bridge.adapters.dbapi._dialect import Cursor, Dialect, Raw
from bridge.adapters.dbapi._loop_io import LoopIO, SocketWait, loop_io
from bridge.lowlevel import Executor, yield_to_passed_deadline

if TYPE_CHECKING:
    from bridge.adapters.dbapi._pool import Pool
    from bridge.adapters.dbapi._stream import Stream

T = TypeVar("T")

POLL_OK = psycopg2.extensions.POLL_OK
POLL_READ = psycopg2.extensions.POLL_READ
POLL_WRITE = psycopg2.extensions.POLL_WRITE
IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
INERROR = psycopg2.extensions.TRANSACTION_STATUS_INERROR

_names = itertools.count(1)


def _fetchone(cursor: Cursor) -> Any:
    return cursor.fetchone()


def _fetchall(cursor: Cursor) -> Any:
    return cursor.fetchall()


def _rowcount(cursor: Cursor) -> Any:
    return cursor.rowcount


async def wait_ready(raw: Raw, sock: SocketWait) -> None:
    """Poll `raw` until the statement (or the connect) in progress is done; raises its error."""
    while True:
        try:
            state = raw.poll()
        except Exception:
            if raw.closed:
                # libpq lost the server and closed the socket: stop watching its number
                # now, before a new socket (the replacement connection's) gets it.
                sock.detach()
            raise
        if state == POLL_OK:
            return
        if state == POLL_READ:
            await sock.readable()
        elif state == POLL_WRITE:
            await sock.writable()
        else:  # psycopg2 documents no other state
            raise psycopg2.OperationalError(f"psycopg2 poll() returned {state!r}")


async def wait_connected(raw: Raw, io: LoopIO) -> None:
    """Poll an asynchronous connect to its end, on whichever socket libpq uses at the time.

    libpq may close its socket mid-connect and open another one (the next host of a
    list, sslmode=prefer trying again without TLS, gssencmode), often with the same
    number. So its number is read before every wait, and the loop stops watching it
    after the wait, before the next poll() can close it: no loop keeps a registration
    for a socket that is gone, nor waits on a new socket through the old one's.
    """
    while True:
        state = raw.poll()
        if state == POLL_OK:
            return
        if state not in (POLL_READ, POLL_WRITE):  # psycopg2 documents no other state
            raise psycopg2.OperationalError(f"psycopg2 poll() returned {state!r}")
        sock = io.socket(raw.fileno())
        try:
            if state == POLL_READ:
                await sock.readable()
            else:
                await sock.writable()
        finally:
            sock.detach()  # on this loop's thread: at once


class LoopConnection(Connection):
    """A pooled psycopg2 connection whose socket the event loop reads and writes."""

    on_loop = True

    def __init__(
        self,
        pool: Pool,
        raw: Raw,
        executor: Executor,
        dialect: Dialect,
        io: LoopIO,
        sock: SocketWait,
    ) -> None:
        super().__init__(pool, raw, executor, dialect)
        self._cur: Cursor = raw.cursor()  # its one cursor: results are read as they come
        self._fd = raw.fileno()
        self._io = io
        self._sock = sock
        self._retired: list[SocketWait] = []  # other loops' registrations not removed yet
        self._in_flight = False  # a statement was sent and its result is not read yet
        self._begin_pending = False  # BEGIN goes out with the transaction's first statement

    def bind(self) -> None:
        """On the loop that acquired it: wait on its socket with this loop."""
        io = loop_io(self._io)
        if io is self._io:
            return
        self._io = io
        old, self._sock = self._sock, io.socket(self._fd)
        old.detach()  # on its own loop's thread, if that loop runs elsewhere
        self._retired = [w for w in (*self._retired, old) if w.watching]

    @property
    def raw(self) -> Raw:
        """The driver's own connection, in psycopg2's asynchronous mode.

        Its blocking API does not work: a cursor's `execute()` only sends the query
        and returns, and the connection is then busy until `raw.poll()` returns
        POLL_OK; until then every statement of this `Connection` fails ("execute
        cannot be used while an asynchronous query is underway"). Read attributes
        (`server_version`, `notifies`, `get_transaction_status()`) freely; for the
        driver's API itself, use `transport="thread"` and `run()`. A query left
        running when the task lets go is cancelled and drained before reuse.
        """
        return self._raw

    @property
    def clean(self) -> bool:
        return super().clean and not self._running_elsewhere()

    # -- what users call ------------------------------------------------------

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> int:
        """Run one statement per parameter set; returns the total rowcount."""
        params = list(seq_of_params)
        return await self._statement(_rowcount, sql, params, "Connection.executemany()", many=True)  # type: ignore[no-any-return]

    async def fetchone(self, sql: str, params: Any = None) -> Any:
        return await self._statement(_fetchone, sql, params, "Connection.fetchone()")

    async def fetchall(self, sql: str, params: Any = None) -> list[Any]:
        return await self._statement(_fetchall, sql, params, "Connection.fetchall()")  # type: ignore[no-any-return]

    async def execute(self, sql: str, params: Any = None) -> int:
        return await self._statement(_rowcount, sql, params, "Connection.execute()")  # type: ignore[no-any-return]

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        raise RuntimeError(
            "Connection.run(): this pool's psycopg2 connections are driven by the event loop "
            "(asynchronous mode), where the driver's blocking API does not work. Create the "
            'pool with create_pool(psycopg2.connect, ..., transport="thread") to use run().'
        )

    # -- statements -------------------------------------------------------------

    async def _statement(
        self, op: Callable[[Cursor], Any], sql: str, params: Any, api: str, *, many: bool = False
    ) -> Any:
        if not isinstance(sql, str):
            raise TypeError(f"{api} needs the SQL text as a str, got {sql!r}")
        self._enter(api)
        try:
            if self.suspect:
                await self._revive_on_loop()
            run = _dbapi_metrics.timed_async(self._run_statement, self._dialect)
            limiter = self._pool.limiter
            if limiter is None:
                return await run(op, sql, params, many)
            async with limiter:  # a token per statement, as the thread transport's run_job takes
                return await run(op, sql, params, many)
        except Exception:
            # The server's statement timeout echoed the caller's deadline (see Connection).
            await yield_to_passed_deadline()
            raise
        finally:
            self._busy = False

    async def _run_statement(
        self, op: Callable[[Cursor], Any], sql: str, params: Any, many: bool
    ) -> Any:
        prefix, reset = self._timeout_prefix()
        if not many:
            await self._send(prefix, sql, params)
            if reset:
                self._timeout_set = False
            return op(self._cur)
        total = 0
        for one in params:
            await self._send(prefix, sql, one)
            if reset:
                self._timeout_set = reset = False
            prefix = ""
            total += max(0, self._cur.rowcount)
        return total

    def _timeout_prefix(self) -> tuple[str, bool]:
        """The SET that puts the caller's deadline on the server, and whether it is a reset.

        The caller's deadline becomes the server's statement_timeout, sent in the same
        round trip as the statement (see _send), and reset the same way by the next
        statement without one, a stream's DECLARE and FETCH included.
        """
        deadline = anyio.current_effective_deadline()
        if deadline != math.inf:
            left = deadline - anyio.current_time() + SERVER_TIMEOUT_MARGIN
            prefix = f"SET statement_timeout = {max(1, math.ceil(left * 1000))};"
            self._timeout_set = True
        elif self._timeout_set:
            prefix = "SET statement_timeout TO DEFAULT;"
        else:
            return "", False
        if self._depth or self.stream_open is not None:
            self._timeout_in_transaction = True  # SET is undone by a rollback
        return prefix, deadline == math.inf

    async def _send(self, prefix: str, sql: str, params: Any) -> None:
        """`prefix` (a SET) and `sql` in one round trip; in two where they must be apart."""
        if not prefix:
            await self._exchange(sql, params)
            return
        try:
            await self._exchange(prefix + sql, params)
        except psycopg2.errors.ActiveSqlTransaction:
            # Statements sent in one query string run in one implicit transaction,
            # which VACUUM, CREATE INDEX CONCURRENTLY, CREATE DATABASE... refuse before
            # they do anything (and the SET is rolled back with it). Outside a
            # transaction of ours, send the SET first, as the thread transport does;
            # inside one the refusal is right. Only this rare statement pays a round trip.
            if (
                self._depth
                or self.stream_open is not None
                or self._raw.get_transaction_status() != IDLE
            ):
                raise
            await self._exchange(prefix, None)
            await self._exchange(sql, params)

    def _enter(self, api: str) -> None:
        if self._busy or not self._leased or self._lost:
            self._refuse(api)
        self._busy = True

    async def _exchange(self, sql: str, params: Any) -> None:
        """One round trip: send `sql` (with a pending BEGIN), wait for its result on the loop."""
        begin = self._begin_pending
        if begin:
            sql = "BEGIN;" + sql
        try:
            self._cur.execute(sql, params)  # sends it (bad parameters fail before sending)
        except Exception as exc:
            self._check(exc)  # a dead connection can fail the send itself
            raise
        self._begin_pending = False
        self._in_flight = True
        raw, sock = self._raw, self._sock
        while True:
            try:
                state = raw.poll()
            except Exception as exc:
                self._in_flight = False  # the result was read: it was this error
                if raw.closed:
                    sock.detach()  # as in wait_ready: libpq closed the socket
                self._check(exc)
                if begin and self._depth and not raw.closed:
                    await self._begin_failed()
                raise
            if state == POLL_OK:
                self._in_flight = False
                return
            try:
                if state == POLL_READ:
                    await sock.readable()
                else:
                    await sock.writable()
            except BaseException:
                self._give_up_on_loop()  # cancelled with the statement on the server
                raise

    async def _begin_failed(self) -> None:
        """The transaction's first statement failed: leave the transaction begun and aborted.

        PostgreSQL parses the whole query string before it runs any of it, so a syntax
        error in the first statement means the BEGIN sent with it never ran either. The
        rest of the block would then autocommit. psycopg2 in blocking mode (the thread
        transport) sends BEGIN on its own, and the error aborts the transaction: later
        statements fail (InFailedSqlTransaction) and nothing commits. Do the same: one
        more round trip, on this rare path only.
        """
        if self._raw.get_transaction_status() != IDLE:
            return  # BEGIN ran: the error aborted the transaction, as it should
        try:
            await self._exchange(
                "BEGIN;SELECT 'bridge: the first statement of this transaction failed'::int", None
            )
        except psycopg2.Error:
            pass  # the error it is for (the transaction is now failed), or a lost connection

    # -- transactions and streams ---------------------------------------------------

    async def _transaction_begin(self) -> None:
        self._enter("Connection.transaction()")
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._depth += 1
            if self._depth == 1:
                self._begin_pending = True
                self._timeout_in_transaction = False
            else:
                await self._exchange(f"SAVEPOINT bridge_sp_{self._depth}", None)
        finally:
            self._busy = False

    async def _transaction_end(self, commit: bool) -> None:
        self._enter("Connection.transaction()")
        try:
            # Already cancelled: leave the transaction open, for the pool's recovery to
            # roll back in the background, rather than send it and cancel it again.
            await anyio.lowlevel.checkpoint_if_cancelled()
            depth = self._depth
            name = f"bridge_sp_{depth}"
            if depth == 1:
                if self._begin_pending:
                    self._begin_pending = False  # nothing was sent: nothing to end
                else:
                    await self._exchange("COMMIT" if commit else "ROLLBACK", None)
                    self._forget_timeout(commit)
            elif commit:
                await self._exchange(f"RELEASE SAVEPOINT {name}", None)
            else:
                await self._exchange(f"ROLLBACK TO SAVEPOINT {name};RELEASE SAVEPOINT {name}", None)
                self._forget_timeout(False)
            self._depth = depth - 1  # not on failure: the pool then rolls back before reuse
        finally:
            self._busy = False

    async def _stream_batch(self, stream: Stream) -> list[Any]:
        self._enter("Connection.stream()")
        try:
            name = stream._cursor
            try:
                if name is None:
                    if stream._done:
                        return []
                    name = f"bridge_stream_{next(_names)}"
                    if self._depth == 0:
                        self._begin_pending = True  # a cursor lives in a transaction
                        stream._own_transaction = True
                    stream._cursor = name
                    self.stream_open = stream
                    prefix, reset = self._timeout_prefix()
                    query = stream._sql.rstrip().rstrip(";")
                    # The newline ends a -- comment the query may end with.
                    await self._exchange(
                        f'{prefix}DECLARE "{name}" NO SCROLL CURSOR FOR {query}\n;'
                        f'FETCH FORWARD {stream._batch} FROM "{name}"',
                        stream._params,
                    )
                else:
                    prefix, reset = self._timeout_prefix()
                    await self._exchange(
                        f'{prefix}FETCH FORWARD {stream._batch} FROM "{name}"', None
                    )
                if reset:
                    self._timeout_set = False
            except Exception:
                if not self._lost:
                    await self._stream_failed(stream)
                raise
            rows: list[Any] = self._cur.fetchall()
            if len(rows) < stream._batch:
                await self._close_stream(stream)
            return rows
        finally:
            self._busy = False

    async def _stream_failed(self, stream: Stream) -> None:
        """The stream's statement failed: end the stream (and a transaction of its own) here.

        Its cursor is gone, or never was: a CLOSE on the way out would fail and hide
        the error the caller should see. Bad parameters fail before anything is sent,
        and the BEGIN meant to go with them must not go with the caller's next statement.
        """
        own = stream._own_transaction
        stream._done = True
        stream._cursor = None
        stream._own_transaction = False
        if own:
            self._begin_pending = False
            if not self._raw.closed and self._raw.get_transaction_status() != IDLE:
                try:
                    await self._exchange("ROLLBACK", None)
                except psycopg2.Error:
                    self._doubtful = True  # the pool rolls back (or replaces it) before reuse
                    return  # stream_open stays: the connection is not clean
                self._forget_timeout(False)
        if self.stream_open is stream:
            self.stream_open = None

    async def _stream_close(self, stream: Stream) -> None:
        self._enter("Stream.aclose()")
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            await self._close_stream(stream)
        finally:
            self._busy = False

    async def _close_stream(self, stream: Stream) -> None:
        name = stream._cursor
        stream._done = True
        if name is None:
            return
        own = stream._own_transaction
        if self._raw.get_transaction_status() == INERROR:
            # A statement of the caller's failed the transaction, and the cursor with it:
            # a CLOSE would fail too, and hide that error (psycopg2 sends none either).
            if own:
                await self._exchange("ROLLBACK", None)
                self._forget_timeout(False)
        else:
            await self._exchange(f'CLOSE "{name}"' + (";COMMIT" if own else ""), None)
            if own:
                self._timeout_in_transaction = False
        stream._cursor = None
        stream._own_transaction = False
        if self.stream_open is stream:
            self.stream_open = None

    # -- cancellation and recovery, on the loop ---------------------------------------

    def _give_up_on_loop(self) -> None:
        """The caller gave up mid-statement: cancel it on the server, recover in the background."""
        self._lost = True
        sent: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pool._cancel_on_server(self, sent)
        self.recover_soon(sent)

    def recover_soon(self, cancel_sent: concurrent.futures.Future[None] | None = None) -> None:
        """Roll back and check the connection in a background task, then return it to the pool."""
        self._lost = True
        if cancel_sent is None and not self._in_flight and self._running_elsewhere():
            # A query sent through `raw` by the task: stop it, as if it were ours.
            cancel_sent = concurrent.futures.Future()
            self._pool._cancel_on_server(self, cancel_sent)
        self._io.spawn(lambda: self._recover(cancel_sent))

    def _running_elsewhere(self) -> bool:
        raw = self._raw
        return not raw.closed and bool(raw.isexecuting())

    async def _recover(self, cancel_sent: concurrent.futures.Future[None] | None) -> None:
        try:
            if cancel_sent is not None:
                # A cancel arriving after the rollback could hit the next user's statement.
                with anyio.move_on_after(CANCEL_WAIT):
                    await wrap_future(cancel_sent)
            stream = self.stream_open
            if stream is not None:
                stream._done = True
                stream._cursor = None
                self.stream_open = None
            # Twice: a cancel that reaches the server late can hit the first attempt.
            for attempt in (1, 2):
                try:
                    await self._settle()
                    break
                except Exception:
                    if attempt == 2 or self._raw.closed:
                        self.broken = True
                        break
            self._depth = 0
            self._begin_pending = False
            self._doubtful = False
        except BaseException:
            self.broken = True  # the loop is ending: close it
            raise
        finally:
            self._pool._returned(self)

    async def _settle(self) -> None:
        """Read what the server still sends, roll back, reset the timeout: one round trip."""
        if self._raw.closed:
            raise ConnectionError("the connection is closed")
        if self._in_flight or self._raw.isexecuting():
            try:
                await wait_ready(self._raw, self._sock)  # the cancelled statement's answer
            except psycopg2.Error:
                if self._raw.closed:
                    raise
            finally:
                self._in_flight = False
        # The reset always: after a rollback, nobody knows which timeout is in force.
        rollback = self._raw.get_transaction_status() != IDLE
        self._begin_pending = False
        self._cur.execute(("ROLLBACK;" if rollback else "") + "SET statement_timeout TO DEFAULT")
        try:
            await wait_ready(self._raw, self._sock)
        finally:
            self._in_flight = False
        self._timeout_set = self._timeout_in_transaction = False

    async def _revive_on_loop(self) -> None:
        """Another connection of the pool broke: ping this one; reopen it if it is dead too."""
        self.suspect = False
        # The ping must not carry a pending BEGIN: if it fails, the BEGIN goes with the
        # next statement on the new connection, where the transaction then runs.
        begin, self._begin_pending = self._begin_pending, False
        try:
            await self._exchange("SELECT 1", None)
            self._begin_pending = begin
            return
        except psycopg2.Error:
            if self._depth > 1 or (self._depth and not begin):
                # Savepoints (or statements) of the transaction went with the old
                # connection: the rest of it cannot run on a new one.
                self.broken = True
                raise
        self._close_raw()
        try:
            self._raw, self._sock = await self._pool._connect_on_loop(self._io)
        except BaseException:
            self.broken = True
            raise
        self.broken = False  # the ping marked the old one
        self._cur = self._raw.cursor()
        self._fd = self._raw.fileno()
        self._timeout_set = self._timeout_in_transaction = False
        self._begin_pending = begin

    def _close_raw(self) -> None:
        """Close the driver connection once no loop watches its socket any more."""
        self._cursor = None
        self.stream_open = None
        raw, dialect = self._raw, self._dialect

        def close() -> None:
            try:
                dialect.close(raw)
            except Exception:
                pass  # thrown away because it failed, or the pool closes: nothing to add

        then = partial(self._sock.detach, close)
        for old in self._retired:
            then = partial(old.detach, then)
        self._retired = []
        then()
