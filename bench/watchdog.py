"""What do the LoopWatchdog and strict mode cost a busy program?

Workload: many trivial bridged calls (`await bridge.to_thread(int, 1)`), 64 at
a time, so the loop, the worker pool and the hand-off are all hot. Each
configuration (plain; watchdog on; strict mode on; both) runs on asyncio,
uvloop and trio. Rounds are interleaved and each figure is the median of the
rounds, in microseconds per call; ratios are to "plain" on the same backend.
Targets: watchdog <= 1.03, strict <= 1.10.

    python -m bench.watchdog [--calls 20000] [--width 64] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio

import bridge
from bench._report import save, table
from bridge import strict
from bridge.watchdog import LoopWatchdog

CONFIGS = ["plain", "watchdog", "strict", "watchdog+strict"]
BACKENDS: list[tuple[str, str, dict[str, Any]]] = [
    ("asyncio", "asyncio", {"use_uvloop": False}),
    ("uvloop", "asyncio", {"use_uvloop": True}),
    ("trio", "trio", {}),
]


async def workload(calls: int, width: int) -> float:
    """Seconds for `calls` trivial to_thread calls, `width` in flight."""
    per_task = calls // width

    async def worker() -> None:
        for _ in range(per_task):
            await bridge.to_thread(int, 1)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(width):
            tg.start_soon(worker)
    return time.perf_counter() - start


async def one_round(config: str, calls: int, width: int) -> float:
    await workload(calls // 10, width)  # warm: threads started, caches hot
    if "watchdog" in config:
        # on_block: a busy benchmark may trip it; that must not print.
        async with LoopWatchdog(0.05, on_block=lambda report: None):
            if "strict" in config:
                with strict():
                    return await workload(calls, width)
            return await workload(calls, width)
    if "strict" in config:
        with strict():
            return await workload(calls, width)
    return await workload(calls, width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for label, backend, options in BACKENDS:
            for config in CONFIGS:
                seconds = anyio.run(
                    one_round, config, args.calls, args.width,
                    backend=backend, backend_options=options,
                )  # fmt: skip
                samples.setdefault((label, config), []).append(seconds)

    rows = []
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, _, _ in BACKENDS:
        plain = statistics.median(samples[(label, "plain")]) / args.calls * 1e6
        for config in CONFIGS:
            us = statistics.median(samples[(label, config)]) / args.calls * 1e6
            rows.append([label, config, us, us / plain])
            results.setdefault(label, {})[config] = {"us_per_call": us, "ratio": us / plain}
    print(
        f"{args.calls} calls of `await bridge.to_thread(int, 1)`, {args.width} in flight, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print(table(["backend", "configuration", "µs/call", "ratio to plain"], rows))
    path = save(
        "watchdog",
        {
            "calls": args.calls,
            "width": args.width,
            "rounds": args.rounds,
            "targets": {"watchdog": 1.03, "strict": 1.10},
            "results": results,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
