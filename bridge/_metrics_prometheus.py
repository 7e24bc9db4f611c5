"""Export bridge's figures to a `prometheus_client` registry, read at each scrape.

One collector yields `prometheus_client`'s own metric families (gauges,
counters, histograms), so the exposition format is the library's. Names are
the OpenTelemetry names with dots as underscores and the unit as a suffix,
as OpenTelemetry's Prometheus exporters write them: `bridge.loop.lateness`
(s) is `bridge_loop_lateness_seconds`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from bridge import _metrics
from bridge._metrics_catalog import OBSERVABLES

_UNIT_SUFFIX = {"s": "seconds", "By": "bytes", "1": "ratio"}


def metric_name(name: str, unit: str) -> str:
    base = name.replace(".", "_")
    suffix = _UNIT_SUFFIX.get(unit, "")  # `{thread}` and friends are annotations: no suffix
    return f"{base}_{suffix}" if suffix and not base.endswith(suffix) else base


def label_names(attributes: tuple[str, ...]) -> list[str]:
    return [a.replace(".", "_") for a in attributes]


def _labels(key: tuple[Any, ...]) -> list[str]:
    return ["" if v is None else str(v) for v in key]


class BridgeCollector(Collector):
    """Reads every bridge figure when the registry is scraped."""

    def collect(self) -> Iterator[Metric]:
        family: Metric
        for spec in OBSERVABLES:
            name = metric_name(spec.name, spec.unit)
            labels = label_names(spec.attributes)
            if spec.kind == "counter":
                family = CounterMetricFamily(name, spec.description, labels=labels, unit="")
            else:
                family = GaugeMetricFamily(name, spec.description, labels=labels)
            for key, value in spec.read().items():
                family.add_metric(_labels(key), value)
            yield family
        for dist in _metrics.DISTRIBUTIONS:
            histogram = HistogramMetricFamily(
                metric_name(dist.name, dist.unit),
                dist.description,
                labels=label_names(dist.attributes),
            )
            bounds = [*(floatToGoString(b) for b in dist.bounds), "+Inf"]  # type: ignore[no-untyped-call]
            for key, (counts, sums) in dist.snapshot().items():
                cumulative, buckets = 0, []
                for bound, count in zip(bounds, counts, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                histogram.add_metric(_labels(key), buckets, sum(sums))
            yield histogram
