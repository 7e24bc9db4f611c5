"""The exporters under test, read the way a user's backend reads them: the OpenTelemetry
SDK's in-memory reader, and prometheus_client's text parser on `/metrics` over HTTP."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
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
