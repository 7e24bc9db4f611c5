"""What the pool must know about each driver: threads, transactions, cancellation, breakage.

PEP 249 leaves out everything an async pool needs: how to stop a running
statement, how to tell a dead connection from a failed query, how to stream
without loading the whole result, whether a connection may move between
threads. A dialect answers those questions for one driver family; drivers we
do not know get the generic answers, which are safe but slower (a commit per
statement outside transactions) and cannot stop a statement on the server.

Every method except `cancel` runs on the connection's own thread, one at a
time; `cancel` runs on another thread while a statement is running.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from typing import Any

Raw = Any  # a driver's connection object
Cursor = Any


class Dialect:
    """The generic answers, for any PEP 249 driver."""

    #: setup() put the connection in autocommit mode: no commit after each statement.
    autocommit = False
    #: its objects must stay on the thread that made them (sqlite3).
    thread_bound = False
    #: `cancel()` can stop a running statement.
    can_cancel = False

    def __init__(self, module: types.ModuleType | None) -> None:
        self.module = module
        errors = tuple(
            getattr(module, name)
            for name in ("OperationalError", "InterfaceError")
            if isinstance(getattr(module, name, None), type)
        )
        self._connection_errors: tuple[type[BaseException], ...] = errors
        threadsafety = getattr(module, "threadsafety", 1)
        # PEP 249 threadsafety 0: the module itself may not be shared between threads.
        # We cannot honour that across connections; at least keep each on one thread.
        if isinstance(threadsafety, int) and threadsafety < 1:
            self.thread_bound = True

    @property
    def name(self) -> str:
        return self.module.__name__ if self.module is not None else "unknown"

    def setup(self, raw: Raw) -> None:
        """A new connection: make it behave the way the pool expects."""

    def begin(self, raw: Raw, cursor: Cursor) -> None:
        """Start a transaction (generic drivers are always in one: nothing to do)."""

    def commit(self, raw: Raw) -> None:
        raw.commit()

    def rollback(self, raw: Raw) -> None:
        raw.rollback()

    def savepoint(self, cursor: Cursor, name: str, action: str) -> None:
        """SAVEPOINT / RELEASE SAVEPOINT / ROLLBACK TO SAVEPOINT: standard SQL."""
        cursor.execute(f"{action} {name}")

    def server_cursor(self, raw: Raw, name: str) -> tuple[Cursor, bool]:
        """A cursor that fetches from the server as it goes, and whether it needs a transaction."""
        return raw.cursor(), False

    def cancel(self, raw: Raw, connect: Callable[[], Raw]) -> None:
        """From another thread: stop the statement `raw` is running."""
        for method in ("cancel", "interrupt"):
            stop = getattr(raw, method, None)
            if callable(stop):
                stop()
                return

    def set_timeout(self, cursor: Cursor, seconds: float | None) -> bool:
        """Bound the next statements by `seconds` on the server (None: the default again).

        Returns whether a timeout is now set, so the pool knows to reset it.
        """
        return False

    def ping(self, raw: Raw) -> None:
        """A round trip that fails on a dead connection."""
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()

    def recover(self, raw: Raw) -> None:
        """After a cancelled or failed call: roll back, then prove the connection still works."""
        raw.rollback()
        self.ping(raw)

    def is_broken(self, raw: Raw, error: BaseException) -> bool | None:
        """After `error`: is the connection itself gone, not just the statement? None: can't tell.

        No ping here: inside a transaction that the error aborted (PostgreSQL) a
        ping fails on a healthy connection. When the driver does not say, the
        pool rolls back and pings when the task lets go, and closes it if that fails.
        """
        if not isinstance(error, self._connection_errors):
            return False
        closed = getattr(raw, "closed", None)  # psycopg, pg8000, many others
        if isinstance(closed, bool | int):
            return bool(closed)
        return None

    def close(self, raw: Raw) -> None:
        raw.close()


class Psycopg2(Dialect):
    """psycopg2: autocommit outside transactions, named cursors, `connection.cancel()`."""

    autocommit = True
    can_cancel = True

    def setup(self, raw: Raw) -> None:
        raw.autocommit = True

    def begin(self, raw: Raw, cursor: Cursor) -> None:
        raw.autocommit = False  # psycopg2 sends BEGIN with the next statement: no extra round trip

    def commit(self, raw: Raw) -> None:
        raw.commit()
        raw.autocommit = True

    def rollback(self, raw: Raw) -> None:
        raw.rollback()
        raw.autocommit = True

    def server_cursor(self, raw: Raw, name: str) -> tuple[Cursor, bool]:
        return raw.cursor(name=name), True  # DECLARE ... CURSOR lives in a transaction

    def cancel(self, raw: Raw, connect: Callable[[], Raw]) -> None:
        raw.cancel()

    def set_timeout(self, cursor: Cursor, seconds: float | None) -> bool:
        if seconds is None:
            cursor.execute("SET statement_timeout TO DEFAULT")
            return False
        cursor.execute("SET statement_timeout = %s", (max(1, math.ceil(seconds * 1000)),))
        return True

    def recover(self, raw: Raw) -> None:
        if raw.closed:
            raise ConnectionError("the connection is closed")
        raw.rollback()  # in autocommit mode this sends nothing: the ping is the proof
        raw.autocommit = True
        self.ping(raw)

    def is_broken(self, raw: Raw, error: BaseException) -> bool | None:
        return bool(raw.closed)  # psycopg2 marks a connection closed when it loses it


class MySQL(Dialect):
    """PyMySQL and mysqlclient: autocommit, unbuffered cursors, `KILL QUERY` from elsewhere."""

    autocommit = True
    can_cancel = True
    _timeout_variable = "max_execution_time"
    _timeout_scale = 1000  # MySQL: milliseconds; MariaDB: seconds

    def setup(self, raw: Raw) -> None:
        raw.autocommit(True)
        server = raw.get_server_info()
        if "mariadb" in str(server).lower():
            self._timeout_variable, self._timeout_scale = "max_statement_time", 1

    def begin(self, raw: Raw, cursor: Cursor) -> None:
        cursor.execute("BEGIN")  # suspends autocommit until COMMIT or ROLLBACK

    def server_cursor(self, raw: Raw, name: str) -> tuple[Cursor, bool]:
        cursors = sys.modules[type(raw).__module__.split(".")[0] + ".cursors"]
        buffered = getattr(raw, "cursorclass", None)
        as_dicts = buffered is not None and issubclass(buffered, cursors.DictCursorMixin)
        return raw.cursor(cursors.SSDictCursor if as_dicts else cursors.SSCursor), False

    def cancel(self, raw: Raw, connect: Callable[[], Raw]) -> None:
        thread_id = int(raw.thread_id())
        killer = connect()
        try:
            cursor = killer.cursor()
            cursor.execute(f"KILL QUERY {thread_id}")
            cursor.close()
        finally:
            killer.close()

    def set_timeout(self, cursor: Cursor, seconds: float | None) -> bool:
        variable = self._timeout_variable
        if seconds is None:
            cursor.execute(f"SET SESSION {variable} = DEFAULT")
            return False
        if self._timeout_scale == 1:
            value: float = max(0.001, seconds)
        else:
            value = max(1, math.ceil(seconds * self._timeout_scale))
        cursor.execute(f"SET SESSION {variable} = %s", (value,))
        return True

    def recover(self, raw: Raw) -> None:
        raw.rollback()  # a round trip (COM_QUERY ROLLBACK): it proves the connection works

    def is_broken(self, raw: Raw, error: BaseException) -> bool | None:
        if not getattr(raw, "open", True):
            return True
        return super().is_broken(raw, error)


class SQLite(Dialect):
    """sqlite3: its connections stay on the thread that made them; `interrupt()` stops a query."""

    autocommit = True
    thread_bound = True
    can_cancel = True

    def setup(self, raw: Raw) -> None:
        raw.isolation_level = None  # autocommit; transactions are begun explicitly

    def begin(self, raw: Raw, cursor: Cursor) -> None:
        # IMMEDIATE takes the write lock now, where the busy timeout waits for it;
        # a deferred transaction that reads, then writes, can instead fail at once
        # with "database is locked" when another connection of the pool writes.
        cursor.execute("BEGIN IMMEDIATE")

    def cancel(self, raw: Raw, connect: Callable[[], Raw]) -> None:
        raw.interrupt()

    def recover(self, raw: Raw) -> None:
        raw.rollback()  # no server to ping: the file is there or the rollback fails

    def is_broken(self, raw: Raw, error: BaseException) -> bool | None:
        return False  # a file does not hang up


_DIALECTS: dict[str, type[Dialect]] = {
    "psycopg2": Psycopg2,
    "pymysql": MySQL,
    "MySQLdb": MySQL,
    "sqlite3": SQLite,
}


def dialect_for(raw: Raw) -> Dialect:
    """The dialect of a driver connection, found from its class (or a base class's) module."""
    module: types.ModuleType | None = None
    for cls in type(raw).__mro__:
        root = cls.__module__.split(".")[0]
        known = _DIALECTS.get(root)
        if known is not None:
            return known(sys.modules.get(root))
        candidate = sys.modules.get(root)
        if module is None and candidate is not None and hasattr(candidate, "apilevel"):
            module = candidate
    return Dialect(module)
