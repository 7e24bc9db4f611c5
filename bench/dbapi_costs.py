"""What does one DB-API query through bridge cost the client, the server and the scheduler?

For A/B runs of a change to the core (two worktrees, alternated under the bench
lock): bridge's PK SELECT and single-row INSERT as `bench.dbapi` runs them (50
tasks, a pool of 50 psycopg2 connections), one line per cell, with what a rate
alone hides on a shared machine: the client's CPU per query (process and loop
thread), its context switches per query (voluntary: a thread slept, on a futex
or a socket; involuntary: preempted), the PostgreSQL server's CPU per query (its
processes' clocks: the server shares the client's cores), how many results each
wake-up of the loop delivered, and the worker pool's statistics.

    python -m bench.dbapi_costs LABEL [select,insert] [asyncio,uvloop]   (QUERIES=8000)
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

import anyio
import psycopg2

from bench._report import percentile
from bench.dbapi import PG_WORK, Heartbeat, pg_tables, postgres, timed
from bridge import _waker
from bridge.adapters.dbapi import create_pool

_TICK = os.sysconf("SC_CLK_TCK")
_drains = 0
_drain = _waker.Waker._drain


def _counting_drain(self: _waker.Waker) -> None:
    global _drains
    _drains += 1
    _drain(self)


def server_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if "(postgres)" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def run(pg: dict[str, Any], sql: str, total: int, uvloop: bool) -> dict[str, Any]:
    width = 50

    async def main() -> dict[str, Any]:
        async with create_pool(psycopg2.connect, min_size=width, max_size=width, **pg) as pool:

            async def call(key: int) -> None:
                async with pool.connection() as conn:
                    if sql.startswith("SELECT"):
                        await conn.fetchone(sql, (key,))
                    else:
                        await conn.execute(sql, (key,))

            server, usage, drains = server_cpu(), resource.getrusage(resource.RUSAGE_SELF), _drains
            elapsed, beat = await timed(call, total, width)  # a warm-up run, then the timed one
            after = resource.getrusage(resource.RUSAGE_SELF)
            queries = 2 * total
            return {
                "rate": total / elapsed,
                "beat": beat,
                "server": (server_cpu() - server) / queries,
                "voluntary": (after.ru_nvcsw - usage.ru_nvcsw) / queries,
                "involuntary": (after.ru_nivcsw - usage.ru_nivcsw) / queries,
                "per_drain": queries / max(1, _drains - drains),
                "pool": pool._workers.statistics(),
            }

    result: dict[str, Any] = anyio.run(main, backend_options={"use_uvloop": uvloop})
    return result


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "bridge"
    works = sys.argv[2].split(",") if len(sys.argv) > 2 else ["select", "insert"]
    loops = sys.argv[3].split(",") if len(sys.argv) > 3 else ["asyncio", "uvloop"]
    total = int(os.environ.get("QUERIES", "8000"))
    _waker.Waker._drain = _counting_drain  # type: ignore[method-assign]
    pg = postgres()
    with pg_tables(pg) as t:
        for work in works:
            sql = PG_WORK[work][0].format(t=t)
            for loop in loops:
                r = run(pg, sql, total, loop == "uvloop")
                beat: Heartbeat = r["beat"]
                s = r["pool"]
                p50, p99 = (percentile(beat.lateness, q) * 1e3 for q in (50, 99))
                print(
                    f"{label} {work} {loop}: {r['rate']:.0f} q/s; client CPU {beat.cpu * 1e6:.1f} "
                    f"µs/q (loop {beat.loop_cpu * 1e6:.1f}); server {r['server'] * 1e6:.1f} µs/q; "
                    f"context switches {r['voluntary']:.2f}+{r['involuntary']:.2f}/q; "
                    f"{r['per_drain']:.1f} results per wake-up; heartbeat p50/p99 "
                    f"{p50:.2f}/{p99:.2f} ms; threads {s.threads} (grown {s.grown}, "
                    f"capped {s.capped}); load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
