"""The exporters under test, read the way a user's backend reads them: the OpenTelemetry
SDK's in-memory reader, and prometheus_client's text parser on `/metrics` over HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.export import Histogram as SdkHistogramData
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import bridge
import bridge.metrics
from bridge import _metrics
from bridge._metrics_catalog import OBSERVABLES
from bridge._metrics_prometheus import metric_name

UNITS = {
    "bridge.loop.lateness": "s",
    "bridge.limiter.wait.duration": "s",
    "bridge.watchdog.blocked_time": "s",
    "http.client.request.duration": "s",
    "db.client.operation.duration": "s",
}


class Histogram:
    def __init__(self, count: int, total: float, cumulative: dict[float, int]) -> None:
        self.count = count
        self.sum = total
        self.cumulative = cumulative  #: upper bound -> values at or below it

    def above(self, bound: float) -> int:
        """Values greater than `bound` (a bucket bound)."""
        return self.count - self.cumulative[bound]


class Exporter:
    """One exporter under test: `collect()` reads every figure the way a user's backend would."""

    name = ""

    async def collect(self) -> Collected:
        raise NotImplementedError

    def close(self) -> None:
        bridge.metrics.disable()


class Collected:
    def __init__(self, series: dict[str, list[tuple[dict[str, str], Any]]]) -> None:
        self.series = series  # OpenTelemetry name -> [(attributes as strings, value)]

    def _matching(self, name: str, attrs: dict[str, object]) -> list[Any]:
        want = {k: str(v) for k, v in attrs.items()}
        return [
            value
            for labels, value in self.series.get(name, [])
            if all(labels.get(k) == v for k, v in want.items())
        ]

    def value(self, name: str, **attrs: object) -> float:
        """Sum of the matching series (attribute names with `_` for `.`)."""
        return float(sum(self._matching(name, _dotted(attrs))))

    def histogram(self, name: str, **attrs: object) -> Histogram:
        found = self._matching(name, _dotted(attrs))
        assert len(found) == 1, f"{name} {attrs}: {len(found)} series in {self.series.get(name)}"
        return found[0]  # type: ignore[no-any-return]


def _dotted(attrs: dict[str, object]) -> dict[str, object]:
    return {k.replace("__", "."): v for k, v in attrs.items()}


class Otel(Exporter):
    name = "otel"

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        bridge.metrics.enable_opentelemetry(self.provider)

    async def collect(self) -> Collected:
        data = self.reader.get_metrics_data()
        series: dict[str, list[tuple[dict[str, str], Any]]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "bridge"
                for metric in scope.metrics:
                    assert metric.unit == UNITS.get(metric.name, metric.unit)
                    for point in metric.data.data_points:
                        labels = {k: str(v) for k, v in point.attributes.items()}
                        series.setdefault(metric.name, []).append((labels, _value(point)))
        return Collected(series)

    def close(self) -> None:
        super().close()
        self.provider.shutdown()


def _value(point: Any) -> Any:
    if isinstance(point, HistogramDataPoint):
        cumulative, running = {}, 0
        for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
            running += count
            cumulative[float(bound)] = running
        return Histogram(point.count, point.sum, cumulative)
    return point.value


class Prometheus(Exporter):
    name = "prometheus"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        bridge.metrics.enable_prometheus(self.registry)
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=30) as response:
            return response.read().decode()  # type: ignore[no-any-return]

    async def collect(self) -> Collected:
        text = await bridge.to_thread(self.scrape)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        series: dict[str, list[tuple[dict[str, str], Any]]] = {}
        for otel_name, spec_unit in _all_names():
            prom = metric_name(otel_name, spec_unit)
            family = families.get(prom.removesuffix("_total"))
            if family is None:
                continue
            for labels, value in _prom_series(family):
                series.setdefault(otel_name, []).append((labels, value))
        return Collected(series)

    def close(self) -> None:
        super().close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(30)


def _all_names() -> Iterator[tuple[str, str]]:
    for spec in (*OBSERVABLES, *_metrics.DISTRIBUTIONS):
        yield spec.name, spec.unit


def _prom_series(family: Any) -> Iterator[tuple[dict[str, str], Any]]:
    """Prometheus labels back to OpenTelemetry attribute names; histograms folded."""

    def attrs(labels: dict[str, str]) -> dict[str, str]:
        return {_OTEL_ATTR.get(k, k): v for k, v in labels.items() if k != "le" and v != ""}

    if family.type != "histogram":
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                yield attrs(sample.labels), sample.value
        return
    folded: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        key = tuple(sorted(attrs(sample.labels).items()))
        entry = folded.setdefault(key, {"cumulative": {}})
        if sample.name.endswith("_bucket"):
            if sample.labels["le"] != "+Inf":
                entry["cumulative"][float(sample.labels["le"])] = int(sample.value)
        elif sample.name.endswith("_count"):
            entry["count"] = int(sample.value)
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
    for key, entry in folded.items():
        yield dict(key), Histogram(entry["count"], entry["sum"], entry["cumulative"])


_OTEL_ATTR = {
    name.replace(".", "_"): name
    for dist in (*_metrics.DISTRIBUTIONS, *_metrics.COUNTERS)
    for name in dist.attributes
}
_OTEL_ATTR.update(
    {name.replace(".", "_"): name for spec in OBSERVABLES for name in spec.attributes}
)


EXPORTERS = ["otel", "prometheus"]


def open_exporter(name: str) -> Iterator[Exporter]:
    """For a fixture parametrised over EXPORTERS: enabled for the test, disabled after it."""
    chosen: Exporter = Otel() if name == "otel" else Prometheus()
    try:
        yield chosen
    finally:
        chosen.close()


# -- bridge's pre-aggregated histograms through an exporter wrapper ----------------------------


class KeepingExporter(MetricExporter):
    """A real exporter that keeps every export it is given and counts flushes and shutdowns."""

    def __init__(self, temporality: AggregationTemporality | None = None) -> None:
        preferred = None if temporality is None else {SdkHistogram: temporality}
        super().__init__(preferred_temporality=preferred)
        self.exports: list[MetricsData] = []
        self.flushes = 0
        self.shutdowns = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self.flushes += 1
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shutdowns += 1


Points = dict[frozenset[tuple[str, Any]], HistogramDataPoint]


class Wrapped:
    """bridge on a provider whose reader (interval: never) exports through the wrapper.

    With `oracle`, a second provider takes the same histograms by exact replay into the
    SDK's own aggregation, with the same bounds and temporality: what the wrapper sends
    must equal what the SDK makes of every single value.
    """

    def __init__(
        self,
        temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
        *,
        oracle: bool = True,
    ) -> None:
        self.temporality = temporality
        self.inner = KeepingExporter(temporality)
        self.wrapper = bridge.metrics.opentelemetry_exporter(self.inner)
        self.reader = PeriodicExportingMetricReader(self.wrapper, export_interval_millis=1e9)
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.oracle_reader: InMemoryMetricReader | None = None
        self.oracle_provider: MeterProvider | None = None
        bridge.metrics.enable_opentelemetry(self.provider, histograms=self.wrapper)
        if oracle:
            self.oracle_reader = InMemoryMetricReader({SdkHistogram: temporality})
            self.oracle_provider = MeterProvider(metric_readers=[self.oracle_reader])
            bridge.metrics.enable_opentelemetry(self.oracle_provider)

    def export(self) -> MetricsData:
        """Flush the reader: one export through the wrapper; what the inner exporter got."""
        before = len(self.inner.exports)
        self.reader.force_flush()
        assert len(self.inner.exports) == before + 1
        return self.inner.exports[-1]

    def oracle(self) -> MetricsData:
        assert self.oracle_reader is not None
        data = self.oracle_reader.get_metrics_data()
        assert data is not None
        return data

    def close(self) -> None:
        bridge.metrics.disable()
        self.provider.shutdown()
        if self.oracle_provider is not None:
            self.oracle_provider.shutdown()


def bridge_metrics(data: MetricsData) -> list[Any]:
    """Every metric in scope "bridge"."""
    return [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == "bridge"
        for metric in scope.metrics
    ]


def histogram_points(data: MetricsData, name: str) -> Points:
    """The points of histogram `name` in scope "bridge", by attribute set."""
    found: Points = {}
    for metric in bridge_metrics(data):
        if metric.name == name:
            assert isinstance(metric.data, SdkHistogramData)
            for point in metric.data.data_points:
                found[frozenset(point.attributes.items())] = point
    return found


def same_histogram(ours: HistogramDataPoint, sdk: HistogramDataPoint) -> None:
    """The wrapper's point holds what the SDK's own aggregation made of the same values."""
    assert (ours.count, list(ours.bucket_counts)) == (sdk.count, list(sdk.bucket_counts))
    assert list(ours.explicit_bounds) == list(sdk.explicit_bounds)
    assert ours.sum == pytest.approx(sdk.sum, rel=1e-12, abs=1e-12)
    assert (ours.min, ours.max) == (sdk.min, sdk.max)


TEMPORALITIES = [
    pytest.param(AggregationTemporality.CUMULATIVE, id="cumulative"),
    pytest.param(AggregationTemporality.DELTA, id="delta"),
]


def open_wrapped(temporality: AggregationTemporality) -> Iterator[Wrapped]:
    """For a fixture parametrised over TEMPORALITIES: enabled for the test, disabled after it."""
    setup = Wrapped(temporality)
    try:
        yield setup
    finally:
        setup.close()
