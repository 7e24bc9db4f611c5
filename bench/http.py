"""Is `requests` through bridge as fast as a thread pool, without hurting the loop?

2,000 GETs, 100 in flight, to a local aiohttp server in another process that
answers each after 20 ms. Peers: `requests` in a `ThreadPoolExecutor` of the
same size (with requests' default pool of 10 connections, and with one sized
to 100), `asyncio.to_thread` + `requests` (the default executor: its own
size), and the native async clients `httpx` and `aiohttp` for reference. For
the asyncio runs, a heartbeat task sleeps 1 ms in a loop and records how late
it wakes: that is how long the loop was kept from its other work.

Each client first runs the whole load once untimed (connections open,
threads started, as in a long-lived service), then once timed. Each figure is
the median of interleaved rounds; ratios are to the tuned thread pool.

    python -m bench.http [--requests 2000] [--width 100] [--delay-ms 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import requests
import uvloop
from aiohttp import web
from requests.adapters import HTTPAdapter

import bridge
from bench._report import percentile, save, table
from bridge.adapters.requests import AsyncSession

BASELINE = "requests + ThreadPoolExecutor (pool 100)"


# -- the server, in its own process -----------------------------------------------


def serve(delay: float) -> None:
    async def hello(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        print(port, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def start_server(delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.http", "--serve", "--delay-ms", str(delay_ms)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/"


# -- clients -----------------------------------------------------------------------


class Heartbeat:
    """A task that sleeps 1 ms in a loop; lateness = how much later than asked it woke."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.running = True

    async def run(self) -> None:
        while self.running:
            start = time.perf_counter()
            await anyio.sleep(0.001)
            self.lateness.append(time.perf_counter() - start - 0.001)


async def fan_out(call: Callable[[], Awaitable[Any]], total: int, width: int) -> None:
    per_task, extra = divmod(total, width)

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    async with anyio.create_task_group() as tg:
        for i in range(width):
            tg.start_soon(worker, per_task + (i < extra))


def check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"server answered {status}")


async def with_heartbeat(
    body: Callable[[], Awaitable[None]],
) -> tuple[float, Heartbeat]:
    """Time `body()` with a heartbeat running, after one untimed warm-up run of it.

    The warm-up opens the client's connections and starts its threads, as a
    long-lived service would have long before; only the second run counts.
    """
    await body()
    beat = Heartbeat()
    async with anyio.create_task_group() as tg:
        tg.start_soon(beat.run)
        start = time.perf_counter()
        await body()
        elapsed = time.perf_counter() - start
        beat.running = False
    return elapsed, beat


def run_bridge(
    url: str, total: int, width: int, backend: str = "asyncio"
) -> tuple[float, Heartbeat]:
    async def main() -> tuple[float, Heartbeat]:
        async with AsyncSession(limiter=bridge.Limiter(width)) as session:

            async def get() -> None:
                check((await session.get(url)).status_code)

            return await with_heartbeat(lambda: fan_out(get, total, width))

    if backend == "uvloop":
        return anyio.run(main, backend_options={"use_uvloop": True})
    return anyio.run(main, backend=backend)


def run_thread_pool(url: str, total: int, width: int, pool_size: int | None) -> tuple[float, None]:
    with requests.Session() as session:
        if pool_size is not None:
            adapter = HTTPAdapter(pool_connections=10, pool_maxsize=pool_size)
            session.mount("http://", adapter)

        def get(_: int) -> None:
            check(session.get(url, timeout=(10, 60)).status_code)

        with ThreadPoolExecutor(max_workers=width) as executor:
            list(executor.map(get, range(total)))  # warm-up, as in `with_heartbeat`
            start = time.perf_counter()
            list(executor.map(get, range(total)))
            return time.perf_counter() - start, None


def run_asyncio_to_thread(url: str, total: int, width: int) -> tuple[float, Heartbeat]:
    async def main() -> tuple[float, Heartbeat]:
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(pool_maxsize=width))

            async def get() -> None:
                response = await asyncio.to_thread(session.get, url, timeout=(10, 60))
                check(response.status_code)

            return await with_heartbeat(lambda: fan_out(get, total, width))

    return asyncio.run(main())


def run_httpx(url: str, total: int, width: int) -> tuple[float, Heartbeat]:
    async def main() -> tuple[float, Heartbeat]:
        limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
        async with httpx.AsyncClient(limits=limits) as client:

            async def get() -> None:
                check((await client.get(url)).status_code)

            return await with_heartbeat(lambda: fan_out(get, total, width))

    return asyncio.run(main())


def run_aiohttp(url: str, total: int, width: int) -> tuple[float, Heartbeat]:
    async def main() -> tuple[float, Heartbeat]:
        connector = aiohttp.TCPConnector(limit=width)
        async with aiohttp.ClientSession(connector=connector) as client:

            async def get() -> None:
                async with client.get(url) as response:
                    await response.read()
                    check(response.status)

            return await with_heartbeat(lambda: fan_out(get, total, width))

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.delay_ms / 1000)
        return

    total, width = args.requests, args.width
    peers: dict[str, Callable[[str], tuple[float, Heartbeat | None]]] = {
        "bridge AsyncSession (asyncio)": lambda url: run_bridge(url, total, width),
        "bridge AsyncSession (uvloop)": lambda url: run_bridge(url, total, width, "uvloop"),
        "bridge AsyncSession (trio)": lambda url: run_bridge(url, total, width, "trio"),
        BASELINE: lambda url: run_thread_pool(url, total, width, width),
        "requests + ThreadPoolExecutor (pool 10, default)": lambda url: run_thread_pool(
            url, total, width, None
        ),
        "asyncio.to_thread + requests": lambda url: run_asyncio_to_thread(url, total, width),
        "httpx.AsyncClient (native async)": lambda url: run_httpx(url, total, width),
        "aiohttp (native async)": lambda url: run_aiohttp(url, total, width),
    }
    process, url = start_server(args.delay_ms)
    try:
        times: dict[str, list[float]] = {name: [] for name in peers}
        lateness: dict[str, list[float]] = {name: [] for name in peers}
        for _ in range(args.rounds):
            for name, run in peers.items():
                elapsed, beat = run(url)
                times[name].append(elapsed)
                if beat is not None:
                    lateness[name].extend(beat.lateness)
    finally:
        process.terminate()
        process.wait()

    base = total / statistics.median(times[BASELINE])
    rows, results = [], {}
    for name in peers:
        rate = total / statistics.median(times[name])
        late = lateness[name]
        p50 = percentile(late, 50) * 1000 if late else None
        p99 = percentile(late, 99) * 1000 if late else None
        worst = max(late) * 1000 if late else None
        rows.append(
            [
                name,
                round(rate),
                rate / base,
                "-" if p50 is None else p50,
                "-" if p99 is None else p99,
                "-" if worst is None else worst,
            ]
        )
        results[name] = {
            "requests_per_s": rate,
            "ratio": rate / base,
            "heartbeat_lateness_ms": None
            if late is None or not late
            else {"p50": p50, "p99": p99, "max": worst, "samples": len(late)},
        }
    print(
        f"\n{total} GETs, {width} in flight, server answers after {args.delay_ms:g} ms; "
        f"median of {args.rounds} rounds; ratio to '{BASELINE}'\n"
    )
    print(
        table(
            ["client", "req/s", "ratio", "heartbeat p50 ms", "p99 ms", "max ms"],
            rows,
        )
    )
    path = save(
        "http",
        {
            "requests": total,
            "width": width,
            "delay_ms": args.delay_ms,
            "rounds": args.rounds,
            "baseline": BASELINE,
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
