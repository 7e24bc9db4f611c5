"""What does one bridged call of a trivial function cost, against the peers?

Sequential (one call at a time) and 100 in flight, on asyncio, uvloop and trio,
all in one run. Each figure is the median of several interleaved rounds, in µs
per call; ratios are to `asyncio.to_thread` (to `trio.to_thread.run_sync` on trio).

    python -m bench.overhead [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import trio
import uvloop

import bridge
from bench._report import save, table

Caller = Callable[[Callable[[], Any]], Awaitable[Any]]


def noop() -> None:
    return None


def asyncio_peers() -> dict[str, Callable[[], Caller]]:
    from asgiref.sync import sync_to_async
    from asyncer import asyncify as asyncer_asyncify

    def run_in_executor() -> Caller:
        loop = asyncio.get_running_loop()
        return lambda fn: loop.run_in_executor(None, fn)

    return {
        "bridge.to_thread": lambda: bridge.to_thread,
        "asyncio.to_thread": lambda: asyncio.to_thread,
        "loop.run_in_executor": run_in_executor,
        "anyio.to_thread.run_sync": lambda: anyio.to_thread.run_sync,
        "asgiref sync_to_async": lambda: lambda fn: sync_to_async(fn, thread_sensitive=False)(),
        "asyncer.asyncify": lambda: lambda fn: asyncer_asyncify(fn)(),
    }


def trio_peers() -> dict[str, Callable[[], Caller]]:
    return {
        "bridge.to_thread": lambda: bridge.to_thread,
        "trio.to_thread.run_sync": lambda: trio.to_thread.run_sync,
        "anyio.to_thread.run_sync": lambda: anyio.to_thread.run_sync,
    }


async def sequential(call: Caller, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await call(noop)
    return (time.perf_counter() - start) / calls * 1e6


async def in_flight(call: Caller, calls: int, width: int = 100) -> float:
    per_task = calls // width

    async def worker() -> None:
        for _ in range(per_task):
            await call(noop)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(width):
            tg.start_soon(worker)
    return (time.perf_counter() - start) / (per_task * width) * 1e6


async def measure(
    peers: dict[str, Callable[[], Caller]], calls: int, rounds: int
) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        name: {"sequential": [], "in_flight": []} for name in peers
    }
    for make in peers.values():  # warm up: threads started, imports done
        await in_flight(make(), 2000)
    for _ in range(rounds):
        for name, make in peers.items():
            call = make()
            samples[name]["sequential"].append(await sequential(call, calls // 4))
            samples[name]["in_flight"].append(await in_flight(call, calls))
    return {
        name: {kind: statistics.median(values) for kind, values in kinds.items()}
        for name, kinds in samples.items()
    }


def report(backend: str, results: dict[str, Any], baseline: str) -> list[list[Any]]:
    base = results[baseline]
    rows = []
    for name, r in results.items():
        rows.append(
            [
                backend,
                name,
                r["sequential"],
                r["sequential"] / base["sequential"],
                r["in_flight"],
                r["in_flight"] / base["in_flight"],
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    run = functools.partial(measure, calls=args.calls, rounds=args.rounds)
    results = {
        "asyncio": asyncio.run(run(asyncio_peers())),
        "uvloop": uvloop.run(run(asyncio_peers())),
        "trio": trio.run(run, trio_peers()),
    }
    rows = report("asyncio", results["asyncio"], "asyncio.to_thread")
    rows += report("uvloop", results["uvloop"], "asyncio.to_thread")
    rows += report("trio", results["trio"], "trio.to_thread.run_sync")
    headers = ["loop", "call", "sequential µs", "ratio", "100 in flight µs", "ratio"]
    print(table(headers, rows))
    print(
        f"\nratios: to asyncio.to_thread (trio: to trio.to_thread.run_sync); "
        f"{args.calls} calls, median of {args.rounds} rounds"
    )
    save("overhead", {"calls": args.calls, "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
