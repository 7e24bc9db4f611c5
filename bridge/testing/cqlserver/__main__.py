"""``python -m bridge.testing.cqlserver``: serve an in-memory Cassandra cluster.

Prints one JSON line when listening (``{"event": "listening", "port": ...}``)
and, on SIGTERM/SIGINT, one with the CPU time it used
(``{"event": "stopped", "cpu_user": ..., "cpu_system": ...}``), so scripts
and benchmarks can drive it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from ._faults import parse_fault_spec
from ._runner import new_event_loop
from ._server import CQLServer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge.testing.cqlserver",
        description="An in-memory Cassandra (native protocol v5 and v4) for tests and benchmarks.",
    )
    p.add_argument("--host", default="127.0.0.1", help="first node's address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9042, help="port of every node (0: any free one)")
    p.add_argument("--nodes", type=int, default=1, help="nodes on host, host+1, ... (default 1)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OPTIONS:PATTERN",
        help="prime a fault, e.g. 'delay=0.2:SELECT', 'error=read_timeout,times=2:FROM ks.t', "
        "'no_response,node=1:INSERT'; options: delay=S error=KIND message=TEXT no_response "
        "disconnect times=N node=I regex on=QUERY|EXECUTE|BATCH|PREPARE",
    )
    p.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's loop even if uvloop is installed"
    )
    p.add_argument("--no-activity-log", action="store_true", help="do not record received requests")
    p.add_argument(
        "--auth",
        action="store_true",
        help="require logins (PasswordAuthenticator; default superuser cassandra/cassandra)",
    )
    p.add_argument(
        "--authz",
        action="store_true",
        help="check permissions (CassandraAuthorizer: GRANT, REVOKE, LIST PERMISSIONS); "
        "needs --auth",
    )
    return p


async def _serve(args: argparse.Namespace) -> None:
    server = CQLServer(
        nodes=args.nodes,
        host=args.host,
        port=args.port,
        authenticator="PasswordAuthenticator" if args.auth else None,
        authorizer="CassandraAuthorizer" if args.authz else None,
    )
    if args.no_activity_log:
        server.activity_log.enabled = False
    for spec in args.fault:
        server.prime(**parse_fault_spec(spec))  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        _emit(
            {
                "event": "listening",
                "port": server.port,
                "contact_points": server.contact_points,
                "pid": os.getpid(),
            }
        )
        await stop.wait()
    times = os.times()
    _emit({"event": "stopped", "cpu_user": times.user, "cpu_system": times.system})


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for spec in args.fault:
        try:
            parse_fault_spec(spec)
        except ValueError as exc:
            _parser().error(str(exc))
    loop = new_event_loop(False if args.no_uvloop else None)
    try:
        loop.run_until_complete(_serve(args))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
