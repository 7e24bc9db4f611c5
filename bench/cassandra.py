"""How close does `bridge.adapters.cassandra` get to the driver's own callback chaining?

One workload for everyone: 20,000 prepared single-row requests (INSERT and
SELECT alternating) against the CQL server in another process, 120 in flight,
measured as 120 long-lived tasks each awaiting one request at a time ("tasks")
and as one task per request under a semaphore of 120 ("per-request"). A
heartbeat task sleeping 5 ms records how late the loop wakes it.

bridge runs with both transports: "loop" (the event loop reads and writes the
driver's sockets) and "thread" (the driver's libev reactor thread).

    python -m bench.cassandra [--requests 20000] [--profile] [--only NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import io
import pstats
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import uvloop  # noqa: F401 - fail early when missing
from cassandra.cluster import Cluster, Session

from bench._report import percentile, save, table
from bridge.adapters.cassandra import AsyncCluster, AsyncSession
from bridge.adapters.cassandra._rows import cached_named_tuple_factory
from bridge.testing.cqlserver import ServerProcess

IN_FLIGHT = 120
KS = "bench"
HEARTBEAT = 0.005
#: Extra Cluster arguments for every contestant (--protocol).
CLUSTER_KWARGS: dict[str, Any] = {}

warnings.simplefilter("ignore")


def connect(server: ServerProcess) -> tuple[Cluster, Session]:
    cluster = Cluster(server.contact_points, port=server.port, **CLUSTER_KWARGS)
    return cluster, cluster.connect()


def request_args(i: int, insert: Any, select: Any) -> tuple[Any, tuple[Any, ...]]:
    if i & 1:
        return select, (i % 1000,)
    return insert, (i % 1000, "value")


# -- 1. the ceiling: the driver's callbacks, no event loop ----------------------------


def run_ceiling(session: Session, insert: Any, select: Any, n: int) -> float:
    done = threading.Event()
    lock = threading.Lock()
    state = {"next": 0, "finished": 0}

    def launch() -> None:
        with lock:
            i = state["next"]
            if i >= n:
                return
            state["next"] = i + 1
        stmt, params = request_args(i, insert, select)
        future = session.execute_async(stmt, params)
        future.add_callbacks(on_done, on_error)

    def on_done(_: Any) -> None:
        with lock:
            state["finished"] += 1
            finished = state["finished"]
        if finished == n:
            done.set()
        else:
            launch()

    def on_error(exc: BaseException) -> None:
        print("error:", exc, file=sys.stderr)
        on_done(None)

    start = time.perf_counter()
    for _ in range(IN_FLIGHT):
        launch()
    done.wait()
    return time.perf_counter() - start


# -- the async contestants ------------------------------------------------------------

Execute = Callable[[Any, tuple[Any, ...]], Awaitable[Any]]


async def drive(execute: Execute, insert: Any, select: Any, n: int, pattern: str) -> float:
    """Run n requests with IN_FLIGHT in flight, in the given pattern; returns seconds."""
    start = time.perf_counter()
    if pattern == "tasks":
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                stmt, params = request_args(i, insert, select)
                await execute(stmt, params)

        async with anyio.create_task_group() as tg:
            for _ in range(IN_FLIGHT):
                tg.start_soon(worker)
    else:
        semaphore = anyio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            async with semaphore:
                stmt, params = request_args(i, insert, select)
                await execute(stmt, params)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                await semaphore.acquire()  # don't create 20,000 idle tasks at once
                semaphore.release()
                tg.start_soon(one, i)
    return time.perf_counter() - start


async def with_heartbeat(
    run: Callable[[], Awaitable[float]],
) -> tuple[float, float, int, float]:
    """Run `run()` while a 5 ms heartbeat measures loop lateness.

    Returns (seconds, p99 ms, beats, CPU seconds of this process, every thread).
    """
    lateness: list[float] = []
    stop = anyio.Event()

    async def heartbeat() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await anyio.sleep(HEARTBEAT)
            lateness.append((time.perf_counter() - t - HEARTBEAT) * 1000)

    cpu = time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        seconds = await run()
        stop.set()
    cpu = time.process_time() - cpu
    return seconds, percentile(lateness, 99), len(lateness), cpu


def bridge_execute(session: Session) -> Execute:
    async_session = AsyncSession(session)
    return async_session.execute


async def bridge_transport_run(
    server: ServerProcess, transport: str, n: int, pattern: str
) -> tuple[float, float, int, float]:
    """bridge with its own AsyncCluster on this loop (connecting is not timed)."""
    async with AsyncCluster(
        server.contact_points,
        port=server.port,
        transport=transport,  # type: ignore[arg-type]
        **CLUSTER_KWARGS,
    ) as cluster:
        session = await cluster.connect(KS)
        insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
        select = await session.prepare("SELECT k, v FROM kv WHERE k = ?")
        await drive(session.execute, insert, select, 1000, "tasks")  # warm up
        return await with_heartbeat(lambda: drive(session.execute, insert, select, n, pattern))


def naive_execute(session: Session) -> Execute:
    """What aiocassandra and its successors do: one call_soon_threadsafe per result."""

    async def execute(stmt: Any, params: tuple[Any, ...]) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def on_result(rows: Any) -> None:
            loop.call_soon_threadsafe(_set_result, fut, rows)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_set_exception, fut, exc)

        session.execute_async(stmt, params).add_callbacks(on_result, on_error)
        return await fut

    return execute


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def executor_execute(session: Session, pool: concurrent.futures.ThreadPoolExecutor) -> Execute:
    async def execute(stmt: Any, params: tuple[Any, ...]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, session.execute, stmt, params)

    return execute


def cassandra_asyncio_execute(server: ServerProcess) -> tuple[Execute, Any]:
    from cassandra_asyncio.cluster import Cluster as CACluster  # type: ignore[import-not-found]

    cluster = CACluster(server.contact_points, port=server.port, **CLUSTER_KWARGS)
    session = cluster.connect(KS)
    return session.aexecute, cluster


async def aiocassandra_execute(session: Session) -> Execute:
    from aiocassandra import aiosession

    patched = aiosession(session, loop=asyncio.get_running_loop())
    return patched.execute_future  # type: ignore[no-any-return]


def run_on(backend: str, coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    if backend == "trio":
        return anyio.run(coro_fn, backend="trio")
    return anyio.run(
        coro_fn, backend="asyncio", backend_options={"use_uvloop": backend == "uvloop"}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="cProfile bridge on uvloop")
    parser.add_argument("--only", default="", help="run contestants whose name contains this")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds over all contestants; best round kept"
    )
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval (s) for the run"
    )
    parser.add_argument(
        "--protocol", type=int, default=None, help="native protocol version (default: negotiated)"
    )
    args = parser.parse_args()
    if args.protocol is not None:
        CLUSTER_KWARGS["protocol_version"] = args.protocol
    n = args.requests
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    best: dict[str, list[Any]] = {}
    results: dict[str, Any] = {}
    with ServerProcess() as server:
        cluster, session = connect(server)
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.set_keyspace(KS)
        session.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")
        insert = session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
        select = session.prepare("SELECT k, v FROM kv WHERE k = ?")
        run_ceiling(session, insert, select, 2000)  # warm up both sides

        def record(name: str, backend: str, pattern: str, measure: Callable[[], Any]) -> None:
            if args.only not in f"{name}/{backend}/{pattern}" and not name.startswith("driver"):
                return
            key = f"{name}/{backend}/{pattern}"
            cpu0 = server.cpu_seconds()
            try:
                seconds, p99, beats, client_cpu = measure()
            except Exception as exc:  # a published wrapper that no longer runs
                print(f"{key}: failed: {exc!r}", file=sys.stderr)
                results[key] = {"error": repr(exc)}
                best[key] = [name, backend, pattern, "-", "-", "-", f"fails: {type(exc).__name__}"]
                return
            server_cpu = server.cpu_seconds() - cpu0
            # CPU of this process per request (every thread), over the measured
            # run only: steadier than wall-clock rates on a shared machine.
            client_us = client_cpu / n * 1e6
            rate = n / seconds
            print(key, round(rate), round(p99, 2), file=sys.stderr)
            if key in results and results[key].get("requests_per_second", 0) >= rate:
                return  # the machine is shared: keep each contestant's best round
            results[key] = {
                "seconds": seconds,
                "requests_per_second": rate,
                "heartbeat_p99_ms": p99,
                "heartbeats": beats,
                "server_cpu_share": server_cpu / seconds,
                "client_cpu_us_per_request": client_us,
            }
            best[key] = [name, backend, pattern, round(rate), p99, round(client_us), ""]

        def ceiling() -> tuple[float, float, int, float]:
            cpu = time.process_time()
            seconds = run_ceiling(session, insert, select, n)
            return seconds, 0.0, 0, time.process_time() - cpu

        def ceiling_with_bridges_rows() -> tuple[float, float, int, float]:
            # The same chains with the row factory AsyncCluster installs (the
            # Row class built once per column list): what the transport itself adds.
            profile = cluster.profile_manager.default
            default = profile.row_factory
            profile.row_factory = cached_named_tuple_factory
            try:
                return ceiling()
            finally:
                profile.row_factory = default

        def async_run(backend: str, make: Callable[[], Any], pattern: str) -> Callable[[], Any]:
            async def go() -> tuple[float, float, int, float]:
                execute = make()
                if asyncio.iscoroutine(execute):
                    execute = await execute
                return await with_heartbeat(lambda: drive(execute, insert, select, n, pattern))

            return lambda: run_on(backend, go)

        def transport_run(backend: str, transport: str, pattern: str) -> Callable[[], Any]:
            return lambda: run_on(
                backend, lambda: bridge_transport_run(server, transport, n, pattern)
            )

        pool = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT)
        try:
            ca_execute, ca_cluster = cassandra_asyncio_execute(server)
        except ImportError as exc:  # not in this environment: the table says so
            ca_execute, ca_cluster = None, None
            ca_missing = repr(exc)
        for _ in range(args.repeat):
            record("driver callbacks (ceiling)", "none", "chains", ceiling)
            record("driver callbacks, bridge's rows", "none", "chains", ceiling_with_bridges_rows)
            for pattern in ("tasks", "per-request"):
                for backend in ("asyncio", "uvloop", "trio"):
                    for transport in ("loop", "thread"):
                        record(
                            f"bridge, {transport} transport",
                            backend,
                            pattern,
                            transport_run(backend, transport, pattern),
                        )
                for backend in ("asyncio", "uvloop"):
                    record(
                        "naive bridge",
                        backend,
                        pattern,
                        async_run(backend, lambda: naive_execute(session), pattern),
                    )
                for backend in ("asyncio", "uvloop"):
                    record(
                        "run_in_executor (120 threads)",
                        backend,
                        pattern,
                        async_run(backend, lambda: executor_execute(session, pool), pattern),
                    )
                if ca_execute is not None:
                    record(
                        "cassandra-asyncio-driver 1.0.1",
                        "uvloop",
                        pattern,
                        async_run("uvloop", lambda: ca_execute, pattern),
                    )
                else:
                    best["cassandra-asyncio"] = [
                        *("cassandra-asyncio-driver", "-", "-", "-", "-", "-", ca_missing)
                    ]
                aio_session = cluster.connect(KS)
                record(
                    "aiocassandra 2.0.1",
                    "uvloop",
                    pattern,
                    async_run("uvloop", lambda s=aio_session: aiocassandra_execute(s), pattern),
                )
        best["async-cassandra"] = [
            *("async-cassandra 0.0.1", "-", "-", "-", "-", "-", "no installable distribution")
        ]
        results["async-cassandra"] = {"error": "pip: no matching distribution for async-cassandra"}
        pool.shutdown()
        if ca_cluster is not None:
            ca_cluster.shutdown()

        if args.profile:
            profile_bridge(session, insert, select, n)
        cluster.shutdown()

    ceiling_rate = results["driver callbacks (ceiling)/none/chains"]["requests_per_second"]
    out = []
    for row in best.values():
        ratio = row[3] / ceiling_rate if isinstance(row[3], int) else "-"
        out.append([*row[:4], ratio, *row[4:]])
    print(
        table(
            [
                "contestant",
                "loop",
                "pattern",
                "req/s",
                "x ceiling",
                "heartbeat p99 ms",
                "client CPU µs/req",
                "note",
            ],
            out,
        )
    )
    meta = {
        "protocol": args.protocol or "negotiated",
        "requests": n,
        "in_flight": IN_FLIGHT,
        "rounds": args.repeat,
        "kept": "best round",
    }
    path = save("cassandra", {**meta, "results": results})
    print(f"\nsaved {path}")


def profile_bridge(session: Session, insert: Any, select: Any, n: int) -> None:
    """cProfile of the loop thread running bridge on uvloop (the reactor thread is not seen)."""
    profiler = cProfile.Profile()

    async def go() -> None:
        execute = bridge_execute(session)
        profiler.enable()
        await drive(execute, insert, select, n, "tasks")
        profiler.disable()

    run_on("uvloop", go)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue(), file=sys.stderr)


if __name__ == "__main__":
    main()
