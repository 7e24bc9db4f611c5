"""The service put together: embedded defaults or real infrastructure, web server, shutdown.

`Service` (an async context manager, any anyio backend) brings up storage and
the sites to check -- a CQL server in a thread and local demo sites when
nothing is configured, real Cassandra and a sites file otherwise -- and
gives a ready `Monitor`. `serve()` adds the web server (uvicorn, so asyncio
or uvloop), the `LoopWatchdog` and the terminal view, which is the program.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Generator, Iterable
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio
import uvicorn
from starlette.applications import Starlette

import bridge
import bridge.metrics
from bridge.adapters.cassandra import AsyncCluster
from bridge.adapters.requests import AsyncSession
from bridge.watchdog import BlockReport, LoopWatchdog
from examples.uptime_monitor.app import create_app
from examples.uptime_monitor.demo_sites import DemoSites, OutageSchedule
from examples.uptime_monitor.monitor import Monitor, Site
from examples.uptime_monitor.progress import Progress
from examples.uptime_monitor.runtime import RuntimeHistory
from examples.uptime_monitor.store import CheckStore

__all__ = ["Service", "Settings", "WebServer", "load_sites", "parse_sites", "serve"]

DEMO_INTERVAL = 2.0  # seconds between checks of a site: demo sites are ours to hammer
REAL_INTERVAL = 30.0  # real sites: a check every 30 s is plenty, and polite


@dataclass
class Settings:
    """Everything the service can be told; the defaults are the embedded demo."""

    cassandra: list[str] | None = None  #: contact points; None starts an embedded CQL server
    cassandra_port: int = 9042
    keyspace: str = "uptime"
    replication_factor: int = 1
    ttl_days: float = 7.0
    sites_file: Path | None = None  #: None checks the local demo sites
    host: str = "127.0.0.1"
    port: int = 8080  #: 0 picks a free port
    interval: float | None = None  #: None: DEMO_INTERVAL for demo sites, REAL_INTERVAL otherwise
    timeout: float | None = None  #: per check; None: the interval, capped at 10 s
    concurrency: int = 100  #: requests in flight at once
    duration: float | None = None  #: stop after this many seconds; None runs until Ctrl-C
    watchdog_threshold: float = 0.1
    demo_outages: OutageSchedule = field(default_factory=OutageSchedule)
    demo_seed: int | None = None

    @property
    def embedded(self) -> bool:
        return self.cassandra is None and self.sites_file is None

    def check_interval(self) -> float:
        if self.interval is not None:
            return self.interval
        return DEMO_INTERVAL if self.sites_file is None else REAL_INTERVAL

    def check_timeout(self) -> float:
        return self.timeout if self.timeout is not None else min(self.check_interval(), 10.0)


def parse_sites(lines: Iterable[str]) -> list[Site]:
    """Sites from `url` or `name url` lines; blank lines and `#` comments are skipped."""
    sites: list[Site] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise ValueError(f"line {number}: expected 'URL' or 'NAME URL', got {raw.strip()!r}")
        url = parts[-1]
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"line {number}: {url!r} is not an http:// or https:// URL")
        name = parts[0] if len(parts) == 2 else (parsed.netloc + parsed.path).rstrip("/")
        sites.append(Site(name, url))
    names = [site.name for site in sites]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"site names must be unique; give these a NAME: {duplicates}")
    if not sites:
        raise ValueError("no sites: write one URL (or 'NAME URL') per line")
    return sites


def load_sites(path: Path) -> list[Site]:
    with path.open(encoding="utf-8") as lines:
        return parse_sites(lines)


class Service:
    """Storage, sites and a `Monitor`, started on enter and stopped on exit.

    With no `cassandra` it starts `bridge.testing.cqlserver` in a thread; with
    no `sites_file` it starts the local demo sites. `cql_server` and
    `demo_sites` are those embedded pieces (None when real ones are used);
    `contact_points` and `port` say where Cassandra is, either way.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cql_server: Any = None  # a bridge.testing.cqlserver.ServerThread
        self.demo_sites: DemoSites | None = None
        self.contact_points: list[str] = list(settings.cassandra or [])
        self.port = settings.cassandra_port
        self._stack = AsyncExitStack()
        self._monitor: Monitor | None = None
        self._store: CheckStore | None = None

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            raise RuntimeError("the service is not started: use `async with Service(settings)`")
        return self._monitor

    @property
    def store(self) -> CheckStore:
        if self._store is None:
            raise RuntimeError("the service is not started: use `async with Service(settings)`")
        return self._store

    async def __aenter__(self) -> Service:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):  # shut down even when cancelled
            await self._stack.aclose()

    async def _start(self) -> None:
        s = self.settings
        stack = self._stack
        if s.cassandra is None:
            from bridge.testing.cqlserver import CQLServer

            # Starting it waits for its thread's loop to listen: not on ours.
            self.cql_server = await bridge.to_thread(CQLServer.start_in_thread)
            stack.push_async_callback(bridge.to_thread, self.cql_server.close)
            self.contact_points = self.cql_server.contact_points
            self.port = self.cql_server.port
        if s.sites_file is None:
            self.demo_sites = await bridge.to_thread(DemoSites, s.demo_outages, seed=s.demo_seed)
            stack.push_async_callback(bridge.to_thread, self.demo_sites.close)
            sites = [Site(name, url) for name, url in self.demo_sites.urls().items()]
        else:
            sites = await bridge.to_thread(load_sites, s.sites_file)

        cluster = AsyncCluster(self.contact_points, port=self.port, **_cluster_options())
        stack.push_async_callback(cluster.shutdown)
        session = await cluster.connect()
        self._store = await CheckStore.open(
            session,
            keyspace=s.keyspace,
            ttl=max(1, round(s.ttl_days * 86400)),
            replication_factor=s.replication_factor,
        )
        http = AsyncSession(
            limiter=bridge.Limiter(s.concurrency, name="site checks"),
            headers={"User-Agent": "bridge-uptime-monitor/0.1"},
        )
        stack.push_async_callback(http.close)
        self._monitor = Monitor(
            sites, http, self._store, interval=s.check_interval(), timeout=s.check_timeout()
        )


def _cluster_options() -> dict[str, Any]:
    """One execution profile with an explicit policy (the driver warns without one)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile  # type: ignore[import-untyped]
    from cassandra.policies import (  # type: ignore[import-untyped]
        DCAwareRoundRobinPolicy,
        TokenAwarePolicy,
    )

    profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()))
    return {"execution_profiles": {EXEC_PROFILE_DEFAULT: profile}}


class WebServer:
    """uvicorn serving `app` on the running asyncio/uvloop loop; the socket is bound at once.

    Binding here rather than in uvicorn means a port in use fails with a clear
    error before anything starts, and `port=0` gives a known port (`.url`).
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8080) -> None:
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(
                exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); pass --port"
            ) from exc
        self._socket.listen(1024)
        self._socket.setblocking(False)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _UvicornServer(config)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def serve(self) -> None:
        """Serve until `stop()`."""
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handlers: Ctrl-C cancels the program's main task
    (asyncio.Runner does that), which stops the checks, the server and storage in order."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings, *, out: TextIO | None = None) -> None:
    """Run the whole service: monitor, web server, watchdog and terminal view, until stopped.

    Stops after `settings.duration` seconds, on SIGTERM, or on Ctrl-C (which
    cancels the main task); each way, storage and threads are shut down in order.
    """
    out = out if out is not None else sys.stdout
    tty = out.isatty()
    async with (
        Service(settings) as service,
        LoopWatchdog(settings.watchdog_threshold, on_block=_quiet if tty else None) as watchdog,
    ):
        monitor = service.monitor
        runtime = metrics_history()
        app = create_app(monitor, service.store, watchdog=watchdog, runtime=runtime)
        web = WebServer(app, settings.host, settings.port)
        where = "embedded CQL server" if settings.cassandra is None else "Cassandra"
        sites = "local demo sites" if settings.sites_file is None else str(settings.sites_file)
        print(
            f"Checking {len(monitor.sites)} {sites} every {monitor.interval:g} s, storing in "
            f"{where} at {', '.join(service.contact_points)}:{service.port}.\n"
            f"Status page: {web.url}  (JSON: {web.url}api/status, Prometheus: {web.url}metrics)",
            file=out,
            flush=True,
        )
        progress = Progress(monitor, web.url, out=out, watchdog=watchdog, tty=tty)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(web.serve)
                try:
                    async with anyio.create_task_group() as checks:
                        checks.start_soon(monitor.run)
                        checks.start_soon(progress.run)
                        checks.start_soon(runtime.run)
                        if threading.current_thread() is threading.main_thread():
                            checks.start_soon(_cancel_on_sigterm, checks.cancel_scope)
                        if settings.duration is not None:
                            await anyio.sleep(settings.duration)
                            checks.cancel_scope.cancel()
                finally:
                    web.stop()  # uvicorn finishes the requests in progress, then returns
        finally:
            bridge.metrics.disable(runtime.registry)
            progress.show()
            print(f"Stopped after {monitor.checks} checks ({monitor.stored} stored).", file=out)


def metrics_history() -> RuntimeHistory:
    """bridge's metrics on a registry of the service's own, sampled for the status page."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    bridge.metrics.enable_prometheus(registry)
    return RuntimeHistory(registry)


async def _cancel_on_sigterm(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _quiet(report: BlockReport) -> None:
    """`on_block` on a TTY, where a logged stack would tear the table: it shows the count."""
