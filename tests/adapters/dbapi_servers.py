"""The real database servers the DB-API adapter tests use, and how to wait on their state.

PostgreSQL and MariaDB run on 127.0.0.1 on the project's machines (and CI's).
When one is not reachable, its tests skip with the command that starts it;
under CI (`CI=true`) they fail instead, so a missing server is never a green build.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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


@pytest.fixture(scope="module", params=["loop", "thread"])
def pg(request: pytest.FixtureRequest) -> dict[str, Any]:
    """create_pool keyword arguments: the server's, and the transport under test."""
    return {**postgres(), "transport": request.param}


@pytest.fixture(scope="module")
def admin() -> Iterator[Any]:
    """A plain autocommit psycopg2 connection, to look at the server from outside the pool."""
    import psycopg2

    conn = psycopg2.connect(**postgres())
    conn.autocommit = True
    yield conn
    conn.close()


def sql(admin: Any, query: str, params: Any = None) -> list[Any]:
    """`query` on the admin connection; its rows, if it has any."""
    with admin.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


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


class PrivatePostgres:
    """A PostgreSQL server of the test's own, in a temp dir on a free port: one it may restart.

    The shared server on 5432 is never restarted (other tests and helpers use it).
    initdb refuses to run as root, so as root (CI) the server runs as the
    `postgres` system user, which the PostgreSQL packages create.
    """

    def __init__(self, bindir: str, root: str, user: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = os.path.join(root, "data")
        self.log = os.path.join(root, "server.log")
        self.port = _free_port()
        self._user = user
        # The socket goes in the temp dir, never in /var/run/postgresql (the shared server's).
        self._options = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "dbname": "postgres", "user": "postgres"}

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            [os.path.join(self.bindir, argv[0]), *argv[1:]],
            user=self._user,
            cwd=self.root,  # readable by that user, wherever the tests were started
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = Path(self.log).read_text()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}{log}"
            )

    def init(self) -> None:
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", self._options, "-w", "start")

    def restart(self) -> None:
        """A real restart: the postmaster stops (`-m fast` ends every session) and starts again."""
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.log,
            "-o",
            self._options,
            "-m",
            "fast",
            "-w",
            "restart",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Start a `PrivatePostgres` from the installed binaries; skip (fail under CI) without them."""
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        _absent(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin, so the restart test "
            "cannot start a server of its own: apt-get install postgresql"
        )
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _absent("running as root and there is no `postgres` user for initdb to run as")
        user = "postgres"
    root = tempfile.mkdtemp(prefix="bridge-pg-")
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PrivatePostgres(os.path.dirname(initdbs[-1]), root, user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop("immediate")
        except Exception:
            pass  # it may not have started; the temp dir goes either way
        shutil.rmtree(root, ignore_errors=True)
