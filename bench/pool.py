"""Does the worker pool have as many threads as blocking I/O needs, and as few as the GIL wants?

Three questions, side by side in one run on asyncio (issue 16's targets):

1. Blocking I/O: 50 tasks call `asyncify(time.sleep, limiter=Limiter(50))` with
   sleeps of 2, 5 and 20 ms, against the same sleeps on a 50-thread
   `ThreadPoolExecutor` (target: >= 0.95x at each length). Each round runs
   bridge twice: from a pool whose threads have retired (the growth included),
   then at once again, grown, as the executor's threads are after its first round.
2. CPU-bound pure Python (about 1 ms of CPU in bytecode per call), 50 tasks,
   also behind `Limiter(50)`: bridge against the best of fixed 1 to 6-thread
   executors (target: >= 0.95x the best, with at most CPU count + 2 threads
   running jobs at once). The busy-thread sampler runs beside every contestant;
   twice as many rounds as asked, the best count chosen on half, measured on the other.
3. 100 in flight of a trivial call, the ratio to `asyncio.to_thread` (as in
   `bench.overhead`; it must not get worse).
4. `SELECT pg_sleep(0.005)` from 50 tasks through the DB-API adapter against
   `asyncio.to_thread` over `psycopg2.pool` (as in `bench.dbapi`; target >= 5x).

    python -m bench.pool [--seconds 0.4] [--rounds 3] [--pg-queries 1000]
    python -m bench.pool --why   # the CPU-bound call on fixed executors and pools of 1-6
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import random
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import bridge
from bench._report import save, table
from bench.overhead import in_flight
from bridge.lowlevel import run_job

TASKS = 50
Call = Callable[[], Awaitable[Any]]


async def throughput(call: Call, calls_per_task: int, tasks: int = TASKS) -> float:
    """Calls per second with `tasks` tasks each making `calls_per_task` calls in a row."""

    async def worker() -> None:
        for _ in range(calls_per_task):
            await call()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)
    return tasks * calls_per_task / (time.perf_counter() - start)


class Busy:
    """The most pool threads seen running a job at once, sampled from a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        pool = bridge.default_pool()
        while not self._stop.wait(0.005):  # rarer would miss a probe; more often costs GIL
            self.peak = max(self.peak, pool.statistics().running)

    def __enter__(self) -> Busy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cold_pool() -> None:
    """Let the default pool's threads beyond its core size retire, so a round includes growth."""
    pool = bridge.default_pool()
    timeout = pool.idle_timeout
    pool.configure(idle_timeout=0.01)
    pool.wait_idle()
    deadline = time.monotonic() + 5
    while pool.statistics().threads > pool.core and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.configure(idle_timeout=timeout)


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def calibrate() -> int:
    """Iterations of `spin` that take about 1 ms of CPU here (CPU time: other processes
    taking the CPU during calibration would otherwise make the call shorter)."""
    n = 10_000
    while True:
        start = time.thread_time()
        spin(n)
        took = time.thread_time() - start
        if took > 0.01:
            return max(1, int(n * 0.001 / took))
        n *= 2


async def io_row(ms: int, seconds: float, rounds: int) -> list[Any]:
    calls = max(5, int(seconds / (ms / 1000)))
    sleep = bridge.asyncify(time.sleep, limiter=bridge.Limiter(TASKS))
    executor = concurrent.futures.ThreadPoolExecutor(TASKS)
    loop = asyncio.get_running_loop()
    cold: list[float] = []
    warm: list[float] = []
    e: list[float] = []
    threads: list[int] = []
    for _ in range(rounds):
        cold_pool()
        cold.append(await throughput(lambda: sleep(ms / 1000), calls))
        warm.append(await throughput(lambda: sleep(ms / 1000), calls))  # grown, as the peer's
        threads.append(bridge.default_pool().statistics().threads)
        e.append(
            await throughput(lambda: loop.run_in_executor(executor, time.sleep, ms / 1000), calls)
        )
    executor.shutdown()
    mc, mw, me = statistics.median(cold), statistics.median(warm), statistics.median(e)
    return [
        f"sleep {ms} ms",
        mw,
        me,
        mw / me,
        f"{min(threads)}-{max(threads)} threads; from a cold pool {mc:.0f}/s = {mc / me:.2f}x",
    ]


FIXED = (1, 2, 3, 4, 5, 6)


async def cpu_row(seconds: float, rounds: int) -> tuple[list[Any], dict[str, float]]:
    """Bridge against the best fixed executor, in 2 x `rounds` rounds, each in a shuffled order.

    The best fixed count is chosen on the even rounds and the ratio measured on the odd
    ones: the fixed counts run within a few percent of each other, and the best of six
    noisy medians taken on the same rounds is the one that had luck (a biased peer).
    """
    n = calibrate()
    calls = max(5, int(seconds / 0.001 / TASKS))
    work = bridge.asyncify(spin, limiter=bridge.Limiter(TASKS))
    loop = asyncio.get_running_loop()
    fixed = {k: concurrent.futures.ThreadPoolExecutor(k) for k in FIXED}
    rates: dict[int, list[float]] = {k: [] for k in (0, *FIXED)}  # 0: bridge
    peaks: list[int] = []
    for _ in range(2 * rounds):
        order = list(rates)
        random.shuffle(order)
        for k in order:
            if k == 0:
                cold_pool()
                with Busy() as busy:
                    rates[0].append(await throughput(lambda: work(n), calls))
                peaks.append(busy.peak)
            else:
                with Busy():  # the sampler takes the GIL as often from every contestant
                    call = lambda ex=fixed[k]: loop.run_in_executor(ex, spin, n)  # noqa: E731
                    rates[k].append(await throughput(call, calls))
    for ex in fixed.values():
        ex.shutdown()
    chosen = {k: statistics.median(rates[k][0::2]) for k in FIXED}
    best = max(chosen, key=lambda k: chosen[k])
    mb = statistics.median(rates[0][1::2])
    peer = statistics.median(rates[best][1::2])
    everywhere = {k: statistics.median(v) for k, v in rates.items()}
    same_rounds = everywhere[0] / max(everywhere[k] for k in FIXED)
    row = [
        "CPU ~1 ms",
        mb,
        peer,
        mb / peer,
        f"busy peak {max(peaks)} (best fixed, chosen on other rounds: {best} threads; "
        f"against the best of all rounds' medians {same_rounds:.2f}x)",
    ]
    return row, {f"fixed {k}": everywhere[k] for k in FIXED}


async def why_cpu(seconds: float, rounds: int) -> None:
    """Where the CPU-bound call's time goes: fixed executors and fixed pools of 1-6
    threads beside the default pool, with CPU time per call (robust to load)."""
    n = calibrate()
    calls = max(5, int(seconds / 0.001 / TASKS))
    loop = asyncio.get_running_loop()
    limiter = bridge.Limiter(TASKS)
    contestants: dict[str, Call] = {}
    for k in FIXED:
        ex = concurrent.futures.ThreadPoolExecutor(k)
        contestants[f"executor {k}"] = lambda ex=ex: loop.run_in_executor(ex, spin, n)
    for k in FIXED:
        pool = bridge.WorkerPool(k, core=k, name=f"bridge-worker-fixed-{k}")
        contestants[f"pool {k}"] = lambda pool=pool: run_job(
            spin, n, executor=pool, limiter=limiter
        )
    work = bridge.asyncify(spin, limiter=limiter)
    contestants["default pool, from cold"] = lambda: work(n)
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    cpu: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, call in contestants.items():
            if name.startswith("default"):
                cold_pool()
            used = time.process_time()
            rates[name].append(await throughput(call, calls))
            cpu[name].append((time.process_time() - used) / (calls * TASKS) * 1e6)
    rows = [
        [name, statistics.median(rates[name]), statistics.median(cpu[name])] for name in contestants
    ]
    print(table(["contestant", "calls/s", "CPU µs/call (all threads)"], rows))
    print(f"\npool: {bridge.default_pool().statistics()}")


def pg_row(queries: int, rounds: int) -> list[Any]:
    """`SELECT pg_sleep(0.005)` from 50 tasks: the DB-API adapter against asyncio.to_thread."""
    from bench.dbapi import postgres, run_bridge, run_to_thread

    pg = postgres()
    sql = "SELECT pg_sleep(0.005), %s"
    b: list[float] = []
    a: list[float] = []
    for _ in range(rounds):
        # The thread transport: the question is the worker pool (psycopg2's default is the loop).
        b.append(queries / run_bridge(pg, sql, queries, TASKS, transport="thread")[0])
        a.append(queries / run_to_thread(pg, sql, queries, TASKS)[0])
    mb, ma = statistics.median(b), statistics.median(a)
    return [
        "pg_sleep(5 ms), DB-API adapter, thread transport",
        mb,
        ma,
        mb / ma,
        "vs asyncio.to_thread + psycopg2.pool",
    ]


async def trivial_row(rounds: int) -> list[Any]:
    b: list[float] = []
    a: list[float] = []
    cold_pool()
    await in_flight(bridge.to_thread, 2000)
    await in_flight(asyncio.to_thread, 2000)
    for _ in range(rounds):
        b.append(await in_flight(bridge.to_thread, 20_000))
        a.append(await in_flight(asyncio.to_thread, 20_000))
    mb, ma = statistics.median(b), statistics.median(a)
    threads = bridge.default_pool().statistics().threads
    return [
        "trivial, 100 in flight (µs/call)",
        mb,
        ma,
        mb / ma,
        f"{threads} (vs asyncio.to_thread)",
    ]


async def main(seconds: float, rounds: int) -> tuple[list[list[Any]], dict[str, float]]:
    rows = [await io_row(ms, seconds, rounds) for ms in (2, 5, 20)]
    cpu, fixed = await cpu_row(seconds, rounds)
    rows.append(cpu)
    print(f"pool after the CPU-bound row: {bridge.default_pool().statistics()}")
    rows.append(await trivial_row(rounds))
    return rows, fixed


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.4, help="ideal length of one cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-queries", type=int, default=1000, help="0: no PostgreSQL row")
    parser.add_argument(
        "--why", action="store_true", help="only the CPU-bound call, against fixed pools too"
    )
    args = parser.parse_args()
    load = os.getloadavg()
    if args.why:
        asyncio.run(why_cpu(args.seconds, args.rounds))
        print(f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
        return
    rows, fixed = asyncio.run(main(args.seconds, args.rounds))
    if args.pg_queries:
        rows.insert(3, pg_row(args.pg_queries, args.rounds))
    print(table(["workload", "bridge", "peer", "ratio", "pool"], rows))
    print(
        f"\ncalls/s (trivial: µs per call); peer: 50-thread executor for sleeps, best fixed "
        f"executor for CPU ({', '.join(f'{k}: {v:.0f}/s' for k, v in fixed.items())}); "
        f"CPUs: {os.cpu_count()}; median of {args.rounds} rounds; load average "
        f"{load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(f"pool: {bridge.default_pool().statistics()}")
    save("pool", {"seconds": args.seconds, "rounds": args.rounds, "rows": rows, "fixed": fixed})


if __name__ == "__main__":
    cli()
