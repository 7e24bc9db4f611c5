"""`create_app()`: the monitor's JSON API and HTML status page, as a Starlette app.

The page is static HTML with a small inline script that draws everything
(table, one latency chart per site as inline SVG, last failures) from the
JSON API, so what the page shows is exactly what the API says; no CDN, so it
works offline.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bridge.watchdog import LoopWatchdog
from examples.uptime_monitor.monitor import Monitor
from examples.uptime_monitor.runtime import RuntimeHistory
from examples.uptime_monitor.store import CheckStore

__all__ = ["Monitor", "create_app", "watchdog_json"]

_PAGE = Path(__file__).with_name("status_page.html")
_MAX_LIMIT = 1000


def watchdog_json(watchdog: LoopWatchdog | None) -> dict[str, Any] | None:
    """The `LoopWatchdog`'s statistics: how often, where and how long the loop was blocked."""
    if watchdog is None:
        return None
    return {
        "threshold": watchdog.threshold,
        "blocked": watchdog.statistics.count,
        "sites": watchdog.statistics.to_json(),
    }


def _limit(request: Request, default: int) -> int:
    try:
        value = int(request.query_params.get("limit", default))
    except ValueError:
        value = default
    return max(1, min(value, _MAX_LIMIT))


def create_app(
    monitor: Monitor,
    store: CheckStore,
    *,
    watchdog: LoopWatchdog | None = None,
    runtime: RuntimeHistory | None = None,
) -> Starlette:
    """The web app: `/` (status page), `/api/status`, `/api/sites/{name}/checks`, `/api/failures`.

    `/api/status` is the monitor's live state plus the watchdog's and the
    drivers' statistics; the two others read Cassandra.
    """
    page = _PAGE.read_text(encoding="utf-8")

    async def status_page(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def status(request: Request) -> JSONResponse:
        body = monitor.snapshot()
        body["watchdog"] = watchdog_json(watchdog)
        body["cassandra"] = dataclasses.asdict(store.session.statistics())
        body["http"] = dataclasses.asdict(monitor.http.limiter.statistics())
        return JSONResponse(body)

    async def site_checks(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in monitor.states:
            return JSONResponse({"error": f"no site named {name!r}"}, status_code=404)
        checks = await store.recent_checks(name, _limit(request, 60))
        return JSONResponse({"site": name, "checks": [c.to_json() for c in checks]})

    async def failures(request: Request) -> JSONResponse:
        found = await store.recent_failures(_limit(request, 20))
        return JSONResponse({"failures": [c.to_json() for c in found]})

    routes = [
        Route("/", status_page),
        Route("/api/status", status),
        Route("/api/sites/{name:path}/checks", site_checks),
        Route("/api/failures", failures),
    ]
    if runtime is not None:
        routes += _metrics_routes(runtime)
    return Starlette(routes=routes)


def _metrics_routes(runtime: RuntimeHistory) -> list[Route]:
    """`/metrics` for Prometheus (bridge's metrics: loop, threads, limiters, drivers) and
    `/api/runtime`, the loop's lateness and the threads over time, for the status page."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    async def runtime_history(request: Request) -> JSONResponse:
        return JSONResponse(runtime.to_json())

    return [Route("/metrics", metrics), Route("/api/runtime", runtime_history)]
