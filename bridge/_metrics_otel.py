"""Export bridge's figures through the OpenTelemetry metrics API.

Gauges and counters become observable instruments whose callbacks read the
catalogue. Histograms are the hard part: the Python API has one way in,
`Histogram.record` of one value, and the SDK's costs 5-6 µs a value (it
cleans and hashes the attributes, takes locks, offers an exemplar), twenty
times a `Distribution.record`. The SDK has no `MetricProducer`, the
specification's door for data aggregated elsewhere (opentelemetry-python
#4768), and replaying bucket counts as bucket means would make a different
histogram: wrong min and max, wrong under a View with other bounds or an
exponential histogram.

So the hot path only keeps each value (`Distribution.keep_values`, a list
append), and `replay` hands the exact values to the SDK's histograms, in
recording order: on the metrics thread every probe interval, and in the
first observable callback of each collection, so every value recorded
before a collection is in it. The SDK then holds what it would hold had each
call site recorded itself, except exemplars (the metrics thread has no trace
context) and a measurement time up to one interval late. The SDK's cost is
still paid per value, off the loop and worker threads but under the GIL.

That replay is the mode that keeps SDK Views and exemplars working on
bridge's histograms. The cheap mode (`bridge.metrics.opentelemetry_exporter`,
in `_metrics_otel_export`) creates no SDK histogram at all: an exporter
wrapper adds bridge's own aggregates to each export, and the hot path keeps
no value.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation

from bridge import _metrics
from bridge._metrics import Key
from bridge._metrics_catalog import Observable

Attributes = dict[str, Any]


def attributes(names: tuple[str, ...], key: Key) -> Attributes:
    """OpenTelemetry refuses None attribute values: an absent one is left out."""
    return {name: value for name, value in zip(names, key, strict=True) if value is not None}


class OtelExporter:
    """bridge's instruments on one meter provider; `replay` fills its histograms.

    Without `replay`, no SDK histogram is made: bridge's histograms reach this
    provider's export through `histograms`, the exporter wrapper(s) of
    `bridge.metrics.opentelemetry_exporter` in its readers.
    """

    def __init__(
        self,
        provider: MeterProvider,
        observables: Iterable[Observable],
        version: str,
        replay: Callable[[], None] | None,
        histograms: Sequence[Any] = (),
    ) -> None:
        self.provider = provider
        self.version = version
        self.active = True
        self._replay = replay
        #: The exporter wrappers that carry bridge's histograms (pre-aggregated mode).
        self.wrappers = tuple(histograms)
        meter = provider.get_meter("bridge", version)
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
        #: One SDK histogram per entry of `_metrics.DISTRIBUTIONS`, same order, same bounds;
        #: none when the wrappers carry them (the same names twice would be duplicates).
        self.histograms: list[Histogram] = []
        if replay is not None:
            self.make_histograms()
        self._attributes: dict[tuple[int, Key], Attributes] = {}  # built once per series

    def make_histograms(self) -> None:
        meter = self.provider.get_meter("bridge", self.version)
        self.histograms = [
            meter.create_histogram(
                dist.name,
                unit=dist.unit,
                description=dist.description,
                explicit_bucket_boundaries_advisory=list(dist.bounds),
            )
            for dist in _metrics.DISTRIBUTIONS
        ]

    def reuse(self, replay: Callable[[], None] | None, histograms: Sequence[Any]) -> None:
        """Enabled again on the same provider: the SDK keeps the instruments made the first
        time (a second `create_*` of a name returns the first), so these are switched back on."""
        if histograms and self.histograms:
            raise ValueError(
                "this MeterProvider already has SDK histograms for bridge's names (it was "
                "enabled without histograms= before): the exporter wrapper's would be "
                "duplicates; give bridge a new MeterProvider"
            )
        self._replay = replay
        self.wrappers = tuple(histograms)
        if replay is not None and not self.histograms:
            self.make_histograms()
        self.active = True

    @property
    def replays(self) -> bool:
        """True when bridge's histograms reach this provider through its SDK histograms."""
        return self._replay is not None

    def _observe(
        self, names: tuple[str, ...], read: Callable[[], dict[Key, float]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            if not self.active:
                return []
            # The SDK runs observable callbacks before it reads synchronous
            # instruments, so values replayed here land in this collection.
            if self._replay is not None:
                self._replay()
            return [Observation(value, attributes(names, key)) for key, value in read().items()]

        return callback

    def record(self, index: int, key: Key, values: list[float]) -> None:
        """Hand `values` of series `key` of distribution `index` to the SDK, one by one."""
        attrs = self._attributes.get((index, key))
        if attrs is None:
            names = _metrics.DISTRIBUTIONS[index].attributes
            attrs = self._attributes[(index, key)] = attributes(names, key)
        record = self.histograms[index].record
        for value in values:
            record(value, attrs)


_replay_lock = threading.Lock()
#: Values handed to the SDK between two GIL releases (~1.5 ms of its work).
REPLAY_CHUNK = 256


def replay(exporters: Sequence[OtelExporter]) -> None:
    """Hand every value kept since the last replay to each exporter, exactly once, in order."""
    # One replay at a time: a drained batch is recorded before the next is drained.
    with _replay_lock:
        for index, dist in enumerate(_metrics.DISTRIBUTIONS):
            for key, values in dist.drain().items():
                for start in range(0, len(values), REPLAY_CHUNK):
                    chunk = values[start : start + REPLAY_CHUNK]
                    for exporter in exporters:
                        if exporter.active and exporter.histograms:
                            exporter.record(index, key, chunk)
                    # The SDK takes ~6 µs a value: let a waiting loop thread have
                    # the GIL between chunks rather than after a whole switch
                    # interval (a 1,000-value replay would hold it for 6 ms).
                    time.sleep(0)
