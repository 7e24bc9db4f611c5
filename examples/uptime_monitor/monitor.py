"""`Monitor`: checks every site on its own schedule, many at once, and records each check.

One task per site keeps a slow or hanging site from delaying the others; the
HTTP session's `Limiter` caps how many requests are in flight at once, so ten
thousand sites cost ten thousand sleeping tasks and `concurrency` threads.
Everything here is anyio, so the monitor runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import requests

from bridge.adapters.requests import AsyncSession

if TYPE_CHECKING:
    from examples.uptime_monitor.store import CheckStore

__all__ = ["CheckResult", "Monitor", "Outage", "Site", "SiteState", "describe_error", "iso"]

_RECENT = 20  # latencies kept in memory per site, for the terminal's sparklines
_START_CHUNK = 500  # site tasks started between two yields to the loop


def iso(moment: dt.datetime | None) -> str | None:
    """A UTC timestamp as JSON wants it."""
    return (
        None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def utc_now() -> dt.datetime:
    """Now, at Cassandra's precision (milliseconds), so memory and storage agree."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Site:
    """A site to watch: a short name (used in URLs and as the partition key) and its URL."""

    name: str
    url: str


@dataclass(frozen=True)
class CheckResult:
    """One visit to one site: up or not, and what it looked like."""

    site: str
    checked_at: dt.datetime
    ok: bool
    status: int | None  #: HTTP status, None when no answer came
    latency_ms: float | None  #: time to the response's headers, None when none came
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "checked_at": iso(self.checked_at),
            "ok": self.ok,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass
class Outage:
    """A run of failed checks of one site, from the first failure to the next success."""

    site: str
    started_at: dt.datetime
    first_error: str
    failed_checks: int = 1
    ended_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "first_error": self.first_error,
            "failed_checks": self.failed_checks,
            "seconds": None
            if self.ended_at is None
            else round((self.ended_at - self.started_at).total_seconds(), 3),
        }


@dataclass
class SiteState:
    """What the monitor knows about one site since it started."""

    site: Site
    checks: int = 0
    failures: int = 0
    last: CheckResult | None = None
    outage: Outage | None = None  #: the open outage, while the site is down
    outages: int = 0
    recent: deque[float | None] = field(default_factory=lambda: deque(maxlen=_RECENT))

    @property
    def up(self) -> bool | None:
        return None if self.last is None else self.last.ok

    @property
    def uptime_percent(self) -> float | None:
        if not self.checks:
            return None
        return round(100.0 * (self.checks - self.failures) / self.checks, 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.site.name,
            "url": self.site.url,
            "up": self.up,
            "checks": self.checks,
            "failures": self.failures,
            "uptime_percent": self.uptime_percent,
            "outages": self.outages,
            "down_since": iso(self.outage.started_at) if self.outage else None,
            "last": self.last.to_json() if self.last else None,
        }


def describe_error(exc: requests.RequestException, timeout: float) -> str:
    """A short reason for a failed check; requests' own messages run to several lines."""
    if isinstance(exc, requests.Timeout):
        return f"timeout after {timeout:g} s"
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "DNS lookup failed"),
        ("nodename nor servname", "DNS lookup failed"),
        ("Temporary failure in name resolution", "DNS lookup failed"),
        ("without response", "connection closed without a response"),
        ("Connection reset", "connection reset"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not valid"),
    ):
        if needle in text:
            return reason
    return f"{type(exc).__name__}: {text[:200]}"


class Monitor:
    """Checks `sites` every `interval` seconds through `http`; stores every check in `store`.

    `run()` checks until cancelled. The state (`states`, `outages`, counters)
    is read on the loop that runs the monitor: by the JSON API and the
    terminal display. `wait_for(predicate)` wakes after each check.
    """

    def __init__(
        self,
        sites: Iterable[Site],
        http: AsyncSession,
        store: CheckStore,
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self.sites = list(sites)
        if not self.sites:
            raise ValueError("the monitor needs at least one site to check")
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique: {names}")
        if not interval > 0 or not timeout > 0:
            raise ValueError("interval and timeout must be positive numbers of seconds")
        self.http = http
        self.store = store
        self.interval = interval
        self.timeout = timeout
        self.states = {site.name: SiteState(site) for site in self.sites}
        self.outages: deque[Outage] = deque(maxlen=200)  #: latest first
        self.checks = 0
        self.stored = 0
        self.store_errors = 0
        self.last_store_error: str | None = None
        self.started_at: dt.datetime | None = None
        self._changed: anyio.Event | None = None

    # -- checking ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Check every site on its schedule until cancelled."""
        self.started_at = utc_now()
        async with anyio.create_task_group() as tg:
            for i, site in enumerate(self.sites):
                tg.start_soon(self._watch, site, name=f"check {site.name}")
                if i % _START_CHUNK == _START_CHUNK - 1:
                    # Starting 10,000 tasks in one go would block the loop.
                    await anyio.lowlevel.checkpoint()

    async def _watch(self, site: Site) -> None:
        next_at = anyio.current_time()
        while True:
            await self.check(site)
            next_at += self.interval
            now = anyio.current_time()
            if next_at < now:  # the check outlasted the interval: skip the missed slots
                next_at += math.ceil((now - next_at) / self.interval) * self.interval
            await anyio.sleep(next_at - now)

    async def check(self, site: Site) -> CheckResult:
        """Visit `site` once, record the result in memory and in Cassandra."""
        checked_at = utc_now()
        try:
            response = await self.http.get(site.url, timeout=self.timeout)
        except requests.RequestException as exc:
            result = CheckResult(
                site.name, checked_at, False, None, None, describe_error(exc, self.timeout)
            )
        else:
            latency = round(response.elapsed.total_seconds() * 1000, 2)
            ok = response.status_code < 400
            error = None if ok else f"HTTP {response.status_code} {response.reason or ''}".strip()
            result = CheckResult(site.name, checked_at, ok, response.status_code, latency, error)
        self._note(result)
        try:
            await self.store.record(result)
        except Exception as exc:  # a storage hiccup must not stop the monitoring
            self.store_errors += 1
            self.last_store_error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            self.stored += 1
        self._notify()
        return result

    def _note(self, result: CheckResult) -> None:
        state = self.states[result.site]
        self.checks += 1
        state.checks += 1
        state.last = result
        state.recent.append(result.latency_ms if result.ok else None)
        if result.ok:
            if state.outage is not None:
                state.outage.ended_at = result.checked_at
                state.outage = None
            return
        state.failures += 1
        if state.outage is None:
            state.outage = Outage(result.site, result.checked_at, result.error or "failed")
            state.outages += 1
            self.outages.appendleft(state.outage)
        else:
            state.outage.failed_checks += 1

    # -- watching the monitor ------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` is true; it is tried again after every check."""
        while not predicate():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def snapshot(self) -> dict[str, Any]:
        """The monitor's state as the JSON API serves it."""
        states = list(self.states.values())
        return {
            "started_at": iso(self.started_at),
            "interval": self.interval,
            "timeout": self.timeout,
            "sites_up": sum(1 for s in states if s.up),
            "sites_down": sum(1 for s in states if s.up is False),
            "checks": self.checks,
            "stored": self.stored,
            "store_errors": self.store_errors,
            "last_store_error": self.last_store_error,
            "sites": [s.to_json() for s in states],
            "outages": [o.to_json() for o in self.outages],
        }
