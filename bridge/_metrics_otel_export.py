"""OpenTelemetry histograms from bridge's own aggregates, added by a `MetricExporter` wrapper.

The SDK's `Histogram.record` costs 5-6 µs a value, six percent of a Cassandra
request. A `Distribution` already holds what an explicit-bucket histogram
point is made of (bucket counts, sum, min, max, per attribute set), so this
wrapper builds those points itself at each export and hands them, beside the
SDK's own metrics, to the exporter it wraps: no SDK call and no kept value
per recording, only a `read` of each distribution per export. It is what the
specification calls a `MetricProducer`, which the Python SDK does not have
(opentelemetry-python #4768); an exporter is the one place where a whole
export passes through user code.

What the SDK would do and this does not: apply Views (renames, other
bounds, an exponential histogram, attribute filters, Drop), the exporter's
preferred aggregation for histograms, and exemplars to bridge's histograms.
Those need the exact replay of `_metrics_otel`.

Temporality is the wrapped exporter's preference for histograms, as the
reader would apply it: cumulative points run from the distribution's start;
delta points from this exporter's previous export, with the min and max of
that interval (each wrapper has its own `Distribution` window for them).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from bridge import _metrics
from bridge._metrics import Key
from bridge._metrics_otel import Attributes, attributes

SCOPE = "bridge"


class HistogramExporter(MetricExporter):
    """Exports what `inner` is given, plus bridge's histograms while bridge is enabled with it.

    Made by `bridge.metrics.opentelemetry_exporter`; `bridge.metrics.enable_opentelemetry(
    provider, histograms=this)` binds it, `disable` unbinds it. Unbound, it passes
    every export through unchanged.
    """

    def __init__(self, inner: MetricExporter) -> None:
        # The reader reads its temporality and aggregation preferences from the exporter
        # it is given (these two attributes, as the SDK's readers do): the wrapper has the
        # wrapped one's. An exporter that never called MetricExporter.__init__ has none.
        temporality = getattr(inner, "_preferred_temporality", None)
        super().__init__(
            preferred_temporality=temporality,
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self.inner = inner
        preferred = temporality or {}
        self.temporality = preferred.get(HistogramInstrument, AggregationTemporality.CUMULATIVE)
        self._lock = threading.Lock()
        self.bound = False
        self._version = ""
        # Delta only: per distribution, its min/max window and the counts and sum last sent.
        self._windows: list[dict[Key, list[float]]] = []
        self._sent: list[tuple[int, dict[Key, tuple[list[int], float]]]] = []
        self._since_ns = 0
        self._attributes: dict[tuple[int, Key], Attributes] = {}  # built once per series

    @property
    def delta(self) -> bool:
        return self.temporality is AggregationTemporality.DELTA

    def bind(self, version: str) -> None:
        """Start adding bridge's histograms (under `bridge.metrics`' lock)."""
        with self._lock:
            self._version = version
            if self.delta:
                # The first delta export covers what is recorded from now on.
                self._windows = [dist.open_window() for dist in _metrics.DISTRIBUTIONS]
                self._since_ns = time.time_ns()
                self._sent = [
                    _counts(dist.read(window))
                    for dist, window in zip(_metrics.DISTRIBUTIONS, self._windows, strict=True)
                ]
            self.bound = True

    def unbind(self) -> None:
        with self._lock:
            self.bound = False
            for dist, window in zip(_metrics.DISTRIBUTIONS, self._windows, strict=False):
                dist.close_window(window)  # delta only: none for cumulative
            self._windows, self._sent = [], []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        with self._lock:
            if self.bound:
                metrics_data = self._add_histograms(metrics_data)
        return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.unbind()
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def _histograms(self) -> list[Metric]:
        """One `Metric` per distribution with points to send (under `_lock`)."""
        now = time.time_ns()
        metrics = []
        for index, dist in enumerate(_metrics.DISTRIBUTIONS):
            if self.delta:
                points = self._delta_points(index, now)
            else:
                started, series = dist.read()
                points = [
                    self._point(index, key, started, now, counts, total, lo, hi)
                    for key, (counts, total, lo, hi) in series.items()
                ]
            if points:
                metrics.append(
                    Metric(
                        name=dist.name,
                        description=dist.description,
                        unit=dist.unit,
                        data=Histogram(
                            data_points=points, aggregation_temporality=self.temporality
                        ),
                    )
                )
        if self.delta:
            self._since_ns = now
        return metrics

    def _delta_points(self, index: int, now: int) -> list[HistogramDataPoint]:
        dist = _metrics.DISTRIBUTIONS[index]
        started, series = dist.read(self._windows[index])
        sent_started, sent = self._sent[index]
        if started != sent_started:
            sent = {}  # the distribution was reset: everything it holds is new
        self._sent[index] = (started, {key: (c, total) for key, (c, total, _, _) in series.items()})
        points = []
        for key, (counts, total, lo, hi) in series.items():
            before = sent.get(key)
            if before is not None:
                counts = [now_ - then for now_, then in zip(counts, before[0], strict=True)]
                total -= before[1]
            if sum(counts):  # a series with nothing new is left out, as the SDK does
                points.append(self._point(index, key, self._since_ns, now, counts, total, lo, hi))
        return points

    def _point(
        self,
        index: int,
        key: Key,
        start_ns: int,
        now: int,
        counts: list[int],
        total: float,
        lo: float,
        hi: float,
    ) -> HistogramDataPoint:
        attrs = self._attributes.get((index, key))
        if attrs is None:
            names = _metrics.DISTRIBUTIONS[index].attributes
            attrs = self._attributes[(index, key)] = attributes(names, key)
        return HistogramDataPoint(
            attributes=attrs,
            start_time_unix_nano=start_ns,
            time_unix_nano=now,
            count=sum(counts),
            sum=total,
            bucket_counts=counts,
            explicit_bounds=list(_metrics.DISTRIBUTIONS[index].bounds),
            min=lo,
            max=hi,
        )

    def _add_histograms(self, data: MetricsData) -> MetricsData:
        """`data` with bridge's histograms added to its "bridge" scope (made if absent)."""
        metrics = self._histograms()
        if not metrics:
            return data
        resources = list(data.resource_metrics)
        if not resources:
            resources = [
                ResourceMetrics(resource=Resource.create(), scope_metrics=[], schema_url="")
            ]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope.name == SCOPE:
                scopes[i] = ScopeMetrics(
                    scope=scope.scope,
                    metrics=[*scope.metrics, *metrics],
                    schema_url=scope.schema_url,
                )
                break
        else:
            scopes.append(
                ScopeMetrics(
                    scope=InstrumentationScope(SCOPE, self._version), metrics=metrics, schema_url=""
                )
            )
        resources[0] = ResourceMetrics(
            resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=resources)


def _counts(
    read: tuple[int, dict[Key, tuple[list[int], float, float, float]]],
) -> tuple[int, dict[Key, tuple[list[int], float]]]:
    started, series = read
    return started, {key: (counts, total) for key, (counts, total, _, _) in series.items()}
