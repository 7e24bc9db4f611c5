"""Does the loop stay responsive while 10,000 bridged calls are in flight?

A heartbeat task sleeps 1 ms in a loop and records how late each wake-up is,
while 10,000 tasks keep one call each of a short blocking function (50 µs of
sleep) in flight through `bridge.to_thread`, five calls per task; for comparison, the same with
`asyncio.to_thread` (trio: `trio.to_thread.run_sync`). Target: p99 lateness
≤ 2 ms with bridge.

    python -m bench.looplag [--calls 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import trio
import uvloop

import bridge
from bench._report import percentile, save, table

ROUNDS = 5


def short_block() -> None:
    time.sleep(0.00005)


async def heartbeat(lateness: list[float], measuring: anyio.Event, stop: anyio.Event) -> None:
    while not stop.is_set():
        expected = time.perf_counter() + 0.001
        await anyio.sleep(0.001)
        if measuring.is_set():
            lateness.append(max(0.0, time.perf_counter() - expected) * 1000)


async def run_with_heartbeat(
    call: Callable[[Callable[[], None]], Awaitable[Any]], calls: int
) -> dict[str, float]:
    """`calls` tasks each make ROUNDS calls back to back: `calls` are in flight throughout.

    The heartbeat is measured once every task is started, so the figure is the
    cost of keeping that many calls in flight, not of creating the tasks.
    """
    lateness: list[float] = []
    measuring = anyio.Event()
    stop = anyio.Event()

    async def client() -> None:
        for _ in range(ROUNDS):
            await call(short_block)

    start = time.perf_counter()
    async with anyio.create_task_group() as outer:
        outer.start_soon(heartbeat, lateness, measuring, stop)
        async with anyio.create_task_group() as tg:
            for i in range(calls):
                tg.start_soon(client)
                if i % 200 == 199:
                    await anyio.lowlevel.checkpoint()
            measuring.set()
        stop.set()
    elapsed = time.perf_counter() - start
    return {
        "calls_per_s": calls * ROUNDS / elapsed,
        "p50_ms": percentile(lateness, 50),
        "p99_ms": percentile(lateness, 99),
        "max_ms": max(lateness, default=0.0),
        "beats": len(lateness),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    cases: list[tuple[str, str, Callable[[], dict[str, float]]]] = [
        (
            "asyncio",
            "bridge.to_thread",
            lambda: asyncio.run(run_with_heartbeat(bridge.to_thread, args.calls)),
        ),
        (
            "asyncio",
            "asyncio.to_thread",
            lambda: asyncio.run(run_with_heartbeat(asyncio.to_thread, args.calls)),
        ),
        (
            "uvloop",
            "bridge.to_thread",
            lambda: uvloop.run(run_with_heartbeat(bridge.to_thread, args.calls)),
        ),
        (
            "uvloop",
            "asyncio.to_thread",
            lambda: uvloop.run(run_with_heartbeat(asyncio.to_thread, args.calls)),
        ),
        (
            "trio",
            "bridge.to_thread",
            lambda: trio.run(run_with_heartbeat, bridge.to_thread, args.calls),
        ),
        (
            "trio",
            "trio.to_thread.run_sync",
            lambda: trio.run(run_with_heartbeat, trio.to_thread.run_sync, args.calls),
        ),
    ]
    results = []
    for loop, name, run in cases:
        r = run()
        results.append({"loop": loop, "call": name, **r})
    headers = ["loop", "call", "calls/s", "heartbeat p50 ms", "p99 ms", "max ms", "beats"]
    rows = [
        [r["loop"], r["call"], r["calls_per_s"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["beats"]]
        for r in results
    ]
    print(table(headers, rows))
    print(
        f"\n{args.calls} calls of a 50 µs blocking function in flight ({ROUNDS} rounds); "
        "heartbeat every 1 ms, measured once all tasks have started"
    )
    save("looplag", {"calls": args.calls, "results": results})


if __name__ == "__main__":
    main()
