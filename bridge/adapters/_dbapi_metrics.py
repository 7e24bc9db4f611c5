"""DB-API statement latency per database system, SQL command and error type, while metrics are on.

Kept apart from the adapter so that its hook there stays one line: the
statement's thread function is wrapped by `timed` only while
`bridge.metrics.recording()`. The duration is measured in the connection's
thread around the driver's execute, fetch and (outside a transaction, for
drivers without autocommit) commit: the time in the driver and on the wire,
not the wait for a connection or a thread. Only the public `bridge.metrics`
API is used, as a user's adapter would.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge import metrics

Run = Callable[..., Any]

#: The driver's module -> OpenTelemetry's `db.system.name`. A MySQL driver talking to
#: MariaDB reports `mysql`: the semantic conventions name the system as the client knows it.
SYSTEMS = {
    "sqlite3": "sqlite",
    "psycopg2": "postgresql",
    "psycopg": "postgresql",
    "pg8000": "postgresql",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "oracledb": "oracle.db",
    "cx_Oracle": "oracle.db",
    "duckdb": "duckdb",
}

#: SQL commands reported as `db.operation.name`; anything else is left out, so a
#: statement that starts with a comment or a vendor keyword never makes a new series.
COMMANDS = frozenset(
    "SELECT INSERT UPDATE DELETE MERGE REPLACE UPSERT WITH VALUES CALL EXEC EXECUTE CREATE DROP "
    "ALTER TRUNCATE BEGIN START COMMIT ROLLBACK SAVEPOINT RELEASE SET SHOW EXPLAIN ANALYZE "
    "VACUUM COPY LOCK GRANT REVOKE PRAGMA".split()
)

_operations: dict[tuple[str, bool], str | None] = {}
_OPERATIONS_KEPT = 4096


def operation(sql: str, many: bool) -> str | None:
    """`db.operation.name` of `sql`: its SQL command, `BATCH INSERT` for executemany, or None.

    None when the text holds more than one statement: the semantic conventions
    ask not to name an operation from such a query. Cached per statement text,
    so the parse runs once per distinct statement.
    """
    key = (sql, many)
    found = _operations.get(key, "")
    if found != "":
        return found
    words = sql.split(None, 1)
    command = words[0].upper() if words else ""
    single = ";" not in sql.strip().rstrip(";")
    name = (f"BATCH {command}" if many else command) if command in COMMANDS and single else None
    if len(_operations) >= _OPERATIONS_KEPT:
        _operations.clear()  # statements built with values inlined: do not grow without bound
    _operations[key] = name
    return name


def timed(run: Run, dialect: Any) -> Run:
    """`run` itself while metrics are off; else `run` recording each statement's duration.

    `run(op, sql, params, many)` is the connection's statement function;
    `dialect.name` is the driver's module name.
    """
    if not metrics.recording():
        return run
    system = SYSTEMS.get(dialect.name, "other_sql")

    def timed_run(op: Any, sql: str, params: Any, many: bool) -> Any:
        start = time.perf_counter()
        try:
            result = run(op, sql, params, many)
        except BaseException as error:
            _record(system, sql, many, start, error)
            raise
        _record(system, sql, many, start, None)
        return result

    return timed_run


ARun = Callable[..., Awaitable[Any]]


def _record(system: str, sql: str, many: bool, start: float, error: BaseException | None) -> None:
    """One statement's duration since `start`, keyed by system, operation and error type."""
    seconds = time.perf_counter() - start
    kind = None if error is None else metrics.error_type(error)
    metrics.db_client_duration.record(seconds, (system, operation(sql, many), None, None, kind))


def timed_async(run: ARun, dialect: Any) -> ARun:
    """`timed` for a statement function that runs on the loop (the loop transport).

    The duration is the statement's round trip as the loop sees it: the driver
    and the wire, plus however late the loop was to read the answer.
    """
    if not metrics.recording():
        return run
    system = SYSTEMS.get(dialect.name, "other_sql")

    async def timed_run(op: Any, sql: str, params: Any, many: bool) -> Any:
        start = time.perf_counter()
        try:
            result = await run(op, sql, params, many)
        except BaseException as error:
            _record(system, sql, many, start, error)
            raise
        _record(system, sql, many, start, None)
        return result

    return timed_run
