"""bridge.metrics.opentelemetry_exporter: bridge's own aggregates as OpenTelemetry histograms.

The real SDK throughout: a MeterProvider whose PeriodicExportingMetricReader exports
through the wrapper to an exporter that keeps what it is given, and, as the oracle, a
second provider that takes the same values by exact replay into the SDK's own
aggregation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from prometheus_client import CollectorRegistry

import bridge
import bridge.metrics
from bridge import _metrics
from bridge._metrics_probe import probe
from tests.metrics_exporters import (
    TEMPORALITIES,
    KeepingExporter,
    Wrapped,
    bridge_metrics,
    histogram_points,
    open_wrapped,
    same_histogram,
)
from tests.support import eventually

CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA


@pytest.fixture(params=TEMPORALITIES)
def wrapped(request: pytest.FixtureRequest) -> Iterator[Wrapped]:
    yield from open_wrapped(request.param)


def _one(points: dict[Any, Any], **attrs: object) -> Any:
    want = frozenset(attrs.items())
    (point,) = [p for key, p in points.items() if want <= key]
    return point


# -- exact figures from real bridge activity, against the SDK's own aggregation --------------


@pytest.mark.anyio
async def test_to_thread_hand_offs_are_counted_exactly(wrapped: Wrapped) -> None:
    probe.stop()  # no lateness probe through the waker: only the hand-offs below are batched
    await bridge.to_thread(int)  # behind any probe already queued to this loop
    name = "bridge.waker.batch.size"
    before = histogram_points(wrapped.export(), name)
    wrapped.oracle()
    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(bridge.to_thread, time.sleep, 0)
    ours = _one(histogram_points(wrapped.export(), name))
    sdk = _one(histogram_points(wrapped.oracle(), name))
    same_histogram(ours, sdk)
    earlier = 0.0 if wrapped.temporality is DELTA else _one(before).sum
    assert ours.sum - earlier == 40  # every completion handed back, in some number of wake-ups
    assert 1 <= ours.min <= ours.max


@pytest.mark.anyio
async def test_limiter_waits_are_exact(wrapped: Wrapped) -> None:
    limiter = bridge.Limiter(1, name="export-test")
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        for _ in range(2):

            async def queued() -> None:
                async with limiter:
                    await anyio.lowlevel.checkpoint()

            tg.start_soon(queued)
        await eventually(lambda: limiter.statistics().waiting == 2)
        limiter.release()
    name = "bridge.limiter.wait.duration"
    ours = _one(histogram_points(wrapped.export(), name), **{"bridge.limiter.name": "export-test"})
    sdk = _one(histogram_points(wrapped.oracle(), name), **{"bridge.limiter.name": "export-test"})
    same_histogram(ours, sdk)
    assert ours.count == 2  # the first call found its token free: it never queued
    assert 0 < ours.min <= ours.max and ours.sum == pytest.approx(ours.min + ours.max)


def test_no_duplicate_names_and_no_values_kept() -> None:
    setup = Wrapped(oracle=False)
    try:
        for value in (0.001, 0.002):
            _metrics.limiter_wait.record(value, ("dup",))
        names = [metric.name for metric in bridge_metrics(setup.export())]
        assert len(names) == len(set(names))
        assert "bridge.limiter.wait.duration" in names and "bridge.pool.threads.limit" in names
        assert all(not d.keep_values and not d._kept for d in _metrics.DISTRIBUTIONS)
        (scope,) = [s for r in setup.inner.exports[-1].resource_metrics for s in r.scope_metrics]
        assert (scope.scope.name, scope.scope.version) == ("bridge", bridge.__version__)
    finally:
        setup.close()


# -- temporality ---------------------------------------------------------------------------


def test_cumulative_points_run_from_one_start_time() -> None:
    setup = Wrapped(CUMULATIVE, oracle=False)
    try:
        for value in (0.0002, 0.003, 7.0):
            _metrics.limiter_wait.record(value, ("cumulative",))
        first = _one(histogram_points(setup.export(), "bridge.limiter.wait.duration"))
        _metrics.limiter_wait.record(20.0, ("cumulative",))
        second = _one(histogram_points(setup.export(), "bridge.limiter.wait.duration"))
    finally:
        setup.close()
    assert (first.count, first.sum, first.min, first.max) == (3, pytest.approx(7.0032), 0.0002, 7.0)
    assert list(first.bucket_counts) == [0, 1, 0, 0, 0, 1] + [0] * 9 + [1, 0]
    assert list(first.explicit_bounds) == list(_metrics.DELAY_BOUNDS)
    assert (second.count, second.sum, second.min, second.max) == (4, pytest.approx(27.0032),
                                                                  0.0002, 20.0)  # fmt: skip
    assert second.bucket_counts[-1] == 1  # above the last bound
    assert second.start_time_unix_nano == first.start_time_unix_nano < first.time_unix_nano
    assert first.time_unix_nano < second.time_unix_nano


def test_delta_points_hold_each_interval_alone() -> None:
    setup = Wrapped(DELTA, oracle=False)
    try:
        for value in (0.0002, 0.003, 7.0):
            _metrics.limiter_wait.record(value, ("delta",))
        _metrics.limiter_wait.record(1.0, ("quiet later",))
        first = histogram_points(setup.export(), "bridge.limiter.wait.duration")
        _metrics.limiter_wait.record(0.5, ("delta",))
        second = histogram_points(setup.export(), "bridge.limiter.wait.duration")
        third = histogram_points(setup.export(), "bridge.limiter.wait.duration")
    finally:
        setup.close()
    a = _one(first, **{"bridge.limiter.name": "delta"})
    b = _one(second, **{"bridge.limiter.name": "delta"})
    assert (a.count, a.sum, a.min, a.max) == (3, pytest.approx(7.0032), 0.0002, 7.0)
    assert (b.count, b.sum, b.min, b.max) == (1, pytest.approx(0.5), 0.5, 0.5)
    assert list(b.bucket_counts) == [0] * 11 + [1] + [0] * 5
    assert b.start_time_unix_nano == a.time_unix_nano < b.time_unix_nano
    assert len(second) == 1  # a series with nothing new is left out
    assert third == {}


def test_each_delta_exporter_has_its_own_interval() -> None:
    first = Wrapped(DELTA, oracle=False)
    second = Wrapped(DELTA, oracle=False)
    try:
        for value in (0.1, 0.2):
            _metrics.limiter_wait.record(value, ("two readers",))
        early = _one(histogram_points(first.export(), "bridge.limiter.wait.duration"))
        _metrics.limiter_wait.record(0.3, ("two readers",))
        late = _one(histogram_points(first.export(), "bridge.limiter.wait.duration"))
        whole = _one(histogram_points(second.export(), "bridge.limiter.wait.duration"))
    finally:
        first.close()
        second.provider.shutdown()
    assert (early.count, early.min, early.max) == (2, 0.1, 0.2)
    assert (late.count, late.min, late.max) == (1, 0.3, 0.3)
    assert (whole.count, whole.min, whole.max) == (3, 0.1, 0.3)


# -- switching, and the wrapped exporter's own duties ------------------------------------------


def test_turning_off_and_on_again() -> None:
    setup = Wrapped(oracle=False)
    try:
        _metrics.limiter_wait.record(0.25, ("switch",))
        before = _one(histogram_points(setup.export(), "bridge.limiter.wait.duration"))
        bridge.metrics.disable()
        exported = len(setup.inner.exports)
        setup.reader.force_flush()  # bridge's instruments observe nothing: no export at all
        assert all(bridge_metrics(data) == [] for data in setup.inner.exports[exported:])
        bridge.metrics.enable_opentelemetry(setup.provider, histograms=setup.wrapper)
        _metrics.limiter_wait.record(1.0, ("switch",))
        data = setup.export()
    finally:
        setup.close()
    after = _one(histogram_points(data, "bridge.limiter.wait.duration"))
    assert (before.count, before.sum) == (1, 0.25)
    assert (after.count, after.sum, after.min) == (1, 1.0, 1.0)  # counted again from zero
    assert after.start_time_unix_nano > before.time_unix_nano
    assert "bridge.pool.threads.limit" in {m.name for m in bridge_metrics(data)}  # gauges back


def test_flush_and_shutdown_reach_the_wrapped_exporter() -> None:
    setup = Wrapped(oracle=False)
    setup.provider.force_flush()
    assert setup.inner.flushes == 1
    bridge.metrics.disable()
    setup.provider.shutdown()
    assert setup.inner.shutdowns == 1


def test_an_unbound_wrapper_passes_exports_through() -> None:
    inner = KeepingExporter()
    wrapper = bridge.metrics.opentelemetry_exporter(inner)
    reader = PeriodicExportingMetricReader(wrapper, export_interval_millis=1e9)
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("app").create_counter("app.things").add(1)
        bridge.metrics.enable_prometheus(CollectorRegistry())  # records, not for this provider
        _metrics.limiter_wait.record(0.1, ("unbound",))
        reader.force_flush()
    finally:
        bridge.metrics.disable()
        provider.shutdown()
    data = inner.exports[0]  # (the provider's shutdown exports once more)
    assert bridge_metrics(data) == []
    assert [m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics] == [
        "app.things"
    ]


def test_histograms_take_only_a_wrapper_bound_once() -> None:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    with pytest.raises(TypeError, match="opentelemetry_exporter"):
        bridge.metrics.enable_opentelemetry(provider, histograms=KeepingExporter())
    setup = Wrapped(oracle=False)
    try:
        with pytest.raises(ValueError, match="another MeterProvider"):
            bridge.metrics.enable_opentelemetry(provider, histograms=setup.wrapper)
    finally:
        setup.close()
        provider.shutdown()


def test_a_provider_with_sdk_histograms_refuses_the_wrapper_later() -> None:
    inner = KeepingExporter()
    wrapper = bridge.metrics.opentelemetry_exporter(inner)
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(wrapper, export_interval_millis=1e9)]
    )
    try:
        bridge.metrics.enable_opentelemetry(provider)  # exact replay: SDK histograms
        bridge.metrics.disable()
        with pytest.raises(ValueError, match="duplicates"):
            bridge.metrics.enable_opentelemetry(provider, histograms=wrapper)
    finally:
        bridge.metrics.disable()
        provider.shutdown()


def test_the_periodic_reader_exports_on_its_own_thread() -> None:
    """No flush: the reader's own thread calls the wrapper, as in production."""
    inner = KeepingExporter()
    wrapper = bridge.metrics.opentelemetry_exporter(inner)
    provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(wrapper, export_interval_millis=20)]
    )
    bridge.metrics.enable_opentelemetry(provider, histograms=wrapper)
    try:
        _metrics.limiter_wait.record(0.125, ("periodic",))
        done = threading.Event()

        def exported() -> bool:
            return any(
                histogram_points(data, "bridge.limiter.wait.duration") for data in inner.exports
            )

        give_up = time.monotonic() + 30
        while not exported() and time.monotonic() < give_up:
            done.wait(0.01)
        assert exported()
    finally:
        bridge.metrics.disable()
        provider.shutdown()
