"""Does bridge keep its speed and its memory over a million calls?

1,000,000 `await bridge.to_thread(noop)` with 200 in flight on asyncio, uvloop
and trio; `asyncio.to_thread` (trio: `trio.to_thread.run_sync`) does a tenth as
many in the same run for the speed ratio. RSS is read from /proc after a
warm-up of 50,000 calls and at the end: growth means something is kept per call.

    python -m bench.soak [--calls 1000000] [--in-flight 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import trio

import bridge
from bench._report import save, table

Caller = Callable[[Callable[[], Any]], Awaitable[Any]]


def noop() -> None:
    return None


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


async def drive(call: Caller, calls: int, in_flight: int) -> float:
    """Seconds for `calls` calls, `in_flight` long-lived tasks each making its share."""
    share = calls // in_flight

    async def worker() -> None:
        for _ in range(share):
            await call(noop)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(worker)
    return time.perf_counter() - start


def measure(backend: str, uvloop: bool, calls: int, in_flight: int) -> dict[str, Any]:
    peer: Caller = trio.to_thread.run_sync if backend == "trio" else asyncio.to_thread  # type: ignore[assignment]

    async def main() -> dict[str, Any]:
        await drive(bridge.to_thread, 50_000, in_flight)  # warm-up: threads, caches
        gc.collect()
        before = rss_mb()
        took = await drive(bridge.to_thread, calls, in_flight)
        gc.collect()
        after = rss_mb()
        peer_calls = calls // 10
        peer_took = await drive(peer, peer_calls, in_flight)
        us, peer_us = took / calls * 1e6, peer_took / peer_calls * 1e6
        return {
            "us": us,
            "peer_us": peer_us,
            "speedup": peer_us / us,
            "rss_before": before,
            "rss_after": after,
            "rss_growth": after - before,
        }

    options: dict[str, Any] = {"backend": backend}
    if backend == "asyncio":
        options["use_uvloop"] = uvloop
    return bridge.run(main, **options)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--in-flight", type=int, default=200)
    args = parser.parse_args()
    rows, data = [], {}
    for name, backend, uvloop in (
        ("asyncio", "asyncio", False),
        ("uvloop", "asyncio", True),
        ("trio", "trio", False),
    ):
        r = measure(backend, uvloop, args.calls, args.in_flight)
        data[name] = r
        rows.append(
            [
                name,
                r["us"],
                r["peer_us"],
                r["speedup"],
                r["rss_before"],
                r["rss_after"],
                r["rss_growth"],
            ]
        )
    print(f"{args.calls:,} calls, {args.in_flight} in flight (peer: a tenth as many)\n")
    print(
        table(
            [
                "loop",
                "bridge µs/call",
                "peer µs/call",
                "speedup",
                "RSS before MB",
                "RSS after MB",
                "growth MB",
            ],
            rows,
        )
    )
    save("soak", {"calls": args.calls, "in_flight": args.in_flight, "results": data})


if __name__ == "__main__":
    main()
