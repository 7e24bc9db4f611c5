"""`python -m bridge watch`: runs a real program and ranks the lines that blocked its loops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.testing.httpserver import HTTPTestServer

APP = """\
import sys

import requests

URL, BACKEND = sys.argv[1], sys.argv[2]


def fetch_profile():
    return requests.get(URL, timeout=30).text  # blocking line


async def handle_request():
    return fetch_profile()


async def main(checkpoint):
    await checkpoint()  # the loop is up and running
    for _ in range(2):
        await handle_request()
        await checkpoint()
    if len(sys.argv) > 3:
        print("ready", flush=True)
        await forever()


async def forever():
    if BACKEND == "trio":
        import trio
        await trio.sleep_forever()
    else:
        import asyncio
        await asyncio.Event().wait()


if BACKEND == "trio":
    import trio
    trio.run(main, lambda: trio.sleep(0))
elif BACKEND == "uvloop":
    import asyncio
    import uvloop
    uvloop.run(main(lambda: asyncio.sleep(0)))
else:
    import asyncio
    asyncio.run(main(lambda: asyncio.sleep(0)))
"""

BLOCKING_LINE = next(
    n for n, line in enumerate(APP.splitlines(), 1) if line.endswith("# blocking line")
)


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "service.py"
    path.write_text(APP)
    return path


def watch(
    *program: str, report: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "watch", "--report", str(report), "--", *program],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def assert_names_the_blocking_line(stderr: str, report: Path, script: Path) -> None:
    where = f"{script}:{BLOCKING_LINE} in fetch_profile()"
    ranked = stderr[stderr.index("bridge watch:") :]
    assert "call site(s) blocked the event loop" in ranked
    assert where in ranked.splitlines()[2]  # rank 1
    assert "requests.get(URL, timeout=30).text" in ranked
    # warn-only strict mode saw the same line, as requests.Session.send
    assert "requests.Session.send()" in ranked
    data = json.loads(report.read_text())
    top = data["sites"][0]
    assert (top["filename"], top["lineno"], top["function"]) == (
        str(script),
        BLOCKING_LINE,
        "fetch_profile",
    )
    assert top["count"] >= 1
    assert top["worst"] <= top["total"]
    assert data["strict"][0]["call"] == "requests.Session.send"
    assert data["strict"][0]["count"] == 2


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_watch_a_script_names_the_requests_get_line(
    backend: str, app: Path, http_server: HTTPTestServer, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    result = watch(str(app), http_server.url("/sleep?ms=200"), backend, report=report, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_names_the_blocking_line(result.stderr, report, app)
    # While it blocked, the child logged the report with the stack.
    assert "blocked for more than 0.05 s" in result.stderr


def test_watch_a_module_run_with_dash_m(
    app: Path, http_server: HTTPTestServer, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    result = watch(
        "-m", "service", http_server.url("/sleep?ms=200"), "asyncio", report=report, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert_names_the_blocking_line(result.stderr, report, app)


def test_watch_a_console_script(app: Path, http_server: HTTPTestServer, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "serve-app"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""\
            import runpy, sys
            sys.argv[0] = {str(app)!r}
            runpy.run_path({str(app)!r}, run_name="__main__")
            """
        )
    )
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    report = tmp_path / "report.json"
    result = watch(
        "serve-app", http_server.url("/sleep?ms=200"), "trio", report=report, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert_names_the_blocking_line(result.stderr, report, app)


@pytest.mark.parametrize("how", ["SIGTERM to bridge watch", "SIGINT to the process group"])
def test_the_report_is_printed_when_the_program_is_stopped_by_a_signal(
    how: str, app: Path, http_server: HTTPTestServer, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "watch",
            "--report",
            str(report),
            "--",
            str(app),
            http_server.url("/sleep?ms=200"),
            "asyncio",
            "serve",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # blocked twice, now serving
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert_names_the_blocking_line(stderr, report, app)


def test_exit_status_is_the_programs(tmp_path: Path) -> None:
    script = tmp_path / "quiet.py"
    script.write_text(
        "import asyncio, sys\n"
        "async def main():\n"
        "    await asyncio.sleep(0)\n"
        "asyncio.run(main())\n"
        "sys.exit(3)\n"
    )
    report = tmp_path / "report.json"
    result = watch(str(script), report=report, cwd=tmp_path)
    assert result.returncode == 3
    assert "no event loop was blocked longer than 0.05 s" in result.stderr
    assert json.loads(report.read_text())["sites"] == []


def test_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    result = watch("no-such-command-here", report=tmp_path / "r.json", cwd=tmp_path)
    assert result.returncode != 0
    assert "cannot find 'no-such-command-here'" in result.stderr


CQL_APP = """\
import time

import bridge
from bridge.adapters.cassandra import AsyncCluster
from bridge.testing.cqlserver import CQLServer


def legacy_lookup():
    time.sleep(0.5)  # blocking line


async def ping():
    return "pong"


async def main(server):
    async with AsyncCluster(server.contact_points, port=server.port) as cluster:
        session = await cluster.connect()
        await session.execute(
            "CREATE KEYSPACE shop WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        await session.execute("CREATE TABLE shop.t (k int PRIMARY KEY, v text)")
        insert = await session.prepare("INSERT INTO shop.t (k, v) VALUES (?, ?)")
        for k in range(200):
            await session.execute(insert, [k, str(k)])
        legacy_lookup()
        assert len((await session.execute("SELECT * FROM shop.t")).current_rows) > 0


with CQLServer.start_in_thread() as server, bridge.Portal() as portal:
    server.call(time.sleep, 0.5)  # blocks the test server's own loop, not the program's
    assert portal.call(ping) == "pong"
    bridge.run(main, server)
"""

CQL_BLOCKING_LINE = next(
    n for n, line in enumerate(CQL_APP.splitlines(), 1) if line.endswith("# blocking line")
)


def test_watch_names_only_the_programs_line_when_it_runs_an_in_process_cql_server(
    tmp_path: Path,
) -> None:
    """The CQL server's loop is bridge's, not the program's, and an idle portal blocks
    nothing: run after run, the report names the program's one blocking line, no other."""
    pytest.importorskip("cassandra")
    script = tmp_path / "cql_app.py"
    script.write_text(CQL_APP)
    reports = []
    for run in range(3):
        report = tmp_path / f"report{run}.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge",
                "watch",
                "--threshold",
                "0.2",
                "--report",
                str(report),
                "--",
                str(script),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(report.read_text())
        reports.append(
            (
                [(s["filename"], s["lineno"], s["function"], s["library"]) for s in data["sites"]],
                [(c["call"], c["filename"], c["lineno"]) for c in data["strict"]],
            )
        )
    expected_sites = [(str(script), CQL_BLOCKING_LINE, "legacy_lookup", False)]
    expected_strict = [("time.sleep", str(script), CQL_BLOCKING_LINE)]
    assert reports == [(expected_sites, expected_strict)] * 3
