"""Export bridge's figures through the OpenTelemetry metrics API.

Gauges and counters become observable instruments whose callbacks read the
catalogue. Distributions are kept in-process (`_metrics.Distribution`), since
the SDK's `Histogram.record` costs several µs, too much for a per-call hook:
the new values of each bucket are recorded into a real OpenTelemetry
histogram with the same bucket bounds, as that many records of the bucket's
mean: on the metrics thread every probe interval (so the SDK's cost is
spread out, off the loop thread) and once more at each collection, before the
SDK reads its histograms. Counts per bucket and sums come out exact; min and
max are those bucket means.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation

from bridge import _metrics
from bridge._metrics_catalog import Key, Observable

Attributes = dict[str, Any]


def attributes(names: tuple[str, ...], key: Key) -> Attributes:
    """OpenTelemetry refuses None attribute values: an absent one is left out."""
    return {name: value for name, value in zip(names, key, strict=True) if value is not None}


class OtelExporter:
    """bridge's instruments on one meter provider."""

    def __init__(
        self,
        provider: MeterProvider,
        observables: Iterable[Observable],
        version: str,
    ) -> None:
        self.provider = provider
        self.active = True
        meter = provider.get_meter("bridge", version)
        self._lock = threading.Lock()
        self._replayed: dict[tuple[str, Key], tuple[list[int], list[float]]] = {}
        for spec in observables:
            create = {
                "gauge": meter.create_observable_gauge,
                "counter": meter.create_observable_counter,
                "updowncounter": meter.create_observable_up_down_counter,
            }[spec.kind]
            create(
                spec.name,
                callbacks=[self._observe(spec.attributes, spec.read)],
                unit=spec.unit,
                description=spec.description,
            )
        self._histograms: list[tuple[_metrics.Distribution, Histogram]] = [
            (
                dist,
                meter.create_histogram(
                    dist.name,
                    unit=dist.unit,
                    description=dist.description,
                    explicit_bucket_boundaries_advisory=list(dist.bounds),
                ),
            )
            for dist in _metrics.DISTRIBUTIONS
        ]

    def _observe(
        self, names: tuple[str, ...], read: Callable[[], dict[Key, float]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if not self.active:
                return []
            # The SDK runs observable callbacks before it reads synchronous
            # instruments, so values replayed here land in this collection.
            self.replay()
            return [Observation(value, attributes(names, key)) for key, value in read().items()]

        return callback

    def replay(self) -> None:
        """Record into the OpenTelemetry histograms what each distribution gained since."""
        with self._lock:
            for dist, histogram in self._histograms:
                for key, (counts, sums) in dist.snapshot().items():
                    before = self._replayed.get((dist.name, key))
                    self._replayed[(dist.name, key)] = (counts, sums)
                    attrs = attributes(dist.attributes, key)
                    for i, count in enumerate(counts):
                        new = count - before[0][i] if before else count
                        if new <= 0:
                            continue
                        mean = (sums[i] - (before[1][i] if before else 0.0)) / new
                        for _ in range(new):
                            histogram.record(mean, attrs)
