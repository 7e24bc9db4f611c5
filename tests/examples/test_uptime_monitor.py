"""examples/uptime_monitor: the monitor on its embedded defaults (demo sites, CQL server).

The monitor and its storage are anyio code and run here on asyncio, uvloop
and trio. The web server is uvicorn, which runs on asyncio and uvloop only,
so the JSON API and status page tests have no trio variant.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("cassandra")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import bridge
from bridge.adapters.requests import AsyncSession
from bridge.watchdog import LoopWatchdog
from examples.uptime_monitor.app import create_app
from examples.uptime_monitor.demo_sites import DEMO_SITE_NAMES, OUTAGE_SITE, OutageSchedule
from examples.uptime_monitor.monitor import CheckResult, Monitor, Site
from examples.uptime_monitor.service import Service, Settings, WebServer, parse_sites

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROGRAM = [sys.executable, "-m", "examples.uptime_monitor"]
WAIT = 30  # seconds: generous bounds on waits that normally take one or two

asyncio_only = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)


def fast_settings() -> Settings:
    """Embedded defaults, sped up: the demo outage starts after 0.5 s and lasts 1.5 s."""
    return Settings(
        port=0,
        interval=0.2,
        timeout=1.0,
        demo_outages=OutageSchedule(after=0.5, length=1.5, every=60.0),
        demo_seed=7,
    )


def outage_over(monitor: Monitor) -> bool:
    """The outage site went down and came back up."""
    return any(o.site == OUTAGE_SITE and o.ended_at is not None for o in monitor.outages)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chromium() -> str:
    """Debian's chromium. No skip when it is missing: CI installs it (.ci/run), so fail loudly."""
    assert os.path.exists(CHROMIUM), f"no {CHROMIUM}: apt-get install -y chromium"
    return CHROMIUM


@asynccontextmanager
async def web_service() -> AsyncIterator[tuple[Service, WebServer, anyio.CancelScope]]:
    """The service as `serve()` runs it (watchdog, web server, checks), minus the terminal.

    Yields the cancel scope of the checks, so a test can stop them and read
    data that no longer changes.
    """
    async with Service(fast_settings()) as service, LoopWatchdog(1.0) as watchdog:
        web = WebServer(create_app(service.monitor, service.store, watchdog=watchdog), port=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(web.serve)
            checks = anyio.CancelScope()

            async def run_checks() -> None:
                with checks:
                    await service.monitor.run()

            tg.start_soon(run_checks)
            try:
                yield service, web, checks
            finally:
                checks.cancel()
                web.stop()


async def get_json(http: AsyncSession, url: str) -> Any:
    response = await http.get(url)
    response.raise_for_status()
    return response.json()


# -- the monitor (any backend) ----------------------------------------------------------------


@pytest.mark.anyio
async def test_monitor_records_an_outage_of_a_demo_site_from_first_failure_to_recovery() -> None:
    async with Service(fast_settings()) as service, anyio.create_task_group() as tg:
        monitor = service.monitor
        tg.start_soon(monitor.run)
        with anyio.fail_after(WAIT):
            await monitor.wait_for(lambda: outage_over(monitor))
        tg.cancel_scope.cancel()

    outage = next(o for o in monitor.outages if o.site == OUTAGE_SITE and o.ended_at)
    assert outage.first_error == "HTTP 503 Service Unavailable"
    assert outage.failed_checks >= 1
    assert outage.ended_at is not None and outage.ended_at > outage.started_at
    state = monitor.states[OUTAGE_SITE]
    assert state.outages >= 1 and state.failures >= outage.failed_checks
    assert state.uptime_percent is not None and state.uptime_percent < 100
    assert {s.site.name for s in monitor.states.values() if s.checks} == set(DEMO_SITE_NAMES)


@pytest.mark.anyio
async def test_every_check_is_stored_in_the_cql_server_with_a_ttl() -> None:
    async with Service(fast_settings()) as service:
        sites = [*service.monitor.sites, Site("gone", f"http://127.0.0.1:{closed_port()}/")]
        monitor = Monitor(sites, service.monitor.http, service.store, interval=1, timeout=1)
        results: list[CheckResult] = []
        for _ in range(2):
            async with anyio.create_task_group() as tg:
                for site in sites:

                    async def check(site: Site = site) -> None:
                        results.append(await monitor.check(site))

                    tg.start_soon(check)
        assert monitor.stored == len(results) == 2 * len(sites)
        assert monitor.store_errors == 0

        # Read it back with the real driver, as anyone with cqlsh would.
        def query_back() -> tuple[dict[Any, Any], list[Any]]:
            from cassandra.cluster import Cluster  # type: ignore[import-untyped]

            cluster = Cluster(service.contact_points, port=service.port)
            try:
                session = cluster.connect("uptime")
                rows: dict[Any, Any] = {}
                for result in results:
                    found = session.execute(
                        "SELECT site, checked_at, ok, status, latency_ms, error, TTL(ok) AS ttl "
                        "FROM checks WHERE site = %s AND day = %s",
                        (result.site, result.checked_at.date()),
                    )
                    for row in found:
                        rows[(row.site, row.checked_at)] = row
                days = {r.checked_at.date() for r in results}
                failures = [
                    row
                    for day in days
                    for row in session.execute(
                        "SELECT site, checked_at, error FROM failures WHERE day = %s", (day,)
                    )
                ]
                return rows, failures
            finally:
                cluster.shutdown()

        rows, failures = await bridge.to_thread(query_back)

    assert len(rows) == len(results)
    for result in results:
        row = rows[(result.site, result.checked_at.replace(tzinfo=None))]
        assert (row.ok, row.status, row.latency_ms, row.error) == (
            result.ok,
            result.status,
            result.latency_ms,
            result.error,
        )
        assert 0 < row.ttl <= service.store.ttl
    failed = sorted((r.site, r.checked_at.replace(tzinfo=None)) for r in results if not r.ok)
    assert [site for site, _ in failed].count("gone") == 2
    assert sorted((f.site, f.checked_at) for f in failures) == failed
    assert {f.error for f in failures if f.site == "gone"} == {"connection refused"}


# -- the JSON API and the status page (uvicorn: asyncio and uvloop) --------------------------


@asyncio_only
@pytest.mark.anyio
async def test_json_api_reports_the_outage_and_the_watchdog() -> None:
    async with web_service() as (service, web, _), AsyncSession() as http:
        monitor = service.monitor
        with anyio.fail_after(WAIT):
            await monitor.wait_for(lambda: outage_over(monitor))
        status = await get_json(http, web.url + "api/status")
        history = await get_json(http, web.url + f"api/sites/{OUTAGE_SITE}/checks?limit=1000")
        failures = await get_json(http, web.url + "api/failures?limit=1000")

    outages = [o for o in status["outages"] if o["site"] == OUTAGE_SITE and o["ended_at"]]
    assert outages and outages[0]["first_error"] == "HTTP 503 Service Unavailable"
    site = next(s for s in status["sites"] if s["name"] == OUTAGE_SITE)
    assert site["outages"] >= 1 and site["failures"] >= 1 and site["uptime_percent"] < 100
    assert [s["name"] for s in status["sites"]] == list(DEMO_SITE_NAMES)
    assert status["watchdog"]["threshold"] == 1.0
    assert isinstance(status["watchdog"]["blocked"], int)
    assert isinstance(status["watchdog"]["sites"], list)
    assert status["cassandra"]["sent"] > 0 and status["http"]["total"] > 0
    # History and failures come from Cassandra, newest first.
    stamps = [c["checked_at"] for c in history["checks"]]
    assert stamps == sorted(stamps, reverse=True)
    assert any(c["status"] == 503 for c in history["checks"])
    assert any(f["site"] == OUTAGE_SITE and f["status"] == 503 for f in failures["failures"])


@asyncio_only
@pytest.mark.anyio
async def test_status_page_renders_table_and_charts_from_the_api(chromium: str) -> None:
    from playwright.async_api import async_playwright

    async with web_service() as (service, web, checks), AsyncSession() as http:
        monitor = service.monitor
        with anyio.fail_after(WAIT):
            await monitor.wait_for(lambda: outage_over(monitor))
        checks.cancel()
        # Requests are answered in order on the one connection: once this one
        # is back, every write sent before the checks stopped has landed.
        await service.store.session.execute("SELECT release_version FROM system.local")
        status = await get_json(http, web.url + "api/status")
        histories = {
            s["name"]: (await get_json(http, web.url + f"api/sites/{s['name']}/checks?limit=60"))[
                "checks"
            ]
            for s in status["sites"]
        }
        failures = (await get_json(http, web.url + "api/failures?limit=15"))["failures"]

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(web.url)
                await page.wait_for_selector("body[data-rendered]", timeout=WAIT * 1000)
                rows = await page.eval_on_selector_all(
                    "#sites tbody tr",
                    """rows => rows.map(r => ({
                        site: r.dataset.site,
                        state: r.querySelector('.state').textContent,
                        uptime: r.querySelector('.uptime').textContent,
                        checks: r.querySelector('.checks').textContent,
                        points: Number(r.querySelector('svg.chart').dataset.points),
                        failed: Number(r.querySelector('svg.chart').dataset.failed),
                        polyline: r.querySelector('svg.chart polyline')
                            .getAttribute('points').split(' ').filter(Boolean).length,
                        dots: r.querySelectorAll('svg.chart circle.fail').length,
                        width: Number(r.querySelector('svg.chart').getAttribute('width')),
                        xs: [
                            ...r.querySelector('svg.chart polyline').getAttribute('points')
                                .split(' ').filter(Boolean).map(p => Number(p.split(',')[0])),
                            ...[...r.querySelectorAll('svg.chart circle.fail')]
                                .map(c => Number(c.getAttribute('cx'))),
                        ],
                    }))""",
                )
                listed = await page.eval_on_selector_all(
                    "#failures li", "items => items.map(i => i.dataset.site)"
                )
            finally:
                await browser.close()

    assert [r["site"] for r in rows] == [s["name"] for s in status["sites"]]
    for row, site in zip(rows, status["sites"], strict=True):
        assert row["state"] == ("up" if site["up"] else "down")
        assert row["uptime"] == f"{site['uptime_percent']:.2f} %"
        assert row["checks"] == str(site["checks"])
        history = histories[site["name"]]
        drawn = [c for c in history if c["ok"] and c["latency_ms"] is not None]
        assert row["points"] == row["polyline"] == len(drawn) > 0
        assert row["failed"] == row["dots"] == len(history) - len(drawn)
        # The x-axis spans the checks present: oldest at the left edge, newest at the right.
        if len(history) > 1:
            assert min(row["xs"]) == 0 and max(row["xs"]) == row["width"]
    assert next(r for r in rows if r["site"] == OUTAGE_SITE)["dots"] >= 1
    assert listed == [f["site"] for f in failures] and OUTAGE_SITE in listed


# -- the program ----------------------------------------------------------------------------


def test_program_runs_on_embedded_defaults_and_prints_one_line_per_round() -> None:
    result = subprocess.run(
        [*PROGRAM, "--port", "0", "--interval", "0.5", "--duration", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("Status page: http://127.0.0.1:")
    rounds = [line for line in lines if line.startswith("round ")]
    assert rounds and all(f"/{len(DEMO_SITE_NAMES)} up" in line for line in rounds)
    assert lines[-1].startswith("Stopped after ")
    assert "Traceback" not in result.stderr


def test_program_serves_until_ctrl_c_then_prints_the_summary() -> None:
    # `make demo` runs it like this: no --duration, so the status page stays up.
    proc = subprocess.Popen(
        [*PROGRAM, "--port", "0", "--interval", "0.5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,  # its own process group, like a shell job
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # bounded by the kill in `finally` if it never prints a round
            seen.append(line)
            if line.startswith("round "):
                break
        assert any(line.startswith("round ") for line in seen), seen
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        rest, stderr = proc.communicate(timeout=WAIT * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert rest.splitlines()[-1].startswith("Stopped after "), rest
    assert "Traceback" not in stderr


def test_program_runs_as_a_directory() -> None:
    result = subprocess.run(
        [sys.executable, "examples/uptime_monitor", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert "--cassandra" in result.stdout and "--sites" in result.stdout


def test_sites_file_takes_urls_and_named_urls() -> None:
    sites = parse_sites(
        [
            "# production",
            "https://example.org/health",
            "api  https://api.example.org/ping   # the API",
            "",
        ]
    )
    assert [(s.name, s.url) for s in sites] == [
        ("example.org/health", "https://example.org/health"),
        ("api", "https://api.example.org/ping"),
    ]
    with pytest.raises(ValueError, match="not an http"):
        parse_sites(["ftp://example.org"])
    with pytest.raises(ValueError, match="unique"):
        parse_sites(["https://a.example", "https://a.example"])
