"""What do bridge's metrics cost? Off, Prometheus on, OpenTelemetry on, side by side in one run.

Core hand-off (`bridge.to_thread` of a no-op, 100 in flight), the requests
adapter (GETs, 100 in flight, an aiohttp server in another process) and the
Cassandra adapter (prepared INSERT/SELECT alternating, 120 in flight, the CQL
test server in another process), on asyncio, uvloop and trio. Variants are
interleaved round by round, each round starting with the next variant, and each
figure is a median; "off again" is the
same configuration as "off", measured again, so its ratio shows the
run-to-run noise. Each round ends with one
collection (a Prometheus scrape rendered by `generate_latest`, an
OpenTelemetry SDK reader's collect): its time is reported apart, per call,
since a real scrape comes every 15-60 s, not once per round.

    python -m bench.metrics [--calls 20000] [--requests 1000] [--cql 5000] [--rounds 5]
                            [--only handoff,requests,cassandra]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import bridge
import bridge.metrics
from bench._report import save, table

VARIANTS = ("off", "prometheus", "otel", "off again")
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
        elif name == "otel":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            reader = InMemoryMetricReader()
            self.provider = MeterProvider(metric_readers=[reader])
            bridge.metrics.enable_opentelemetry(self.provider)
            self._collect = reader.get_metrics_data

    def collect(self) -> float:
        start = time.perf_counter()
        self._collect()
        return time.perf_counter() - start

    def close(self) -> None:
        bridge.metrics.disable()
        if self.name == "otel":
            self.provider.shutdown()


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
    await workload()  # warm up: threads started, connections open, imports done
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    collect: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        # Each round starts with another variant, so no variant always runs just after
        # another (a warm-up, a collection) or at the same point of the run.
        for name in VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]:
            variant = Variant(name)
            try:
                w, c = await workload()
                wall[name].append(w)
                cpu[name].append(c)
                collect[name].append(variant.collect() / count * 1e6)
            finally:
                variant.close()
    return {
        name: {
            "us": statistics.median(wall[name]),
            "cpu_us": statistics.median(cpu[name]),
            "collect_us": statistics.median(collect[name]),
        }
        for name in VARIANTS
    }


def run_on(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if backend == "uvloop":
        return anyio.run(main, backend_options={"use_uvloop": True})
    return anyio.run(main, backend=backend)


def handoff(calls: int, rounds: int, backend: str) -> dict[str, dict[str, float]]:
    async def main() -> dict[str, dict[str, float]]:
        return await measure(
            lambda: fan_out(lambda: bridge.to_thread(noop), calls), calls, rounds
        )

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


def rows_for(workload: str, backend: str, results: dict[str, dict[str, float]]) -> list[list[Any]]:
    off = results["off"]
    return [
        [
            workload,
            backend,
            name,
            r["us"],
            r["us"] / off["us"],
            r["cpu_us"],
            r["cpu_us"] / off["cpu_us"],
            r["collect_us"],
        ]
        for name, r in results.items()
    ]


def hook_costs() -> list[list[Any]]:
    """What each hook adds per call, measured alone (best of several repeats), in µs."""
    import timeit

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from bridge import _metrics
    from bridge.adapters._requests_metrics import record as _record_request

    def best(stmt: Callable[[], object], number: int = 20_000) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=7)) / number * 1e6

    dist = _metrics.Distribution("bench", "s", "", ("a",), _metrics.DELAY_BOUNDS)
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    histogram = meter.create_histogram("bench", unit="s")
    args = ("GET", "http://127.0.0.1:8080/x")
    rows = [
        ["off: the `if _metrics.on:` check", best(lambda: _metrics.on and None)],
        ["on: Distribution.record (each histogram hook)", best(lambda: dist.record(0.003, ("x",)))],
        ["on: requests hook (URL split + record)",
         best(lambda: _record_request(args, 0.01, 200, None))],
        ["OpenTelemetry SDK Histogram.record (per value, at replay)",
         best(lambda: histogram.record(0.003, {"a": "x"}))],
    ]  # fmt: skip
    _metrics.http_duration.reset()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--cql", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--only", default="handoff,requests,cassandra", help="workloads to run, comma-separated"
    )
    args = parser.parse_args()

    from bench.http import start_server

    only = set(args.only.split(","))
    results: dict[str, Any] = {}
    rows: list[list[Any]] = []
    if "handoff" in only:
        for backend in BACKENDS:
            results[f"handoff/{backend}"] = r = handoff(args.calls, args.rounds, backend)
            rows += rows_for("hand-off, 100 in flight", backend, r)
    if "requests" in only:
        process, url = start_server(args.delay_ms)
        try:
            for backend in BACKENDS:
                results[f"requests/{backend}"] = r = http(url, args.requests, args.rounds, backend)
                rows += rows_for("requests GET, 100 in flight", backend, r)
        finally:
            process.terminate()
            process.wait()
    if "cassandra" in only:
        from bridge.testing.cqlserver import ServerProcess

        with ServerProcess() as server:
            for backend in BACKENDS:
                results[f"cassandra/{backend}"] = r = cql(server, args.cql, args.rounds, backend)
                rows += rows_for("Cassandra, 120 in flight", backend, r)
    headers = [
        "workload", "loop", "metrics", "wall µs/call", "x off", "CPU µs/call", "x off",
        "collection µs/call",
    ]  # fmt: skip
    print(table(headers, rows))
    costs = hook_costs()
    print()
    print(table(["hook", "µs"], costs))
    results["hook_costs"] = {name: us for name, us in costs}
    print(
        f"\n{args.calls} hand-offs, {args.requests} HTTP and {args.cql} CQL requests per round, "
        "median of "
        f"{args.rounds} interleaved rounds; 'collection' = one scrape/collect per round, "
        "spread over the round's calls"
    )
    save("metrics", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
