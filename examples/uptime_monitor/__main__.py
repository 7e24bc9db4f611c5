"""`python -m examples.uptime_monitor` (or `python examples/uptime_monitor`): run the monitor.

With no options it checks local demo sites and stores in an embedded CQL
server, so it runs on a machine with no network; `--cassandra` and `--sites`
point it at real infrastructure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a directory: make `examples.uptime_monitor` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.uptime_monitor",
        description="Check many sites at once, store every check in Cassandra, serve a "
        "status page. With no options: local demo sites and an embedded CQL server.",
    )
    parser.add_argument(
        "--cassandra",
        metavar="HOST[,HOST...]",
        help="Cassandra contact points (default: start an embedded CQL server)",
    )
    parser.add_argument("--cassandra-port", type=int, default=9042, metavar="PORT")
    parser.add_argument("--keyspace", default="uptime")
    parser.add_argument("--replication-factor", type=int, default=1, metavar="N")
    parser.add_argument(
        "--ttl-days", type=float, default=7.0, metavar="DAYS", help="keep checks this long"
    )
    parser.add_argument(
        "--sites",
        type=Path,
        metavar="FILE",
        help="one 'URL' or 'NAME URL' per line (default: local demo sites)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the status page")
    parser.add_argument("--port", type=int, default=8080, help="port of the status page (0: any)")
    parser.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="between two checks of a site (default: 2 for demo sites, 30 with --sites)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="per check (default: the interval, <= 10)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=100, metavar="N", help="requests in flight at once"
    )
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (demos, tests)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import bridge
    from examples.uptime_monitor.service import Settings, serve

    settings = Settings(
        cassandra=[h.strip() for h in args.cassandra.split(",") if h.strip()]
        if args.cassandra
        else None,
        cassandra_port=args.cassandra_port,
        keyspace=args.keyspace,
        replication_factor=args.replication_factor,
        ttl_days=args.ttl_days,
        sites_file=args.sites,
        host=args.host,
        port=args.port,
        interval=args.interval,
        timeout=args.timeout,
        concurrency=args.concurrency,
        duration=args.duration,
    )
    try:
        bridge.run(serve, settings)  # on uvloop when it is installed
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"uptime monitor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
