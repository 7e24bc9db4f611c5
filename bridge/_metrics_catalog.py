"""Every figure bridge exports, and how each one is read at collection time.

Gauges and counters here are observable: their `read()` runs when an
exporter collects (a Prometheus scrape, an OpenTelemetry reader's cycle) and
copies the `statistics()` snapshots the objects keep anyway, so measuring
them adds nothing to the calls themselves. The distributions and the event
counters that need a hook live in `_metrics`.

Names and units follow OpenTelemetry's semantic conventions where one
exists (`http.client.request.duration`, `http.client.active_requests`,
`db.client.operation.duration`, units `s` and `{thing}`); the rest are
`bridge.*`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bridge import _metrics
from bridge._metrics import Key

Kind = Literal["gauge", "counter", "updowncounter"]


@dataclass(frozen=True)
class Observable:
    """One instrument read at collection time: values per attribute set."""

    name: str
    unit: str
    description: str
    kind: Kind
    attributes: tuple[str, ...]
    read: Callable[[], dict[Key, float]]


def _add(values: dict[Key, float], key: Key, amount: float) -> None:
    values[key] = values.get(key, 0) + amount


# -- worker pools ----------------------------------------------------------------------------


def _pools() -> list[tuple[str, Any]]:
    """(name, statistics) of the shared pool and of each requests session's own threads."""
    from bridge._pool import default_pool

    found: list[tuple[str, Any]] = [("default", default_pool().statistics())]
    found.extend(("requests", s.thread_statistics()) for s in _metrics.live(_metrics.http_sessions))
    return found


def _pool_threads() -> dict[Key, float]:
    values: dict[Key, float] = {}
    for name, s in _pools():
        _add(values, (name, "idle"), s.idle)
        _add(values, (name, "blocked"), s.blocked)  # parked in bridge.blocking()
        _add(values, (name, "busy"), s.running)
    return values


def _pool_limit() -> dict[Key, float]:
    values: dict[Key, float] = {}
    for name, s in _pools():
        _add(values, (name,), s.max_workers)
    return values


def _pool_queued() -> dict[Key, float]:
    values: dict[Key, float] = {}
    for name, s in _pools():
        _add(values, (name,), s.queued)
    return values


def _pool_growth() -> dict[Key, float]:
    """Threads added past `core`, by reason: queued work with the CPU free (`grown`), or a
    thread parked in `bridge.blocking()` while jobs waited (`compensated`)."""
    values: dict[Key, float] = {}
    for name, s in _pools():
        _add(values, (name, "grown"), s.grown)
        _add(values, (name, "compensated"), s.compensated)
    return values


def _pool_retired() -> dict[Key, float]:
    values: dict[Key, float] = {}
    for name, s in _pools():
        _add(values, (name,), s.retired)
    return values


# -- limiters --------------------------------------------------------------------------------


def _limiter_figure(field: str) -> Callable[[], dict[Key, float]]:
    def read() -> dict[Key, float]:
        values: dict[Key, float] = {}
        for limiter in _metrics.live(_metrics.limiters):
            s = limiter.statistics()
            _add(values, (limiter.name or "",), getattr(s, field))
        return values

    return read


# -- the watchdog ----------------------------------------------------------------------------


def _blocks(field: str) -> Callable[[], dict[Key, float]]:
    def read() -> dict[Key, float]:
        values: dict[Key, float] = {}
        for statistics in _metrics.live(_metrics.block_statistics):
            for entry in statistics.sites():
                site = entry.site
                _add(values, (site.function, site.filename, site.lineno), getattr(entry, field))
        return values

    return read


# -- adapters --------------------------------------------------------------------------------


def _http_active() -> dict[Key, float]:
    total = sum(s.limiter.statistics().running for s in _metrics.live(_metrics.http_sessions))
    return {(): total}


def _cql(field: str) -> Callable[[], dict[Key, float]]:
    def read() -> dict[Key, float]:
        total = sum(getattr(s.statistics(), field) for s in _metrics.live(_metrics.cql_sessions))
        return {("cassandra",): total}

    return read


def _db_connections() -> dict[Key, float]:
    values: dict[Key, float] = {}
    for pool, name in _metrics.live_named(_metrics.db_pools):
        s = pool.statistics()
        _add(values, (name, "idle"), s.idle)
        _add(values, (name, "used"), s.in_use)
    return values


def _db_pool(field: str) -> Callable[[], dict[Key, float]]:
    def read() -> dict[Key, float]:
        values: dict[Key, float] = {}
        for pool, name in _metrics.live_named(_metrics.db_pools):
            _add(values, (name,), getattr(pool.statistics(), field))
        return values

    return read


_SITE = ("code.function.name", "code.file.path", "code.line.number")
_DB_POOL = ("db.client.connection.pool.name",)

OBSERVABLES: tuple[Observable, ...] = (
    Observable(
        "bridge.pool.threads",
        "{thread}",
        "Worker threads alive, by state (busy running a job, idle, blocked waiting in "
        "bridge.blocking())",
        "updowncounter",
        ("bridge.pool.name", "bridge.pool.thread.state"),
        _pool_threads,
    ),
    Observable(
        "bridge.pool.threads.limit",
        "{thread}",
        "The most worker threads the pool may run",
        "updowncounter",
        ("bridge.pool.name",),
        _pool_limit,
    ),
    Observable(
        "bridge.pool.jobs.queued",
        "{job}",
        "Jobs waiting for a worker thread",
        "updowncounter",
        ("bridge.pool.name",),
        _pool_queued,
    ),
    Observable(
        "bridge.pool.threads.added",
        "{thread}",
        "Threads the pool added beyond its core size, by reason",
        "counter",
        ("bridge.pool.name", "bridge.pool.growth.reason"),
        _pool_growth,
    ),
    Observable(
        "bridge.pool.threads.retired",
        "{thread}",
        "Threads that exited (idle past the timeout, or surplus after bridge.blocking())",
        "counter",
        ("bridge.pool.name",),
        _pool_retired,
    ),
    Observable(
        "bridge.limiter.tokens.limit",
        "{token}",
        "Tokens of each limiter (calls allowed at once), summed by limiter name",
        "updowncounter",
        ("bridge.limiter.name",),
        _limiter_figure("tokens"),
    ),
    Observable(
        "bridge.limiter.tokens.used",
        "{token}",
        "Tokens held now: calls running, or granted and about to run",
        "updowncounter",
        ("bridge.limiter.name",),
        _limiter_figure("running"),
    ),
    Observable(
        "bridge.limiter.waiting",
        "{call}",
        "Calls queued for a token",
        "updowncounter",
        ("bridge.limiter.name",),
        _limiter_figure("waiting"),
    ),
    Observable(
        "bridge.limiter.grants",
        "{token}",
        "Tokens granted since each limiter was made",
        "counter",
        ("bridge.limiter.name",),
        _limiter_figure("total"),
    ),
    Observable(
        "bridge.watchdog.blocks",
        "{episode}",
        "Episodes of a loop blocked past the watchdog's threshold, by call site",
        "counter",
        _SITE,
        _blocks("count"),
    ),
    Observable(
        "bridge.watchdog.blocked_time",
        "s",
        "Time loops were blocked past the watchdog's threshold, by call site",
        "counter",
        _SITE,
        _blocks("total"),
    ),
    Observable(
        "http.client.active_requests",
        "{request}",
        "HTTP requests of bridge.adapters.requests sessions in flight",
        "updowncounter",
        (),
        _http_active,
    ),
    Observable(
        "bridge.cassandra.requests.active",
        "{request}",
        "Cassandra requests of bridge.adapters.cassandra sessions in flight",
        "updowncounter",
        ("db.system.name",),
        _cql("in_flight"),
    ),
    Observable(
        "db.client.connection.count",
        "{connection}",
        "Connections of bridge.adapters.dbapi pools, by state (idle, used)",
        "updowncounter",
        (*_DB_POOL, "db.client.connection.state"),
        _db_connections,
    ),
    Observable(
        "db.client.connection.max",
        "{connection}",
        "The most connections each bridge.adapters.dbapi pool may open",
        "updowncounter",
        _DB_POOL,
        _db_pool("max_size"),
    ),
    Observable(
        "db.client.connection.pending_requests",
        "{request}",
        "Tasks waiting for a connection of a bridge.adapters.dbapi pool",
        "updowncounter",
        _DB_POOL,
        _db_pool("waiting"),
    ),
    Observable(
        "bridge.dbapi.statements.cancelled",
        "{statement}",
        "Statements stopped on the server after their caller gave up",
        "counter",
        _DB_POOL,
        _db_pool("cancelled"),
    ),
    Observable(
        "bridge.cassandra.requests.waiting",
        "{request}",
        "Cassandra requests queued for a session's in-flight token",
        "updowncounter",
        ("db.system.name",),
        _cql("waiting"),
    ),
)

# The event counters kept by hooks are read like the rest.
OBSERVABLES += tuple(
    Observable(c.name, c.unit, c.description, "counter", c.attributes, c.snapshot)
    for c in _metrics.COUNTERS
)
