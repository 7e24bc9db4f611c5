"""A second real client: cqlsh, as a subprocess, running statements with -e."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.testing.cqlserver import ServerThread

CQLSH = shutil.which("cqlsh") or str(Path(sys.executable).with_name("cqlsh"))
pytestmark = pytest.mark.skipif(not os.path.exists(CQLSH), reason="cqlsh is not installed")


def cqlsh(server: ServerThread, statement: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), CQLSH_NO_BUNDLED="TRUE")
    return subprocess.run(
        [CQLSH, server.contact_points[0], str(server.port), "--no-color", "-e", statement],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cqlsh_creates_writes_and_reads(cql_server: ServerThread, tmp_path: Path) -> None:
    script = (
        "CREATE KEYSPACE IF NOT EXISTS shell WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}; "
        "CREATE TABLE IF NOT EXISTS shell.notes (id int PRIMARY KEY, body text); "
        "INSERT INTO shell.notes (id, body) VALUES (1, 'from cqlsh'); "
        "SELECT id, body FROM shell.notes WHERE id = 1;"
    )
    done = cqlsh(cql_server, script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from cqlsh" in done.stdout
    assert "(1 rows)" in done.stdout


def test_cqlsh_reports_syntax_errors(cql_server: ServerThread, tmp_path: Path) -> None:
    done = cqlsh(cql_server, "SELEC nothing;", tmp_path)
    assert done.returncode != 0
    assert "SyntaxException" in done.stderr or "Syntax" in done.stderr


def test_cqlsh_describe_runs_on_the_server(cql_server: ServerThread, tmp_path: Path) -> None:
    script = (
        "CREATE KEYSPACE IF NOT EXISTS shelldesc WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}; "
        "CREATE TABLE IF NOT EXISTS shelldesc.notes (id int PRIMARY KEY, body text); "
        "DESCRIBE KEYSPACES; DESCRIBE TABLE shelldesc.notes;"
    )
    done = cqlsh(cql_server, script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "shelldesc" in done.stdout and "system_schema" in done.stdout
    created = "CREATE TABLE shelldesc.notes (\n    id int PRIMARY KEY,\n    body text\n)"
    assert created in done.stdout
