"""What do bridge's metrics cost? Off, Prometheus, OpenTelemetry both ways, side by side in one run.

OpenTelemetry two ways: "otel replay" (`enable_opentelemetry(provider)`: SDK
histograms fed every exact value by bridge's metrics thread, read by the SDK's
`InMemoryMetricReader`) and "otel pre-agg" (`enable_opentelemetry(provider,
histograms=wrapper)`: bridge's own aggregates added at export by
`bridge.metrics.opentelemetry_exporter` around a `MetricExporter` that drops
what it is given, flushed through a `PeriodicExportingMetricReader`).

Core hand-off (`bridge.to_thread` of a no-op, 100 in flight), the requests
adapter (GETs, 100 in flight, an aiohttp server in another process), the
Cassandra adapter (prepared INSERT/SELECT alternating, 120 in flight, the CQL
test server in another process) and the DB-API adapter (psycopg2 primary-key
SELECTs, 100 in flight on 10 connections, the local PostgreSQL), on asyncio,
uvloop and trio.

The measure is the process's CPU time per call (all threads: the loop, the
workers, the metrics thread that hands values to OpenTelemetry), which time
spent descheduled by other programs does not inflate. Each round runs every
variant once, in an order rotated from round to round; each variant's figure
in a round is divided by that round's "off", so a load change between rounds
cancels out, and the table gives the median of those paired ratios over the
rounds with their 25th-75th percentiles. "off again" is the same
configuration as "off", measured again: its spread is the noise floor, and
an overhead is measured only where it clears it. Each round ends with one
collection (a Prometheus scrape rendered by `generate_latest`, an
OpenTelemetry SDK reader's collect), timed apart, per call, since a real
scrape comes every 15-60 s, not once per round.

    python -m bench.metrics [--calls 20000] [--requests 500] [--cql 3000] [--queries 3000]
                            [--rounds 11] [--only handoff,requests,cassandra,dbapi]
                            [--backends asyncio,uvloop,trio]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

import bridge
import bridge.metrics
from bench._report import save, table

VARIANTS = ("off", "prometheus", "otel replay", "otel pre-agg", "off again")
BACKENDS = ("asyncio", "uvloop", "trio")


class Variant:
    """Metrics switched to one configuration; `collect()` reads them as an exporter would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._collect: Callable[[], object] = lambda: None
        if name == "prometheus":
            from prometheus_client import CollectorRegistry, generate_latest

            registry = CollectorRegistry()
            bridge.metrics.enable_prometheus(registry)
            self._collect = lambda: generate_latest(registry)
        elif name == "otel replay":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            reader = InMemoryMetricReader()
            self.provider = MeterProvider(metric_readers=[reader])
            bridge.metrics.enable_opentelemetry(self.provider)
            self._collect = reader.get_metrics_data
        elif name == "prometheus + idle sdk":
            # Prometheus, beside an SDK MeterProvider with a periodic reader that bridge is
            # not enabled on: what the SDK's mere presence costs.
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from prometheus_client import CollectorRegistry, generate_latest

            registry = CollectorRegistry()
            bridge.metrics.enable_prometheus(registry)
            idle = PeriodicExportingMetricReader(dropping_exporter(), export_interval_millis=1e9)
            self.provider = MeterProvider(metric_readers=[idle])
            self._collect = lambda: generate_latest(registry)
        elif name == "otel pre-agg":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            exporter = bridge.metrics.opentelemetry_exporter(dropping_exporter())
            periodic = PeriodicExportingMetricReader(exporter, export_interval_millis=1e9)
            self.provider = MeterProvider(metric_readers=[periodic])
            bridge.metrics.enable_opentelemetry(self.provider, histograms=exporter)
            self._collect = periodic.force_flush

    def collect(self) -> float:
        start = time.perf_counter()
        self._collect()
        return time.perf_counter() - start

    def close(self) -> None:
        bridge.metrics.disable()
        if self.name.startswith("otel") or self.name.endswith("sdk"):
            self.provider.shutdown()


def dropping_exporter() -> Any:
    """A `MetricExporter` that takes each export and drops it: bridge's side is measured,
    not a wire's (made here on first use: the SDK is optional)."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class Dropping(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
            return None

    return Dropping()


async def fan_out(
    call: Callable[[], Awaitable[Any]], total: int, width: int = 100
) -> tuple[float, float]:
    """µs per call: wall time, and this process's CPU time (all its threads).

    On a shared machine the CPU time is the steadier figure: time spent
    descheduled while other programs run does not count.
    """
    per_task = total // width

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(width):
            tg.start_soon(worker)
    calls = per_task * width
    return (time.perf_counter() - start) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def noop() -> None:
    return None


async def measure(
    workload: Callable[[], Awaitable[tuple[float, float]]], count: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Per variant: medians (and quartiles) of its per-round ratios to the round's "off"."""
    await workload()  # warm up: threads started, connections open, imports done
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    collect: dict[str, list[float]] = {v: [] for v in VARIANTS}
    values: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        # A new order each round (seeded: the same in every run), so no variant runs
        # mostly just after another: a rotation kept "otel pre-agg" after "otel replay"
        # four rounds in five, paying for its garbage. The collection before each stretch
        # does the same: what a variant left behind is not counted against the next.
        for name in random.Random(r).sample(VARIANTS, len(VARIANTS)):
            variant = Variant(name)
            try:
                gc.collect()
                w, c = await workload()
                wall[name].append(w)
                cpu[name].append(c)
                values[name].append(recorded() / count)
                collect[name].append(variant.collect() / count * 1e6)
            finally:
                variant.close()
    results = {}
    for name in VARIANTS:
        cpu_ratios = [c / off for c, off in zip(cpu[name], cpu["off"], strict=True)]
        wall_ratios = [w / off for w, off in zip(wall[name], wall["off"], strict=True)]
        q1, _, q3 = statistics.quantiles(cpu_ratios, n=4) if rounds > 1 else (0.0, 0.0, 0.0)
        results[name] = {
            "us": statistics.median(wall[name]),
            "x_wall": statistics.median(wall_ratios),
            "cpu_us": statistics.median(cpu[name]),
            "x_cpu": statistics.median(cpu_ratios),
            "x_cpu_q1": q1,
            "x_cpu_q3": q3,
            "x_cpu_ci": median_ci(cpu_ratios),
            "x_cpu_rounds": cpu_ratios,
            "collect_us": statistics.median(collect[name]),
            "values": statistics.median(values[name]),
        }
    return results


def median_ci(values: list[float]) -> tuple[float, float]:
    """A distribution-free ~95% confidence interval of the median: the order statistics
    1.96 standard deviations of a binomial(n, 1/2) either side of the middle."""
    ranked, n = sorted(values), len(values)
    half = 0.98 * math.sqrt(n)
    return ranked[max(0, math.floor(n / 2 - half))], ranked[min(n - 1, math.ceil(n / 2 + half) - 1)]


def recorded() -> int:
    """Values the histograms took since metrics were switched on (each pays one record)."""
    from bridge import _metrics

    return sum(sum(counts) for d in _metrics.DISTRIBUTIONS for counts, _ in d.snapshot().values())


def run_on(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if backend == "uvloop":
        return anyio.run(main, backend_options={"use_uvloop": True})
    return anyio.run(main, backend=backend)


def handoff(calls: int, rounds: int, backend: str) -> dict[str, dict[str, float]]:
    async def main() -> dict[str, dict[str, float]]:
        return await measure(lambda: fan_out(lambda: bridge.to_thread(noop), calls), calls, rounds)

    return run_on(backend, main)  # type: ignore[no-any-return]


def http(url: str, total: int, rounds: int, backend: str) -> dict[str, dict[str, float]]:
    from bridge.adapters.requests import AsyncSession

    async def main() -> dict[str, dict[str, float]]:
        async with AsyncSession(limiter=bridge.Limiter(100)) as session:

            async def get() -> None:
                if (await session.get(url)).status_code != 200:
                    raise RuntimeError("the benchmark server failed a request")

            return await measure(lambda: fan_out(get, total), total, rounds)

    return run_on(backend, main)  # type: ignore[no-any-return]


def cql(server: Any, total: int, rounds: int, backend: str) -> dict[str, dict[str, float]]:
    from bench.cassandra import IN_FLIGHT, KS, connect, request_args
    from bridge.adapters.cassandra import AsyncSession

    cluster, sync_session = connect(server)
    try:
        sync_session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        sync_session.set_keyspace(KS)
        sync_session.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")
        insert = sync_session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
        select = sync_session.prepare("SELECT k, v FROM kv WHERE k = ?")

        async def main() -> dict[str, dict[str, float]]:
            session = AsyncSession(sync_session)
            counter = iter(range(0))

            async def one() -> None:
                stmt, params = request_args(next(counter, 0), insert, select)
                await session.execute(stmt, params)

            async def workload() -> tuple[float, float]:
                nonlocal counter
                counter = iter(range(total))
                return await fan_out(one, total, IN_FLIGHT)

            return await measure(workload, total, rounds)

        return run_on(backend, main)  # type: ignore[no-any-return]
    finally:
        cluster.shutdown()


def pooled_rows(results: dict[str, Any]) -> list[list[Any]]:
    """Per workload and variant, the paired ratios of every loop pooled: one median and its
    CI per target (the targets are per workload), from three times the rounds."""
    rows = []
    workloads = sorted({key.split("/")[0] for key in results if "/" in key})
    for workload in workloads:
        runs = [r for key, r in results.items() if key.split("/")[0] == workload]
        for name in VARIANTS[1:]:
            ratios = [x for r in runs for x in r[name]["x_cpu_rounds"]]
            lo, hi = median_ci(ratios)
            rows.append([workload, name, len(ratios), statistics.median(ratios),
                         f"{lo:.3f}-{hi:.3f}"])  # fmt: skip
    return rows


def rows_for(workload: str, backend: str, results: dict[str, dict[str, float]]) -> list[list[Any]]:
    return [
        [
            workload,
            backend,
            name,
            r["cpu_us"],
            r["x_cpu"],
            f"{r['x_cpu_q1']:.3f}-{r['x_cpu_q3']:.3f}",
            f"{r['x_cpu_ci'][0]:.3f}-{r['x_cpu_ci'][1]:.3f}",
            r["us"],
            r["x_wall"],
            r["collect_us"],
            r["values"],
        ]
        for name, r in results.items()
        if name != "off"
    ]


def dbapi(total: int, rounds: int, backend: str) -> dict[str, dict[str, float]]:
    import psycopg2

    from bench.dbapi import ROWS, pg_tables, postgres
    from bridge.adapters.dbapi import create_pool

    pg = postgres()

    async def main(table: str) -> dict[str, dict[str, float]]:
        async with create_pool(psycopg2.connect, min_size=10, max_size=10, **pg) as pool:
            keys = iter(range(0))
            sql = f"SELECT name FROM {table} WHERE id = %s"

            async def one() -> None:
                await pool.fetchone(sql, (next(keys, 0) % ROWS + 1,))

            async def workload() -> tuple[float, float]:
                nonlocal keys
                keys = iter(range(total))
                return await fan_out(one, total)

            return await measure(workload, total, rounds)

    with pg_tables(pg) as table:
        return run_on(backend, partial(main, table))  # type: ignore[no-any-return]


def hook_costs() -> list[list[Any]]:
    """What each hook adds per call, measured alone (best of several repeats), in µs."""
    import timeit
    from types import SimpleNamespace

    from cassandra.connection import DefaultEndPoint
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from bridge import _metrics
    from bridge._metrics_catalog import OBSERVABLES
    from bridge._metrics_otel import OtelExporter
    from bridge.adapters._cassandra_metrics import record as record_cql
    from bridge.adapters._dbapi_metrics import timed
    from bridge.adapters._requests_metrics import record as record_request

    def best(stmt: Callable[[], object], number: int = 20_000) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=7)) / number * 1e6

    dist = _metrics.Distribution("bench", "s", "", ("a",), _metrics.DELAY_BOUNDS)
    kept = _metrics.Distribution("bench", "s", "", ("a",), _metrics.DELAY_BOUNDS)
    kept.keep_values = True
    future = SimpleNamespace(coordinator_host=SimpleNamespace(endpoint=DefaultEndPoint("h", 9042)))
    args = ("GET", "http://127.0.0.1:8080/x")

    def run(*args: object) -> None:
        return None

    def record_kept() -> None:
        kept.record(0.003, ("x",))
        if kept._kept_count > 10_000:
            kept.drain()

    def export_per_series() -> float:
        """What the exporter wrapper adds to an export: every series read and made a point."""
        from bridge._metrics_otel_export import HistogramExporter

        wrapper = HistogramExporter(dropping_exporter())
        wrapper.bind("bench")
        for host in range(20):
            for status in ("2xx", "5xx"):
                _metrics.http_duration.record(0.003, ("GET", f"h{host}", 80, status, None))
        series = sum(len(d.snapshot()) for d in _metrics.DISTRIBUTIONS)
        try:
            return best(wrapper._histograms, number=200) / series
        finally:
            wrapper.unbind()

    dialect = SimpleNamespace(name="psycopg2")
    off_statement = best(lambda: timed(run, dialect))
    was, _metrics.on = _metrics.on, True  # the adapters' hooks only wrap while metrics are on
    try:
        statement = timed(run, dialect)
        sql = "SELECT v FROM t WHERE k = %s"
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        exporter = OtelExporter(provider, OBSERVABLES, "bench", lambda: None)
        index = _metrics.DISTRIBUTIONS.index(_metrics.db_duration)
        key = ("cassandra", None, "127.0.0.1", 9042, None)
        values = [0.003] * 1000
        rows = [
            ["off: the `if _metrics.on:` check", best(lambda: _metrics.on and None)],
            ["off: DB-API statement hook (`timed()` hands the function back)", off_statement],
            ["on: Distribution.record (Prometheus, OpenTelemetry pre-aggregated)",
             best(lambda: dist.record(0.003, ("x",)))],
            ["on: Distribution.record, value kept for OpenTelemetry", best(record_kept)],
            ["on: Cassandra hook (clock, host, record)",
             best(lambda: record_cql(future, 0.0, None))],
            ["on: DB-API hook (wrapper, 2 clock reads, command, record)",
             best(lambda: statement(None, sql, None, False)) - best(lambda: run(None, sql))],
            ["on: requests hook (URL split, record)",
             best(lambda: record_request(args, 0.01, 200, None))],
            ["OpenTelemetry: SDK Histogram.record per value (the replay, metrics thread)",
             best(lambda: exporter.record(index, key, values), number=20) / len(values)],
            ["OpenTelemetry pre-aggregated: one export's histograms, per series (reader thread)",
             export_per_series()],
        ]  # fmt: skip
        provider.shutdown()
    finally:
        _metrics.on = was
    for d in _metrics.DISTRIBUTIONS:
        d.reset()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cql", type=int, default=3_000)
    parser.add_argument("--queries", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--only",
        default="handoff,requests,cassandra,dbapi",
        help="workloads to run, comma-separated (and `hooks`: the per-hook costs alone)",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--variants",
        default="prometheus,otel replay,otel pre-agg",
        help="the variants between 'off' and 'off again' (always run), comma-separated",
    )
    args = parser.parse_args()
    global VARIANTS
    known = ("prometheus", "otel replay", "otel pre-agg", "prometheus + idle sdk")
    chosen = [v.strip() for v in args.variants.split(",") if v.strip() not in ("off", "off again")]
    unknown = [v for v in chosen if v not in known] + [
        v for v in set(chosen) if chosen.count(v) > 1
    ]
    if unknown:
        parser.error(
            f"--variants: {', '.join(map(repr, unknown))} unknown or repeated; pick from "
            f"{', '.join(known)} ('off' and 'off again' always run)"
        )
    VARIANTS = ("off", *chosen, "off again")
    backends = args.backends.split(",")

    from bench.http import start_server

    only = set(args.only.split(","))
    results: dict[str, Any] = {}
    rows: list[list[Any]] = []
    if "handoff" in only:
        for backend in backends:
            results[f"handoff/{backend}"] = r = handoff(args.calls, args.rounds, backend)
            rows += rows_for("hand-off, 100 in flight", backend, r)
    if "requests" in only:
        process, url = start_server(args.delay_ms)
        try:
            for backend in backends:
                results[f"requests/{backend}"] = r = http(url, args.requests, args.rounds, backend)
                rows += rows_for("requests GET, 100 in flight", backend, r)
        finally:
            process.terminate()
            process.wait()
    if "cassandra" in only:
        from bridge.testing.cqlserver import ServerProcess

        with ServerProcess() as server:
            for backend in backends:
                results[f"cassandra/{backend}"] = r = cql(server, args.cql, args.rounds, backend)
                rows += rows_for("Cassandra, 120 in flight", backend, r)
    if "dbapi" in only:
        for backend in backends:
            results[f"dbapi/{backend}"] = r = dbapi(args.queries, args.rounds, backend)
            rows += rows_for("DB-API SELECT, 100 in flight", backend, r)
    headers = [
        "workload", "loop", "metrics", "CPU µs/call", "x off", "x off p25-p75", "x off 95% CI",
        "wall µs/call", "wall x off", "collection µs/call", "values/call",
    ]  # fmt: skip
    if rows:
        print(table(headers, rows))
        print()
        print(table(["workload", "metrics", "rounds", "CPU x off, all loops", "95% CI"],
                    pooled_rows(results)))  # fmt: skip
    if "hooks" in only:
        costs = hook_costs()
        print()
        print(table(["hook", "µs"], costs))
        results["hook_costs"] = {name: us for name, us in costs}
    print(
        f"\n{args.calls} hand-offs, {args.requests} HTTP, {args.cql} CQL requests, "
        f"{args.queries} SQL queries per round; medians of per-round ratios to the round's "
        f"'off' over {args.rounds} rounds; 'collection' = one scrape/collect per round, "
        "spread over the round's calls"
    )
    save("metrics", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
