"""Metrics of the loop, the threads, the limiters, the watchdog and the adapters.

Off by default, and free when off. Turn them on once, at startup, for the
exporter your service already uses:

    bridge.metrics.enable_prometheus()        # prometheus_client's default registry
    bridge.metrics.enable_opentelemetry()     # the global MeterProvider

For OpenTelemetry, let bridge's histograms through your exporter pre-aggregated
(the cheap way, see below):

    exporter = bridge.metrics.opentelemetry_exporter(OTLPMetricExporter())
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
    bridge.metrics.enable_opentelemetry(provider, histograms=exporter)

What you get (OpenTelemetry names; Prometheus writes dots as underscores and
adds the unit, `bridge_loop_lateness_seconds`):

- `bridge.loop.lateness` (s, histogram): how late each loop runs a task whose
  timer is due, probed 20 times a second by a timer on the loop itself (no
  thread of bridge's wakes for it); per backend and thread.
- `bridge.waker.batch.size` ({completion}, histogram): results per loop wake-up.
- `bridge.pool.threads` ({thread}, by state busy/idle/blocked),
  `bridge.pool.threads.limit`, `bridge.pool.jobs.queued`,
  `bridge.pool.threads.added` (by reason grown/compensated),
  `bridge.pool.threads.retired`: the shared pool and each requests session's threads.
- `bridge.limiter.tokens.limit`, `.tokens.used`, `bridge.limiter.waiting`,
  `bridge.limiter.grants`, and `bridge.limiter.wait.duration` (s, histogram of
  the calls that had to queue), per limiter name.
- `bridge.portal.calls`: coroutine calls sent from sync code (syncify, Portal).
- `bridge.watchdog.blocks` and `bridge.watchdog.blocked_time` (s), per call site.
- `http.client.request.duration` (s, histogram, by method, server.address,
  server.port, status class `2xx`..., error.type) and
  `http.client.active_requests` for `bridge.adapters.requests`.
- `db.client.operation.duration` (s, histogram, by db.system.name, and
  error.type): for `bridge.adapters.cassandra` by coordinator host
  (server.address, server.port), for `bridge.adapters.dbapi` by SQL command
  (db.operation.name: `SELECT`, `BATCH INSERT` for executemany, left out
  for text holding several statements), timed in the connection's thread.
- `bridge.cassandra.requests.active` and `.waiting` for `bridge.adapters.cassandra`.
- `db.client.connection.count` (by state idle/used), `.max`,
  `.pending_requests` and `bridge.dbapi.statements.cancelled` for
  `bridge.adapters.dbapi` pools, named after the driver's module.

Gauges and counters are read from the objects' `statistics()` when the
exporter collects; the histograms are kept in-process (a bisect, two
increments and two comparisons per value) and handed to the exporter at
collection time. OpenTelemetry has two ways to take them:

- `histograms=opentelemetry_exporter(...)`: bridge's own aggregates
  (bucket counts with bridge's bounds, sum, min, max) are added to each
  export by the exporter wrapper; per value, nothing more than Prometheus
  pays. SDK Views and exemplars do not apply to these histograms (they are
  not the SDK's instruments): no renaming, other bounds, exponential
  buckets or dropping them through a View.
- without it (the default, exact replay): each value is also kept and
  handed, exactly, to the SDK's `Histogram.record` on bridge's metrics
  thread, off the loop, so Views (other bounds, exponential histograms)
  apply as if each call site had recorded itself; the SDK costs 5-6 µs a
  value, 6-10% of a Cassandra request (see bench/RESULTS.md, "Metrics").
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bridge import _metrics
from bridge._metrics import Distribution, error_type, status_class
from bridge._metrics_probe import probe

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter
    from prometheus_client import CollectorRegistry

__all__ = [
    "Distribution",
    "db_client_duration",
    "disable",
    "enable_opentelemetry",
    "enable_prometheus",
    "enabled",
    "error_type",
    "http_client_duration",
    "opentelemetry_exporter",
    "recording",
    "status_class",
    "track_cassandra_session",
    "track_db_pool",
    "track_http_session",
]

_lock = threading.Lock()
_prometheus: list[tuple[Any, Any]] = []  # (registry, collector)
_otel: list[Any] = []  # OtelExporter
_otel_now: tuple[Any, ...] = ()  # the same, for the replay: replaced whole, read without `_lock`
#: Every provider bridge made instruments on, enabled or not: the SDK keeps instruments for
#: good, so enabling a provider again switches the same ones back on.
_otel_made: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def enable_prometheus(registry: CollectorRegistry | None = None) -> None:
    """Expose bridge's metrics on `registry` (default: prometheus_client's global one).

    Serve it as you already do (`prometheus_client.start_http_server`,
    `make_asgi_app`, `generate_latest(registry)`); figures are read at each
    scrape. Enabling the same registry twice does nothing.
    """
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            "bridge.metrics.enable_prometheus() needs prometheus_client: "
            "pip install 'bridge[prometheus]'"
        ) from None
    from bridge._metrics_prometheus import BridgeCollector

    target = registry if registry is not None else prometheus_client.REGISTRY
    with _lock:
        if any(r is target for r, _ in _prometheus):
            return
        collector = BridgeCollector()
        target.register(collector)
        _prometheus.append((target, collector))
        _switch()


def enable_opentelemetry(
    meter_provider: MeterProvider | None = None,
    *,
    histograms: MetricExporter | Sequence[MetricExporter] | None = None,
) -> None:
    """Report bridge's metrics through OpenTelemetry (default: the global MeterProvider).

    Gauges and counters become the provider's observable instruments. Histograms:

    - `histograms=` the exporter (or exporters) made by `opentelemetry_exporter`
      that the provider's readers export through: bridge's pre-aggregated
      histograms are added to each of their exports, and the provider gets
      no SDK histogram for them. The cheap way (no per-value SDK call), but
      SDK Views and exemplars do not apply to bridge's histograms.
    - no `histograms` (exact replay): the provider gets SDK histograms and
      every value is handed to them, on bridge's metrics thread; Views and
      the SDK's aggregations apply, at 5-6 µs of CPU a value.

    Needs only `opentelemetry-api` here (the wrapper needs the SDK); the SDK
    and the exporter (OTLP, ...) are the application's choice. Enabling the
    same provider twice does nothing.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError:
        raise ImportError(
            "bridge.metrics.enable_opentelemetry() needs opentelemetry-api: "
            "pip install 'bridge[otel]'"
        ) from None
    from bridge import __version__
    from bridge._metrics_catalog import OBSERVABLES
    from bridge._metrics_otel import OtelExporter

    wrappers = _wrappers(histograms)
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    replay = None if wrappers else _replay_otel
    with _lock:
        if any(e.provider is provider for e in _otel):
            return
        for wrapper in wrappers:
            if wrapper.bound:
                raise ValueError(
                    "this exporter already carries bridge's histograms for another "
                    "MeterProvider: wrap each reader's exporter once"
                )
        exporter = _otel_made.get(provider)
        if exporter is None:
            exporter = OtelExporter(provider, OBSERVABLES, __version__, replay, wrappers)
            _otel_made[provider] = exporter
        else:
            exporter.reuse(replay, wrappers)
        _otel.append(exporter)
        _switch()
        for wrapper in wrappers:
            wrapper.bind(__version__)


def opentelemetry_exporter(exporter: MetricExporter) -> MetricExporter:
    """`exporter`, wrapped to also export bridge's histograms from bridge's own aggregates.

    Give the result to the reader and to `enable_opentelemetry`::

        exporter = bridge.metrics.opentelemetry_exporter(OTLPMetricExporter())
        provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)])
        bridge.metrics.enable_opentelemetry(provider, histograms=exporter)

    Each export then carries, in scope "bridge", one explicit-bucket histogram
    per figure (`bridge.loop.lateness`, `db.client.operation.duration`, ...)
    with exact counts, sums, min and max, in bridge's buckets, cumulative or
    delta as `exporter` prefers for histograms. The recording thread pays
    what Prometheus pays (~0.35 µs a value); the export pays a copy of each
    series. SDK Views and exemplars do not apply to these histograms; for
    those, leave `histograms=` out (exact replay, 5-6 µs a value).
    `force_flush` and `shutdown` go to `exporter`; until bridge is enabled
    with it, exports pass through unchanged.
    """
    try:
        from bridge._metrics_otel_export import HistogramExporter
    except ImportError:
        raise ImportError(
            "bridge.metrics.opentelemetry_exporter() needs opentelemetry-sdk: "
            "pip install opentelemetry-sdk"
        ) from None
    return HistogramExporter(exporter)


def _wrappers(histograms: object) -> list[Any]:
    if histograms is None:
        return []
    from bridge._metrics_otel_export import HistogramExporter

    found = list(histograms) if isinstance(histograms, (list, tuple)) else [histograms]
    for wrapper in found:
        if not isinstance(wrapper, HistogramExporter):
            raise TypeError(
                f"histograms= takes the exporter made by bridge.metrics.opentelemetry_exporter("
                f"your_exporter), not {type(wrapper).__name__}: wrap it, and give the wrapper to "
                "the reader too"
            )
    return found


def disable(target: object = None) -> None:
    """Stop exporting to `target` (a registry or meter provider given to `enable_*`), or,
    by default, to all of them.

    Once no exporter is left, measuring stops: the lateness probe ends, the
    histograms are forgotten, and the hot path is back to no work.
    """
    with _lock:
        for entry in [e for e in _prometheus if target is None or e[0] is target]:
            entry[0].unregister(entry[1])
            _prometheus.remove(entry)
        for exporter in [e for e in _otel if target is None or e.provider is target]:
            exporter.active = False
            for wrapper in exporter.wrappers:
                wrapper.unbind()
            _otel.remove(exporter)
        _switch()
        if not _metrics.on:
            for dist in _metrics.DISTRIBUTIONS:
                dist.reset()
            for counter in _metrics.COUNTERS:
                counter.reset()


def enabled() -> bool:
    """True while at least one exporter is enabled."""
    return _metrics.on


def _switch() -> None:
    """Under `_lock`: the hooks, the probe and the OpenTelemetry replay follow the exporters."""
    global _otel_now
    _otel_now = tuple(e for e in _otel if e.replays)
    keep = bool(_otel_now)  # per-value lists only for the exact replay
    for dist in _metrics.DISTRIBUTIONS:
        dist.keep_values = keep
        if not keep:
            dist.drain()  # nobody left to hand them to
    _metrics.flush_kept = _replay_soon if keep else None
    if keep and _replay_otel not in probe.ticks:
        probe.ticks.append(_replay_otel)
    elif not keep and _replay_otel in probe.ticks:
        probe.ticks.remove(_replay_otel)
    was_on, _metrics.on = _metrics.on, bool(_prometheus or _otel)
    if _metrics.on and not was_on:
        for dist in _metrics.DISTRIBUTIONS:
            dist.reset()  # cumulative from now: the start time an export reports
    if _metrics.on:
        probe.start()
    else:
        probe.stop()


_replaying_soon = threading.Lock()


def _replay_soon() -> None:
    """A distribution kept `KEEP_MAX` values: the metrics thread is late, so replay on a thread
    of its own now. Not on the recording thread, which may be a loop's: the SDK's 6-7 µs a
    value would block it for a long stretch; a thread of its own yields the GIL as any does."""
    if not _replaying_soon.acquire(blocking=False):
        return  # one is on its way

    def run() -> None:
        try:
            _replay_otel()
        finally:
            _replaying_soon.release()

    threading.Thread(target=run, name="bridge-metrics-replay", daemon=True).start()


def _replay_otel() -> None:
    """Hand the values the distributions kept to every OpenTelemetry exporter's histograms."""
    from bridge._metrics_otel import replay

    # Not under `_lock`: `disable()` holds it while it stops the thread that calls this.
    replay(_otel_now)


# -- for adapters (bridge's own and yours): what a driver call records ----------------------

#: `record(seconds, (method, host, port, status class or None, error.type or None))`
http_client_duration = _metrics.http_duration
#: `record(seconds, (db system, operation name or None, host or None, port or None,
#: error.type or None))`
db_client_duration = _metrics.db_duration


def recording() -> bool:
    """True while metrics are on: check it before timing a call, so that off costs nothing."""
    return _metrics.on


def track_http_session(session: object) -> None:
    """Count `session` (with `.limiter` and `.thread_statistics()`) in the HTTP gauges; weakly."""
    _metrics.track(_metrics.http_sessions, session)


def track_cassandra_session(session: object) -> None:
    """Count `session` (`.statistics()` as Cassandra's AsyncSession) in its gauges; weakly."""
    _metrics.track(_metrics.cql_sessions, session)


def track_db_pool(pool: object, name: str) -> None:
    """Count `pool` (`.statistics()` as bridge.adapters.dbapi's Pool) in the
    `db.client.connection.*` gauges under `name` (the driver's, say); weakly."""
    _metrics.track_named(_metrics.db_pools, pool, name)
