"""examples/uptime_monitor: `/metrics` for Prometheus, and the status page's loop and thread charts.

uvicorn serves the app, so asyncio and uvloop only (as the other web tests of the example).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

pytest.importorskip("cassandra")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from prometheus_client.parser import text_string_to_metric_families

import bridge.metrics
from bridge.adapters.requests import AsyncSession
from examples.uptime_monitor.app import create_app
from examples.uptime_monitor.runtime import RuntimeHistory
from examples.uptime_monitor.service import Service, WebServer, metrics_history
from tests.examples.test_uptime_monitor import (
    CHROMIUM_ARGS,
    WAIT,
    asyncio_only,
    chromium,  # noqa: F401 - the fixture
    fast_settings,
    get_json,
)


@asynccontextmanager
async def metrics_service() -> AsyncIterator[
    tuple[Service, WebServer, RuntimeHistory, anyio.CancelScope]
]:
    """The service with bridge's metrics on, sampled every 0.2 s; checks running.

    Yields the cancel scope of the sampling, so a test can freeze the history.
    """
    runtime = metrics_history()
    runtime.period = 0.2
    sampling = anyio.CancelScope()

    async def sample() -> None:
        with sampling:
            await runtime.run()

    try:
        async with Service(fast_settings()) as service:
            web = WebServer(create_app(service.monitor, service.store, runtime=runtime), port=0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(web.serve)
                tg.start_soon(service.monitor.run)
                tg.start_soon(sample)
                try:
                    yield service, web, runtime, sampling
                finally:
                    tg.cancel_scope.cancel()
                    web.stop()
    finally:
        bridge.metrics.disable(runtime.registry)


async def enough_history(service: Service, runtime: RuntimeHistory) -> None:
    with anyio.fail_after(WAIT):
        await service.monitor.wait_for(lambda: service.monitor.checks >= 10)
        while sum(p["probes"] for p in runtime.points) < 3 or len(runtime.points) < 3:  # noqa: ASYNC110
            await anyio.sleep(0.05)


@asyncio_only
@pytest.mark.anyio
async def test_metrics_endpoint_serves_loop_threads_and_driver_figures() -> None:
    async with metrics_service() as (service, web, runtime, _), AsyncSession() as http:
        await enough_history(service, runtime)
        response = await http.get(web.url + "metrics")
        runtime_json = await get_json(http, web.url + "api/runtime")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def samples(family: str, suffix: str = "") -> list[object]:
        return [s for s in families[family].samples if s.name == family + suffix]

    assert sum(s.value for s in samples("bridge_loop_lateness_seconds", "_count")) >= 3
    checks = [
        s
        for s in samples("http_client_request_duration_seconds", "_count")
        if s.labels["server_address"] == "127.0.0.1"
    ]
    assert sum(s.value for s in checks) >= 10  # the demo sites' checks
    stored = samples("db_client_operation_duration_seconds", "_count")
    assert sum(s.value for s in stored) > 0  # the checks written to the CQL server
    states = {s.labels["bridge_pool_thread_state"] for s in samples("bridge_pool_threads")}
    assert {"busy", "idle"} <= states
    limits = {s.labels["bridge_limiter_name"] for s in samples("bridge_limiter_tokens_limit")}
    assert "site checks" in limits
    points = runtime_json["points"]
    assert len(points) >= 3 and runtime_json["period"] == 0.2
    assert any(p["lateness_p99_ms"] is not None for p in points)
    assert all(p["threads_busy"] >= 0 and p["threads_idle"] >= 0 for p in points)


@asyncio_only
@pytest.mark.anyio
async def test_status_page_charts_loop_lateness_and_threads_over_time(chromium: str) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    async with metrics_service() as (service, web, runtime, sampling), AsyncSession() as http:
        await enough_history(service, runtime)
        sampling.cancel()  # no new point while the page renders: what it draws is known
        expected = await get_json(http, web.url + "api/runtime")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(web.url)
                await page.wait_for_selector("body[data-runtime]", timeout=WAIT * 1000)
                drawn = await page.eval_on_selector_all(
                    "#runtime polyline",
                    "lines => lines.map(l => [l.getAttribute('class'), Number(l.dataset.points)])",
                )
                caption = await page.text_content("#threads-caption")
            finally:
                await browser.close()
    points = expected["points"]
    with_lateness = [p for p in points if p["lateness_p99_ms"] is not None]
    assert drawn == [["p99", len(with_lateness)], ["busy", len(points)], ["idle", len(points)]]
    assert caption is not None and f"{points[-1]['threads_busy']} busy" in caption
