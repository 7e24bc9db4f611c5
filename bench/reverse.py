"""Sync calling async, and futures into the loop: bridge against the peers.

1. A round trip from a worker thread back into the loop that sent it:
   `bridge.syncify` (in a `bridge.to_thread` worker) against
   `anyio.from_thread.run` (in an `anyio.to_thread` worker) and asgiref's
   `async_to_sync` (in a `sync_to_async` worker). Target: ≤ 0.6x the best peer.
2. `Portal.call` from plain sync code against anyio's blocking portal.
   Target: ≤ 0.6x.
3. Awaiting 10,000 concurrent futures completed on other threads:
   `bridge.wrap_future` against `asyncio.wrap_future`. Target: ≤ 0.5x.

    python -m bench.reverse [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import uvloop
from asgiref.sync import async_to_sync, sync_to_async

import bridge
from bench._report import save, table


async def nothing() -> None:
    await anyio.lowlevel.checkpoint()


def timed_calls(call: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


async def round_trips(calls: int, rounds: int) -> dict[str, float]:
    bridge_fn = bridge.syncify(nothing)
    asgiref_fn = async_to_sync(nothing)
    samples: dict[str, list[float]] = {}
    for round_ in range(rounds + 1):  # round 0 warms up: threads started, imports done
        measured = {
            "bridge.syncify": await bridge.to_thread(timed_calls, bridge_fn, calls),
            "anyio.from_thread.run": await anyio.to_thread.run_sync(
                timed_calls, lambda: anyio.from_thread.run(nothing), calls
            ),
            "asgiref async_to_sync": await sync_to_async(timed_calls, thread_sensitive=False)(
                asgiref_fn, calls
            ),
        }
        if round_:
            for name, value in measured.items():
                samples.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in samples.items()}


def portals(calls: int, rounds: int) -> dict[str, float]:
    ours, theirs = [], []
    with bridge.Portal(use_uvloop=False) as portal:
        with anyio.from_thread.start_blocking_portal() as blocking:
            for round_ in range(rounds + 1):
                a = timed_calls(lambda: portal.call(nothing), calls)
                b = timed_calls(lambda: blocking.call(nothing), calls)
                if round_:
                    ours.append(a)
                    theirs.append(b)
    return {
        "bridge.Portal.call": statistics.median(ours),
        "anyio BlockingPortal.call": statistics.median(theirs),
    }


def _settle_all(futures: list[concurrent.futures.Future[int]]) -> None:
    for i, future in enumerate(futures):
        future.set_result(i)


async def futures(count: int, wrap: Callable[[Any], Any]) -> float:
    """`count` tasks parked on futures that another thread then completes in a burst.

    The clock runs from the first completion to the last task resumed: the
    delivery path only, not creating the tasks.
    """
    pending: list[concurrent.futures.Future[int]] = [
        concurrent.futures.Future() for _ in range(count)
    ]
    results: list[int] = []
    parked = 0
    all_parked = anyio.Event()

    async def waiter(f: concurrent.futures.Future[int]) -> None:
        nonlocal parked
        parked += 1
        if parked == count:
            all_parked.set()
        results.append(await wrap(f))

    async with anyio.create_task_group() as tg:
        for f in pending:
            tg.start_soon(waiter, f)
        await all_parked.wait()
        await anyio.lowlevel.checkpoint()  # the last waiter parks too
        start = time.perf_counter()
        completer = threading.Thread(target=_settle_all, args=(pending,))
        completer.start()
    elapsed = time.perf_counter() - start
    completer.join()
    assert len(results) == count
    return elapsed / count * 1e6


async def all_futures(count: int, rounds: int) -> dict[str, float]:
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(await futures(count, bridge.wrap_future))
        theirs.append(await futures(count, asyncio.wrap_future))
    return {
        "bridge.wrap_future": statistics.median(ours),
        "asyncio.wrap_future": statistics.median(theirs),
    }


def rows_for(question: str, loop: str, results: dict[str, float]) -> list[list[Any]]:
    ours = next(v for k, v in results.items() if k.startswith("bridge"))
    best_peer = min(v for k, v in results.items() if not k.startswith("bridge"))
    return [
        [
            question,
            loop,
            name,
            value,
            value / best_peer if name.startswith("bridge") else value / ours,
        ]
        for name, value in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--futures", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    rows: list[list[Any]] = []
    for loop, runner in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        trips = runner(round_trips(args.calls, args.rounds))
        futs = runner(all_futures(args.futures, args.rounds))
        out[loop] = {"round_trip": trips, "futures": futs}
        rows += rows_for("sync->async round trip", loop, trips)
        rows += rows_for(f"await {args.futures} futures", loop, futs)
    portal = portals(args.calls, args.rounds)
    out["portal"] = portal
    rows += rows_for("portal call", "asyncio", portal)
    headers = [
        "question",
        "loop",
        "call",
        "µs/call",
        "ratio (bridge: to best peer; peers: to bridge)",
    ]
    print(table(headers, rows))
    save("reverse", {"calls": args.calls, "futures": args.futures, "results": out})


if __name__ == "__main__":
    main()
