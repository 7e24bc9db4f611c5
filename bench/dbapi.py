"""Is a blocking DB-API driver through bridge's pool as fast as the async ways to reach a database?

50 tasks share a pool of 50 connections to the local PostgreSQL and MariaDB
(on the same two cores as the client, so the server's CPU is part of every
figure). Workloads: a primary-key SELECT, a single-row INSERT, and a query
that holds its connection for 5 ms of server time (`pg_sleep(0.005)`).

Peers, side by side in one run:
  * bridge: `create_pool(psycopg2.connect)` / `create_pool(pymysql.connect)`;
    for psycopg2 its default, the loop transport (asyncio, uvloop, trio), and
    `transport="thread"` (a trip to a worker thread per call);
  * `asyncio.to_thread` over `psycopg2.pool.ThreadedConnectionPool` (or a queue
    of PyMySQL connections): the default executor, as most code does it;
  * psycopg 3's native `AsyncConnectionPool`;
  * asyncpg and aiomysql, native async drivers, for reference.

Every contestant first runs the load once untimed (connections open, threads
started), then once timed with a heartbeat task that sleeps 1 ms in a loop and
records how late it wakes. Each figure is the best of `--rounds` interleaved
rounds (the machine is shared); ratios are to bridge's rate. Beside the rates,
the client's CPU time per query, whole process and loop thread alone
(`time.process_time` / `time.thread_time` around the timed run): unlike a rate,
it hardly moves with the machine's load, and it says where a client's cost is
(the native drivers do everything on the loop thread, bridge splits it between
the loop and its workers).

    python -m bench.dbapi [--queries 5000] [--sleep-queries 2000] [--width 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import random
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import aiomysql
import anyio
import asyncpg
import psycopg
import psycopg2
import psycopg2.pool
import psycopg_pool
import pymysql

from bench._report import percentile, save, table
from bridge.adapters.dbapi import create_pool

ROWS = 1000


class Heartbeat:
    """A task that sleeps 1 ms in a loop; lateness = how much later than asked it woke."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.running = True
        self.cpu = 0.0  # the client's CPU seconds per query, all threads (set by `timed`)
        self.loop_cpu = 0.0  # ... of the loop's thread alone

    async def run(self) -> None:
        while self.running:
            start = time.perf_counter()
            await anyio.sleep(0.001)
            self.lateness.append(time.perf_counter() - start - 0.001)


async def fan_out(call: Callable[[int], Awaitable[Any]], total: int, width: int) -> None:
    per_task, extra = divmod(total, width)

    async def worker(n: int, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(n):
            await call(rng.randrange(1, ROWS + 1))

    async with anyio.create_task_group() as tg:
        for i in range(width):
            tg.start_soon(worker, per_task + (i < extra), i)


async def timed(
    call: Callable[[int], Awaitable[Any]], total: int, width: int
) -> tuple[float, Heartbeat]:
    await fan_out(call, total, width)  # warm-up: connections open, threads started
    beat = Heartbeat()
    async with anyio.create_task_group() as tg:
        tg.start_soon(beat.run)
        cpu, loop_cpu = time.process_time(), time.thread_time()
        start = time.perf_counter()
        await fan_out(call, total, width)
        elapsed = time.perf_counter() - start
        beat.cpu = (time.process_time() - cpu) / total
        beat.loop_cpu = (time.thread_time() - loop_cpu) / total
        beat.running = False
    return elapsed, beat


# -- the workloads: (SQL for psycopg2/PyMySQL/psycopg 3, SQL for asyncpg) ----------------

PG_WORK = {
    "select": ("SELECT id, name FROM {t} WHERE id = %s", "SELECT id, name FROM {t} WHERE id = $1"),
    "insert": ("INSERT INTO {t}_w (n) VALUES (%s)", "INSERT INTO {t}_w (n) VALUES ($1)"),
    "sleep5": ("SELECT pg_sleep(0.005), %s", "SELECT pg_sleep(0.005), $1::int"),
}


def run_bridge(
    pg: dict[str, Any],
    sql: str,
    total: int,
    width: int,
    uvloop: bool = False,
    transport: str | None = None,
    backend: str = "asyncio",
) -> Any:
    async def main() -> tuple[float, Heartbeat]:
        async with create_pool(
            psycopg2.connect, min_size=width, max_size=width, transport=transport, **pg
        ) as pool:

            async def call(key: int) -> None:
                async with pool.connection() as conn:
                    await conn.fetchone(sql, (key,)) if sql.startswith(
                        "SELECT"
                    ) else await conn.execute(sql, (key,))

            return await timed(call, total, width)

    if backend == "trio":
        return anyio.run(main, backend="trio")
    return anyio.run(main, backend_options={"use_uvloop": uvloop})


def run_to_thread(pg: dict[str, Any], sql: str, total: int, width: int) -> Any:
    pool = psycopg2.pool.ThreadedConnectionPool(width, width, **pg)

    def query(key: int) -> Any:
        conn = pool.getconn()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, (key,))
                row = cursor.fetchone() if cursor.description else None
            conn.commit()
            return row
        finally:
            pool.putconn(conn)

    async def main() -> tuple[float, Heartbeat]:
        return await timed(lambda key: asyncio.to_thread(query, key), total, width)

    try:
        return asyncio.run(main())
    finally:
        pool.closeall()


def run_plain_threads(pg: dict[str, Any], sql: str, total: int, width: int) -> Any:
    """No event loop: `width` threads, each with its own connection, in a tight loop.

    The driver's own cost and the machine's ceiling for it, against which the
    hand-off to and from a loop (bridge, to_thread) is an overhead."""
    conns = [psycopg2.connect(**pg) for _ in range(width)]
    for conn in conns:
        conn.autocommit = True
    per_thread, extra = divmod(total, width)

    def work(conn: Any, n: int, seed: int) -> None:
        rng = random.Random(seed)
        with conn.cursor() as cursor:
            for _ in range(n):
                cursor.execute(sql, (rng.randrange(1, ROWS + 1),))
                if cursor.description:
                    cursor.fetchone()

    def once() -> float:
        threads = [
            threading.Thread(target=work, args=(conn, per_thread + (i < extra), i))
            for i, conn in enumerate(conns)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    try:
        once()
        beat = Heartbeat()  # no loop, no heartbeat: its lateness stays empty
        cpu = time.process_time()
        elapsed = once()
        beat.cpu = beat.loop_cpu = (time.process_time() - cpu) / total
        return elapsed, beat
    finally:
        for conn in conns:
            conn.close()


def run_psycopg3(pg: dict[str, Any], sql: str, total: int, width: int) -> Any:
    conninfo = psycopg.conninfo.make_conninfo(**pg)

    async def main() -> tuple[float, Heartbeat]:
        async with psycopg_pool.AsyncConnectionPool(
            conninfo, min_size=width, max_size=width, kwargs={"autocommit": True}, open=False
        ) as pool:
            await pool.wait()

            async def call(key: int) -> None:
                async with pool.connection() as conn:
                    cursor = await conn.execute(sql, (key,))
                    if cursor.description:
                        await cursor.fetchone()

            return await timed(call, total, width)

    return asyncio.run(main())


def run_asyncpg(pg: dict[str, Any], sql: str, total: int, width: int) -> Any:
    async def main() -> tuple[float, Heartbeat]:
        pool = await asyncpg.create_pool(
            host=pg["host"],
            port=pg["port"],
            user=pg["user"],
            database=pg["dbname"],
            min_size=width,
            max_size=width,
        )
        try:
            return await timed(lambda key: pool.fetchrow(sql, key), total, width)
        finally:
            await pool.close()

    return asyncio.run(main())


MY_SELECT = "SELECT id, name FROM {t} WHERE id = %s"


def run_bridge_mysql(my: dict[str, Any], sql: str, total: int, width: int) -> Any:
    async def main() -> tuple[float, Heartbeat]:
        async with create_pool(pymysql.connect, min_size=width, max_size=width, **my) as pool:

            async def call(key: int) -> None:
                async with pool.connection() as conn:
                    await conn.fetchone(sql, (key,))

            return await timed(call, total, width)

    return anyio.run(main)


def run_to_thread_mysql(my: dict[str, Any], sql: str, total: int, width: int) -> Any:
    idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
    conns = [pymysql.connect(autocommit=True, **my) for _ in range(width)]
    for conn in conns:
        idle.put(conn)

    def query(key: int) -> Any:
        conn = idle.get()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, (key,))
                return cursor.fetchone()
        finally:
            idle.put(conn)

    try:
        return asyncio.run(timed(lambda key: asyncio.to_thread(query, key), total, width))
    finally:
        for conn in conns:
            conn.close()


def run_aiomysql(my: dict[str, Any], sql: str, total: int, width: int) -> Any:
    async def main() -> tuple[float, Heartbeat]:
        pool = await aiomysql.create_pool(
            host=my["host"],
            port=my["port"],
            user=my["user"],
            password=my["password"],
            db=my["database"],
            minsize=width,
            maxsize=width,
            autocommit=True,
        )
        try:

            async def call(key: int) -> None:
                async with pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute(sql, (key,))
                    await cursor.fetchone()

            return await timed(call, total, width)
        finally:
            pool.close()
            await pool.wait_closed()

    return asyncio.run(main())


# -- cancellation: how soon a cancelled statement is gone from the server ------------------


def run_cancel(
    pg: dict[str, Any], backend: str, uvloop: bool, times: int
) -> list[tuple[float, float]]:
    """Per cancellation: seconds until the query left pg_stat_activity, and until the
    connection was idle in the pool again (polled every 0.5 ms from another thread)."""
    admin = psycopg2.connect(**pg)
    admin.autocommit = True

    def state(tag: str) -> bool:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()",
                (f"%{tag}%",),
            )
            return bool(cursor.fetchone()[0])

    async def main() -> list[tuple[float, float]]:
        out = []
        async with create_pool(psycopg2.connect, min_size=1, max_size=1, **pg) as pool:
            for _ in range(times):
                tag = uuid.uuid4().hex
                async with anyio.create_task_group() as tg:

                    async def sleep(tag: str = tag) -> None:
                        await pool.execute(f"SELECT pg_sleep(60), '{tag}'")

                    tg.start_soon(sleep)
                    while not await anyio.to_thread.run_sync(state, tag):  # noqa: ASYNC110
                        await anyio.sleep(0.001)
                    start = time.perf_counter()
                    tg.cancel_scope.cancel()
                gone = idle = None
                while gone is None or idle is None:
                    now = time.perf_counter() - start
                    if idle is None and pool.statistics().idle == 1:
                        idle = now
                    if gone is None and not await anyio.to_thread.run_sync(state, tag):
                        gone = time.perf_counter() - start
                    await anyio.sleep(0.0005)
                out.append((gone, idle))
        return out

    try:
        if backend == "trio":
            return anyio.run(main, backend="trio")
        return anyio.run(main, backend_options={"use_uvloop": uvloop})
    finally:
        admin.close()


def report_cancel(pg: dict[str, Any], times: int) -> dict[str, Any]:
    rows, saved = [], {}
    for name, backend, uvloop in (
        ("asyncio", "asyncio", False),
        ("uvloop", "asyncio", True),
        ("trio", "trio", False),
    ):
        samples = run_cancel(pg, backend, uvloop, times)
        gone = [g for g, _ in samples]
        idle = [i for _, i in samples]
        rows.append(
            [
                name,
                percentile(gone, 50) * 1000,
                max(gone) * 1000,
                percentile(idle, 50) * 1000,
                max(idle) * 1000,
            ]
        )
        saved[name] = {"gone_s": gone, "idle_s": idle}
    print(f"\nA cancelled SELECT pg_sleep(60), {times} times per loop: ms after the cancel\n")
    print(
        table(
            ["loop", "gone from pg_stat_activity p50", "max", "connection idle in pool p50", "max"],
            rows,
        )
    )
    return saved


# -- servers and tables ------------------------------------------------------------------


def postgres() -> dict[str, Any]:
    for user in ("postgres", "root"):
        kwargs = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": user}
        try:
            psycopg2.connect(**kwargs).close()
            return kwargs
        except psycopg2.OperationalError:
            continue
    raise SystemExit("PostgreSQL is not reachable on 127.0.0.1:5432 (database test)")


MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}


@contextmanager
def pg_tables(pg: dict[str, Any]) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(**pg)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)")
        cursor.execute(
            f"INSERT INTO {name} SELECT i, 'name ' || i FROM generate_series(1, {ROWS}) i"
        )
        cursor.execute(f"CREATE TABLE {name}_w (id serial PRIMARY KEY, n int)")
        cursor.execute(f"ANALYZE {name}")
    try:
        yield name
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {name}, {name}_w")
        conn.close()


@contextmanager
def my_table() -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(autocommit=True, **MARIADB)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text) ENGINE=InnoDB")
        cursor.execute(f"INSERT INTO {name} SELECT seq, concat('name ', seq) FROM seq_1_to_{ROWS}")
    try:
        yield name
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
        conn.close()


# -- the run --------------------------------------------------------------------------------


Result = tuple[float, list[float], list[float], list[float], list[float]]


def measure(
    peers: dict[str, Callable[[], tuple[float, Heartbeat]]], total: int, rounds: int
) -> dict[str, Result]:
    """Per peer: the best rate of interleaved rounds, all its heartbeat samples, its
    CPU seconds per query (process, loop thread) and its rate in each round."""
    rates: dict[str, list[float]] = {name: [] for name in peers}
    late: dict[str, list[float]] = {name: [] for name in peers}
    cpu: dict[str, list[float]] = {name: [] for name in peers}
    loop_cpu: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        for name, run in peers.items():
            elapsed, beat = run()
            rates[name].append(total / elapsed)
            late[name].extend(beat.lateness)
            cpu[name].append(beat.cpu)
            loop_cpu[name].append(beat.loop_cpu)
    return {
        name: (max(rates[name]), late[name], cpu[name], loop_cpu[name], rates[name])
        for name in peers
    }


def report(title: str, results: dict[str, Result], base: str) -> list[list[Any]]:
    rows = []
    base_rates = results[base][4]
    for name, (rate, late, cpu, loop_cpu, rates) in results.items():
        beats: list[Any] = ["n/a (no loop)"] * 3
        if late:
            beats = [percentile(late, 50) * 1000, percentile(late, 99) * 1000, max(late) * 1000]
        loop = min(loop_cpu) * 1e6 if late else "n/a"
        # Paired within each round (the machine's load falls on both): steadier than
        # the ratio of two bests, which follows whichever contestant had the luckiest round.
        paired = statistics.median(r / b for r, b in zip(rates, base_rates, strict=True))
        rows.append(
            [name, round(rate), rate / results[base][0], paired, min(cpu) * 1e6, loop, *beats]
        )
    print(f"\n{title}\n")
    headers = ["contestant", "queries/s", "ratio to bridge", "median per-round ratio"]
    headers += ["client CPU µs/query (min)"]
    headers += ["loop thread µs/query", "heartbeat p50 ms", "p99 ms", "max ms"]
    print(table(headers, rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--sleep-queries", type=int, default=2000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=["select", "insert", "sleep5", "mysql", "cancel"], action="append"
    )
    parser.add_argument("--cancels", type=int, default=10)
    args = parser.parse_args()
    width, rounds = args.width, args.rounds
    chosen = args.only or ["select", "insert", "sleep5", "mysql", "cancel"]
    pg = postgres()
    saved: dict[str, Any] = {"load_before": os.getloadavg()}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    base = "bridge create_pool(psycopg2) asyncio"
    with pg_tables(pg) as t:
        for work in ("select", "insert", "sleep5"):
            if work not in chosen:
                continue
            total = args.sleep_queries if work == "sleep5" else args.queries
            sql, sql_native = (s.format(t=t) for s in PG_WORK[work])
            peers: dict[str, Callable[[], tuple[float, Heartbeat]]] = {
                base: partial(run_bridge, pg, sql, total, width),
                "bridge create_pool(psycopg2) uvloop": partial(
                    run_bridge, pg, sql, total, width, True
                ),
                "bridge create_pool(psycopg2) trio": partial(
                    run_bridge, pg, sql, total, width, backend="trio"
                ),
                'bridge transport="thread" asyncio': partial(
                    run_bridge, pg, sql, total, width, transport="thread"
                ),
                'bridge transport="thread" uvloop': partial(
                    run_bridge, pg, sql, total, width, True, transport="thread"
                ),
                "asyncio.to_thread + psycopg2.pool": partial(run_to_thread, pg, sql, total, width),
                "psycopg 3 AsyncConnectionPool": partial(run_psycopg3, pg, sql, total, width),
                "asyncpg pool (native reference)": partial(
                    run_asyncpg, pg, sql_native, total, width
                ),
                "psycopg2, 50 plain threads, no loop (the driver's ceiling)": partial(
                    run_plain_threads, pg, sql, total, width
                ),
            }
            results = measure(peers, total, rounds)
            title = (
                f"PostgreSQL, {work}: {total} queries, {width} tasks, pools of {width}; "
                f"best of {rounds} interleaved rounds"
            )
            rows = report(title, results, base)
            saved[work] = {"queries": total, "rows": rows}
    if "mysql" in chosen:
        with my_table() as t:
            sql = MY_SELECT.format(t=t)
            total = args.queries
            mybase = "bridge create_pool(pymysql) asyncio"
            peers = {
                mybase: lambda: run_bridge_mysql(MARIADB, sql, total, width),
                "asyncio.to_thread + PyMySQL (a queue of connections)": lambda: run_to_thread_mysql(
                    MARIADB, sql, total, width
                ),
                "aiomysql pool (native reference)": lambda: run_aiomysql(
                    MARIADB, sql, total, width
                ),
            }
            results = measure(peers, total, rounds)
            title = (
                f"MariaDB, primary-key select: {total} queries, {width} tasks, pools of {width}; "
                f"best of {rounds} interleaved rounds"
            )
            saved["mysql_select"] = {"queries": total, "rows": report(title, results, mybase)}
    if "cancel" in chosen:
        saved["cancel"] = report_cancel(pg, args.cancels)
    saved["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    path = save("dbapi", {"width": width, "rounds": rounds, "results": saved})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
