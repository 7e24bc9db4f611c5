"""The real database servers the DB-API adapter tests use, and how to wait on their state.

PostgreSQL and MariaDB run on 127.0.0.1 on the project's machines (and CI's).
When one is not reachable, its tests skip with the command that starts it;
under CI (`CI=true`) they fail instead, so a missing server is never a green build.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import bridge

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
MARIADB_START = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"

_found: dict[str, dict[str, Any] | str] = {}


def _absent(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the server must be running)")
    pytest.skip(message)


def postgres() -> dict[str, Any]:
    """psycopg2.connect keyword arguments for the local PostgreSQL (user postgres, else root)."""
    psycopg2 = pytest.importorskip("psycopg2")
    if "pg" not in _found:
        errors = []
        for user in ("postgres", "root"):
            kwargs = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": user}
            try:
                psycopg2.connect(connect_timeout=5, **kwargs).close()
            except psycopg2.OperationalError as exc:
                errors.append(f"user {user}: {str(exc).strip()}")
                continue
            _found["pg"] = kwargs
            break
        else:
            _found["pg"] = (
                f"PostgreSQL is not reachable on 127.0.0.1:5432, database test "
                f"({'; '.join(errors)}). Start it with: {PG_START}"
            )
    found = _found["pg"]
    if isinstance(found, str):
        _absent(found)
    assert isinstance(found, dict)
    return found


def mariadb() -> dict[str, Any]:
    """pymysql.connect keyword arguments for the local MariaDB (root, empty password)."""
    pymysql = pytest.importorskip("pymysql")
    if "mysql" not in _found:
        kwargs = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
        kwargs["database"] = "test"
        try:
            pymysql.connect(connect_timeout=5, **kwargs).close()
            _found["mysql"] = kwargs
        except pymysql.MySQLError as exc:
            _found["mysql"] = (
                f"MariaDB is not reachable on 127.0.0.1:3306 as root, database test ({exc}). "
                f"Start it with: {MARIADB_START}"
            )
    found = _found["mysql"]
    if isinstance(found, str):
        _absent(found)
    assert isinstance(found, dict)
    return found


def unique_table() -> str:
    """A table name no other test (or other helper's run on the same server) uses."""
    return f"bridge_t_{uuid.uuid4().hex[:16]}"


async def until(check: Callable[[], bool], what: str, *, limit: float = 30.0) -> None:
    """Poll a blocking check (a query on an admin connection) until it holds.

    The limit only bounds a hang, generously; the test fails with `what` if it passes.
    """
    with anyio.move_on_after(limit):
        while not await bridge.to_thread(check):  # noqa: ASYNC110 - the state is on the server
            await anyio.sleep(0.01)
        return
    pytest.fail(f"still not true after {limit} s: {what}")
