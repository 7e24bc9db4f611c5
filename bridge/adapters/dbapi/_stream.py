"""`conn.stream()`: a query's rows as an async iterator, a bounded batch at a time.

Drivers buffer whole results by default (psycopg2 and PyMySQL read every row
before `execute` returns), which is the wrong thing for a result larger than
memory. A stream asks the dialect for the driver's server-side cursor and
reads `batch` rows per trip to the connection's thread, so at most one batch
waits in memory and the server holds the rest.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from bridge.lowlevel import yield_to_passed_deadline

if TYPE_CHECKING:
    from bridge.adapters.dbapi._connection import Connection

_names = itertools.count(1)


class Stream:
    """`async for row in conn.stream(sql, params)`; `async with` closes it early."""

    def __init__(self, conn: Connection, sql: str, params: Any, batch: int) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(
                f"stream(batch=...) must be an int >= 1 (rows per fetch), got {batch!r}"
            )
        if not isinstance(sql, str):
            raise TypeError(f"Connection.stream() needs the SQL text as a str, got {sql!r}")
        self._conn = conn
        self._sql = sql
        self._params = params
        self._batch = batch
        self._rows: deque[Any] = deque()
        self._cursor: Any = None
        self._started = False
        self._done = False
        self._own_transaction = False

    @property
    def buffered(self) -> int:
        """Rows fetched and not yet consumed (never more than `batch`)."""
        return len(self._rows)

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        rows = self._rows
        if rows:
            return rows.popleft()
        if self._done:
            raise StopAsyncIteration
        if not self._started:
            other = self._conn.stream_open
            if other is not None and other is not self:
                raise RuntimeError(
                    "this connection already has an open stream; finish or close it first "
                    "(`async with conn.stream(...) as rows:` closes it), or use another connection"
                )
            self._started = True
        try:
            batch = await self._conn._stream_batch(self)
        except Exception:
            # The server's statement timeout echoed the caller's deadline (see
            # Connection._statement): the caller gets its own cancellation.
            await yield_to_passed_deadline()
            raise
        if not batch:
            raise StopAsyncIteration
        rows.extend(batch)
        return rows.popleft()

    async def aclose(self) -> None:
        """Stop early: close the server-side cursor (and the transaction the stream opened)."""
        self._rows.clear()
        if self._conn._lost:
            # A cancelled batch: the pool took the connection back and closes the cursor
            # as it rolls back. The caller must see its own cancellation or timeout.
            self._done = True
            return
        if self._cursor is not None:
            await self._conn._stream_close(self)
        self._done = True

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- on the connection's thread ---------------------------------------------

    def fetch(self) -> list[Any]:
        """The next batch, on the connection's thread (the thread transport)."""
        conn = self._conn
        cursor = self._cursor
        try:
            if cursor is None:
                if self._done:
                    return []
                # Before BEGIN (a rollback would undo the SET), and only here: no other
                # statement may run while a MySQL unbuffered cursor reads its rows.
                conn.apply_deadline()
                raw, dialect = conn.raw, conn.dialect
                name = f"bridge_stream_{next(_names)}"
                cursor, needs_transaction = dialect.server_cursor(raw, name)
                if needs_transaction and conn.depth == 0:
                    dialect.begin(raw, None)
                    self._own_transaction = True
                self._cursor = cursor
                conn.stream_open = self
                if self._params is None:
                    cursor.execute(self._sql)
                else:
                    cursor.execute(self._sql, self._params)
            rows = cursor.fetchmany(self._batch)
        except Exception:
            self._failed()
            raise
        if len(rows) < self._batch:
            self.close_cursor(True)
        return list(rows)

    def _failed(self) -> None:
        """The stream's statement failed: end it, and the transaction it opened, here.

        Bad parameters fail before anything is sent; the transaction begun for the
        stream must not take in the caller's next statements (to be rolled back later).
        """
        conn = self._conn
        cursor, self._cursor = self._cursor, None
        self._done = True
        try:
            if cursor is not None:
                cursor.close()  # psycopg2 sends no CLOSE in a failed transaction
            if self._own_transaction:
                self._own_transaction = False
                conn.dialect.rollback(conn.raw)
                conn._forget_timeout(False)
        except Exception:
            return  # stream_open stays set: the pool rolls back before reuse
        if conn.stream_open is self:
            conn.stream_open = None

    def close_cursor(self, commit: bool) -> None:
        """Close the cursor; end the stream's own transaction (commit, or leave it to rollback)."""
        conn = self._conn
        cursor, self._cursor = self._cursor, None
        self._done = True
        if conn.stream_open is self:
            conn.stream_open = None
        if cursor is not None:
            try:
                cursor.close()
            except Exception:
                if commit:
                    raise  # in recovery the rollback that follows settles it
        if self._own_transaction and commit:
            self._own_transaction = False
            conn.dialect.commit(conn.raw)
            conn._forget_timeout(True)
