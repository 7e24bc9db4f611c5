"""How soon a deadline reaches the thread and the driver (issue 14's deadline targets).

Timed here, not in the tests (which assert what happens, never how fast), on
asyncio, uvloop and trio, each case `--repeat` times; the table gives the
median and the worst:

1. Cassandra: a request under `fail_after(0.2)` to a node primed to answer in
   5 s; from the deadline until the session's in-flight count is back to 0
   (target: within 0.3 s of the call, i.e. 0.1 s after the deadline), with
   the loop transport and the thread transport.
2. `to_thread`: a function polling `bridge.check_cancelled()` every 1 ms; from
   its caller's cancellation until the function has stopped (target: 0.1 s).
3. requests: `AsyncSession(timeout=(5, 600))`, a GET to `/hang` under
   `fail_after(0.5)`; how the thread's call ended (target: requests' own
   `ReadTimeout`, not a cut socket) and when, after the deadline.

    python -m bench.deadlines [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import requests

import bridge
from bench._report import save, table
from bridge.adapters.cassandra import AsyncCluster
from bridge.adapters.requests import AsyncSession
from bridge.testing.cqlserver import CQLServer
from bridge.testing.httpserver import HTTPTestServer

BACKENDS = {
    "asyncio": ("asyncio", {"use_uvloop": False}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
SLOW = "SELECT release_version FROM system.local"


async def until(predicate: Callable[[], bool], limit: float = 30.0) -> float:
    """Seconds (perf_counter) at which `predicate` first held, polled every 1 ms."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the state is another thread's
            await anyio.sleep(0.001)
    return time.perf_counter()


async def cassandra_slot(server: Any, transport: str) -> float:
    """Seconds from the deadline until the abandoned request's slot is free."""
    async with AsyncCluster(
        server.contact_points,
        port=server.port,
        transport=transport,  # type: ignore[arg-type]
        protocol_version=5,
    ) as cluster:
        session = await cluster.connect()
        await session.execute(SLOW)  # connected and warm
        server.prime(SLOW, delay=5.0, times=1)
        with anyio.move_on_after(0.2) as scope:
            await session.execute(SLOW)
        deadline = time.perf_counter() - (anyio.current_time() - scope.deadline)
        freed = await until(lambda: session.statistics().in_flight == 0)
        return freed - deadline


async def polling_thread() -> float:
    """Seconds from the caller's cancellation until a `check_cancelled` loop has stopped."""
    started = threading.Event()
    stopped: list[float] = []

    def crunch() -> None:
        started.set()
        try:
            while True:
                bridge.check_cancelled()
                time.sleep(0.001)
        finally:
            stopped.append(time.perf_counter())

    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.to_thread, crunch)
        await bridge.to_thread(started.wait, 30)
        await anyio.sleep(0.01)
        cancelled = time.perf_counter()
        tg.cancel_scope.cancel()
    await until(lambda: bool(stopped))
    return stopped[0] - cancelled


async def requests_hang(server: HTTPTestServer) -> tuple[float, str]:
    """Seconds from the deadline until the thread's call ended, and how it ended."""
    ended: list[tuple[float, str]] = []
    async with AsyncSession(limiter=bridge.Limiter(2), timeout=(5, 600)) as session:
        send = session.session.send

        def recording(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            try:
                return send(request, **kwargs)
            except BaseException as exc:
                ended.append((time.perf_counter(), type(exc).__name__))
                raise

        session.session.send = recording  # type: ignore[method-assign]
        start = time.perf_counter()
        try:
            with anyio.fail_after(0.5):
                await session.get(server.url("/hang"))
        except TimeoutError:
            pass
        await until(lambda: bool(ended))
    return ended[0][0] - (start + 0.5), ended[0][1]


def run(backend: str, repeat: int, cql: Any, http: HTTPTestServer) -> dict[str, Any]:
    name, options = BACKENDS[backend]

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"loop": [], "thread": [], "poll": [], "http": [], "how": set()}
        for _ in range(repeat):
            out["loop"].append(await cassandra_slot(cql, "loop"))
            out["thread"].append(await cassandra_slot(cql, "thread"))
            out["poll"].append(await polling_thread())
            after, how = await requests_hang(http)
            out["http"].append(after)
            out["how"].add(how)
        return out

    return anyio.run(main, backend=name, backend_options=options)  # type: ignore[no-any-return]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} / {max(values) * 1000:.1f}"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    data = {}
    with CQLServer.start_in_thread() as cql, HTTPTestServer() as http:
        for backend in BACKENDS:
            out = run(backend, args.repeat, cql, http)
            data[backend] = {k: sorted(v) if k == "how" else v for k, v in out.items()}
            rows.append(
                [
                    backend,
                    ms(out["loop"]),
                    ms(out["thread"]),
                    ms(out["poll"]),
                    f"{ms(out['http'])}, {' '.join(sorted(out['how']))}",
                ]
            )
    headers = [
        "loop",
        "Cassandra slot free after the deadline, loop transport (median / worst ms)",
        "same, thread transport",
        "check_cancelled loop stopped after the cancel",
        "requests call ended after the deadline, and how",
    ]
    print(table(headers, rows))
    print(
        f"\n{args.repeat} of each; targets: slot back within 0.3 s of the call (0.1 s after "
        f"its 0.2 s deadline), polling thread stopped within 0.1 s, requests ended by its own "
        f"ReadTimeout; load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    save("deadlines", {"repeat": args.repeat, "results": data})


if __name__ == "__main__":
    cli()
