"""How fast is the in-memory CQL server, and how much CPU does it cost next to its client?

The server runs in its own process (``python -m bridge.testing.cqlserver``);
the real cassandra-driver, default settings, sends prepared single-row INSERTs
and SELECTs with many in flight (``execute_async`` callback chains). The target
is a server that spends at most half the CPU per request that the client does,
so a test or benchmark using it measures the client, not the fake.

    python -m bench.cqlserver [--requests 20000] [--concurrency 128]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from typing import Any

from cassandra.cluster import Cluster, Session
from cassandra.query import PreparedStatement

from bench._report import save, table
from bridge.testing.cqlserver import CQLServer


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_chains(
    session: Session, stmt: PreparedStatement, args: Any, total: int, concurrency: int
) -> None:
    """``total`` executions, ``concurrency`` at a time; each completion starts the next."""
    lock = threading.Lock()
    done = threading.Event()
    state = {"issued": 0, "finished": 0, "errors": 0}

    def issue() -> None:
        with lock:
            if state["issued"] >= total:
                return
            i = state["issued"]
            state["issued"] += 1
        future = session.execute_async(stmt, args(i))
        future.add_callbacks(on_ok, on_err)

    def finish(error: bool) -> None:
        with lock:
            state["finished"] += 1
            if error:
                state["errors"] += 1
            last = state["finished"] == total
        if last:
            done.set()
        else:
            issue()

    def on_ok(_rows: Any) -> None:
        finish(False)

    def on_err(exc: BaseException) -> None:
        finish(True)

    for _ in range(min(concurrency, total)):
        issue()
    if not done.wait(600):
        raise RuntimeError(f"benchmark stalled: {state}")
    if state["errors"]:
        raise RuntimeError(f"{state['errors']} requests failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    with CQLServer.start_in_subprocess() as server:
        cluster = Cluster(server.contact_points, port=server.port)
        try:
            session = cluster.connect()
            session.execute(
                "CREATE KEYSPACE IF NOT EXISTS bench WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
            session.execute("CREATE TABLE IF NOT EXISTS bench.kv (k int PRIMARY KEY, v text)")
            insert = session.prepare("INSERT INTO bench.kv (k, v) VALUES (?, ?)")
            select = session.prepare("SELECT k, v FROM bench.kv WHERE k = ?")
            payload = "x" * 100
            n = opts.requests
            phases = {
                "prepared INSERT": (insert, lambda i: (i % n, payload)),
                "prepared SELECT": (select, lambda i: (i % n,)),
            }
            # Warm up both paths (driver pools, server caches).
            for stmt, args in phases.values():
                run_chains(session, stmt, args, 2000, opts.concurrency)

            results: dict[str, dict[str, float]] = {}
            for name, (stmt, args) in phases.items():
                best: dict[str, float] | None = None
                for _ in range(opts.rounds):
                    s0, c0, t0 = server.cpu_seconds(), client_cpu(), time.perf_counter()
                    run_chains(session, stmt, args, n, opts.concurrency)
                    t1, c1, s1 = time.perf_counter(), client_cpu(), server.cpu_seconds()
                    row = {
                        "requests_per_s": n / (t1 - t0),
                        "server_cpu_s_per_1k": (s1 - s0) / n * 1000,
                        "client_cpu_s_per_1k": (c1 - c0) / n * 1000,
                    }
                    if best is None or row["requests_per_s"] > best["requests_per_s"]:
                        best = row
                assert best is not None
                best["server_to_client_cpu"] = (
                    best["server_cpu_s_per_1k"] / best["client_cpu_s_per_1k"]
                )
                results[name] = best
        finally:
            cluster.shutdown()
        report = server.close()

    headers = [
        "workload",
        "requests/s",
        "server CPU s/1k req",
        "client CPU s/1k req",
        "server/client",
    ]
    rows = [
        [
            name,
            round(r["requests_per_s"]),
            f"{r['server_cpu_s_per_1k']:.4f}",
            f"{r['client_cpu_s_per_1k']:.4f}",
            f"{r['server_to_client_cpu']:.2f}",
        ]
        for name, r in results.items()
    ]
    print(
        f"\nCQL server (own process) vs cassandra-driver client, {opts.requests} requests, "
        f"{opts.concurrency} in flight, best of {opts.rounds} (target server/client <= 0.5)\n"
    )
    print(table(headers, rows))
    path = save(
        "cqlserver",
        {
            "requests": opts.requests,
            "concurrency": opts.concurrency,
            "rounds": opts.rounds,
            "cpus": os.cpu_count(),
            "results": results,
            "server_exit_report": report,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
