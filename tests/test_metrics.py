"""bridge.metrics through the real exporters: the OpenTelemetry SDK's in-memory reader,
and prometheus_client's own text parser on `/metrics` scraped over HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import bridge
import bridge.metrics
from bridge import _metrics, _waker
from bridge._callsite import CallSite
from bridge._metrics_probe import probe
from bridge.watchdog import BlockReport, BlockStatistics
from tests.metrics_exporters import EXPORTERS, Collected, Exporter, Histogram, Otel, open_exporter
from tests.support import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture(params=EXPORTERS)
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    yield from open_exporter(request.param)


def current_backend() -> str:
    import sniffio

    if sniffio.current_async_library() == "trio":
        return "trio"
    import asyncio

    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


# -- the loop ------------------------------------------------------------------------------


@pytest.mark.allow_blocking("blocks its own loop on purpose: the block is what is measured")
async def test_loop_lateness_includes_a_block_of_the_loop(exporter: Exporter) -> None:
    _waker.current_waker()  # the loops probed are those bridge has a waker for
    key = (current_backend(), threading.current_thread().name)

    def probes_recorded() -> int:
        counts = _metrics.loop_lateness.snapshot().get(key)
        return 0 if counts is None else sum(counts[0])

    # Once this loop's probe timer runs, one is always due within an interval: a block
    # twice as long holds back the probe due in it by at least one interval.
    await eventually(lambda: probes_recorded() >= 1)
    recorded = probes_recorded()
    time.sleep(2 * probe.interval)  # noqa: ASYNC251 - on the loop on purpose: the block measured
    await eventually(lambda: probes_recorded() > recorded)
    collected = await exporter.collect()
    lateness = collected.histogram(
        "bridge.loop.lateness",
        bridge__loop__backend=current_backend(),
        thread__name=threading.current_thread().name,
    )
    assert lateness.count >= 1
    assert probe.interval == 0.05  # the bounds below
    assert lateness.above(0.025) >= 1
    assert lateness.sum >= 0.045


async def test_waker_batches_count_every_completion(exporter: Exporter) -> None:
    before = (await exporter.collect()).series.get("bridge.waker.batch.size", [])
    seen_before = before[0][1].sum if before else 0
    await _many(bridge.to_thread, 50)
    batches = (await exporter.collect()).histogram("bridge.waker.batch.size")
    # probes and the scrape's own hand-offs come on top; OpenTelemetry sums replayed floats
    assert batches.sum - seen_before >= 50 - 1e-6
    assert batches.count >= 1


async def _many(call: Any, n: int) -> None:
    import anyio

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(call, time.sleep, 0)


# -- limiters and the pool -----------------------------------------------------------------


async def test_limiter_gauges_and_the_time_queued_calls_waited(exporter: Exporter) -> None:
    import anyio

    limiter = bridge.Limiter(1, name="metrics-test-db")
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        for _ in range(2):

            async def queued() -> None:
                async with limiter:
                    pass

            tg.start_soon(queued)
        await eventually(lambda: limiter.statistics().waiting == 2)
        held = await exporter.collect()
        assert held.value("bridge.limiter.tokens.limit", bridge__limiter__name=limiter.name) == 1
        assert held.value("bridge.limiter.tokens.used", bridge__limiter__name=limiter.name) == 1
        assert held.value("bridge.limiter.waiting", bridge__limiter__name=limiter.name) == 2
        limiter.release()
    done = await exporter.collect()
    assert done.value("bridge.limiter.grants", bridge__limiter__name=limiter.name) == 3
    assert done.value("bridge.limiter.waiting", bridge__limiter__name=limiter.name) == 0
    waited = done.histogram("bridge.limiter.wait.duration", bridge__limiter__name=limiter.name)
    assert waited.count == 2  # the first call found its token free: it never queued
    assert waited.sum > 0


async def test_pool_threads_by_state(exporter: Exporter) -> None:
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(60)

    import anyio

    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.to_thread, hold)
        await eventually(started.is_set)
        try:
            busy = await exporter.collect()
        finally:
            release.set()
    limit = bridge.default_pool().statistics().max_workers
    assert busy.value("bridge.pool.threads", bridge__pool__name="default",
                      bridge__pool__thread__state="busy") >= 1  # fmt: skip
    assert busy.value("bridge.pool.threads.limit", bridge__pool__name="default") == limit
    after = bridge.default_pool().statistics()  # counters only grow: read after, never less
    for reason, count in (("grown", after.grown), ("compensated", after.compensated)):
        added = busy.value("bridge.pool.threads.added", bridge__pool__name="default",
                           bridge__pool__growth__reason=reason)  # fmt: skip
        assert 0 <= added <= count
    assert 0 <= busy.value("bridge.pool.threads.retired", bridge__pool__name="default") <= (
        after.retired
    )
    reasons = {labels["bridge.pool.growth.reason"]
               for labels, _ in busy.series["bridge.pool.threads.added"]}  # fmt: skip
    assert reasons == {"grown", "compensated"}


async def test_syncify_calls_are_counted(exporter: Exporter) -> None:
    async def double(x: int) -> int:
        return 2 * x

    before = (await exporter.collect()).value("bridge.portal.calls")
    assert await bridge.to_thread(bridge.syncify(double), 21) == 42
    assert await bridge.to_thread(bridge.syncify(double), 1) == 2
    after = (await exporter.collect()).value("bridge.portal.calls")
    assert after - before == 2


# -- the watchdog ----------------------------------------------------------------------------


async def test_watchdog_blocks_by_call_site(exporter: Exporter) -> None:
    statistics = BlockStatistics()
    site = CallSite("/srv/app/views.py", 42, "index", "requests.get(url)")
    stack = traceback.StackSummary.from_list([])
    for duration in (0.25, 0.5):
        statistics.record(BlockReport(site, stack, "MainThread", "asyncio", 0.05, duration, True))
    collected = await exporter.collect()
    where = {"code__function__name": "index", "code__file__path": "/srv/app/views.py",
             "code__line__number": 42}  # fmt: skip
    assert collected.value("bridge.watchdog.blocks", **where) == 2
    assert collected.value("bridge.watchdog.blocked_time", **where) == pytest.approx(0.75)


# -- switching ---------------------------------------------------------------------------------


async def test_nothing_is_recorded_once_disabled(exporter: Exporter) -> None:
    bridge.metrics.disable()  # the exporter's own server closes after the test
    assert not bridge.metrics.enabled()
    limiter = bridge.Limiter(1, name="off")
    async with limiter:
        await _many(bridge.to_thread, 10)
    assert all(not dist.snapshot() for dist in _metrics.DISTRIBUTIONS)
    assert limiter._queued_at == {}


def test_enabling_a_registry_twice_registers_once() -> None:
    registry = CollectorRegistry()
    try:
        bridge.metrics.enable_prometheus(registry)
        bridge.metrics.enable_prometheus(registry)  # would raise "Duplicated timeseries"
        assert bridge.metrics.enabled()
    finally:
        bridge.metrics.disable()
    assert not bridge.metrics.enabled()


def test_otel_histograms_are_exact_in_counts_and_sum_across_collections() -> None:
    """Each value reaches the SDK once: not lost, not replayed again by a later collection."""
    otel = Otel()
    try:
        dist = _metrics.limiter_wait
        for value in (0.0002, 0.0003, 0.003, 7.0, 20.0):
            dist.record(value, ("exact",))
        first = _histogram_now(otel)
        assert (first.count, first.sum) == (5, pytest.approx(27.0035))
        assert first.cumulative[0.00025] == 1 and first.cumulative[0.0005] == 2
        assert first.cumulative[0.005] == 3 and first.cumulative[10.0] == 4
        dist.record(0.0002, ("exact",))
        second = _histogram_now(otel)  # cumulative: replayed once, never twice
        assert (second.count, second.cumulative[0.00025]) == (6, 2)
    finally:
        otel.close()


def _histogram_now(otel: Otel, name: str = "exact") -> Histogram:
    import anyio

    async def collect() -> Collected:
        return await otel.collect()

    collected = anyio.run(collect)
    return collected.histogram("bridge.limiter.wait.duration", bridge__limiter__name=name)


def test_disabling_one_registry_keeps_the_others() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    try:
        bridge.metrics.enable_prometheus(first)
        bridge.metrics.enable_prometheus(second)
        bridge.metrics.disable(first)
        assert (
            first.get_sample_value("bridge_pool_threads_limit", {"bridge_pool_name": "default"})
            is None
        )
        assert second.get_sample_value(
            "bridge_pool_threads_limit", {"bridge_pool_name": "default"}
        ) == (bridge.default_pool().statistics().max_workers)
        assert bridge.metrics.enabled()
    finally:
        bridge.metrics.disable()


def test_otel_gets_each_value_exactly_even_under_a_view_with_other_bounds() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    reader = InMemoryMetricReader()
    view = View(
        instrument_name="bridge.limiter.wait.duration",
        aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.0015]),
    )
    provider = MeterProvider(metric_readers=[reader], views=[view])
    bridge.metrics.enable_opentelemetry(provider)
    try:
        # Both fall in bridge's own bucket (0.001, 0.0025]: only the exact values split them.
        for value in (0.0011, 0.0024):
            _metrics.limiter_wait.record(value, ("view",))
        data = reader.get_metrics_data()
    finally:
        bridge.metrics.disable()
        provider.shutdown()
    assert data is not None
    (point,) = [
        p
        for m in data.resource_metrics[0].scope_metrics[0].metrics
        if m.name == "bridge.limiter.wait.duration"
        for p in m.data.data_points
        if p.attributes.get("bridge.limiter.name") == "view"
    ]
    assert list(point.bucket_counts) == [1, 1]
    assert (point.min, point.max) == (0.0011, 0.0024)


async def test_values_kept_past_the_bound_are_handed_over_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge._metrics_probe import probe

    monkeypatch.setattr(_metrics, "KEEP_MAX", 3)
    otel = Otel()
    try:
        probe.stop()  # no replay on the metrics thread: only the bound can hand them over
        for value in (0.1, 0.2, 0.3):
            _metrics.limiter_wait.record(value, ("overflow",))
        await eventually(lambda: _metrics.limiter_wait._kept_count == 0)
        # The collection waits for a replay under way, so it sees all three.
        histogram = (await otel.collect()).histogram(
            "bridge.limiter.wait.duration", bridge__limiter__name="overflow"
        )
        assert (histogram.count, histogram.sum) == (3, pytest.approx(0.6))
    finally:
        otel.close()
