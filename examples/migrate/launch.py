"""What runs every step and is not part of the app: command line, embedded defaults, server, demo.

Each step's `app.py` ends with `main(open_app)`. `open_app(contact_points,
port, keyspace)` is a context manager that gives a WSGI app (steps 0-2, served
by werkzeug, a thread per request) or an ASGI app (step 3, served by uvicorn,
which runs its lifespan). With no `--cassandra`, a `bridge.testing.cqlserver`
runs in a thread of this process; a small local website (website.py) gives
the checker pages to check. `--demo` serves on a free port, makes the demo's
requests, prints them and exits: that is what `bridge watch` runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import requests

from examples.migrate.website import Website

OpenApp = Callable[[list[str], int, str], AbstractContextManager[Any]]
CQL_PORT = 9042


@dataclass(frozen=True)
class Server:
    url: str


@contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[Server]:
    """Serve a WSGI or an ASGI app from a background thread until the block ends."""
    if inspect.iscoroutinefunction(getattr(app, "__call__", None)):  # noqa: B004 - ASGI test
        with _serve_asgi(app, host, port) as url:
            yield Server(url)
    else:
        with _serve_wsgi(app, host, port) as url:
            yield Server(url)


@contextmanager
def _serve_wsgi(app: Any, host: str, port: int) -> Iterator[str]:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log: the demo prints
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _serve_asgi(app: Any, host: str, port: int) -> Iterator[str]:
    import uvicorn

    sock = socket.create_server((host, port))  # bound here, so the port is known at once
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="asgi-server", daemon=True
    )
    thread.start()
    try:
        # Requests would queue on the listening socket meanwhile; waiting here
        # turns a failed lifespan startup into an error instead of a hang.
        while not server.started:
            thread.join(0.01)
            if not thread.is_alive():
                raise RuntimeError("the ASGI app failed to start; see the log above")
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@contextmanager
def cassandra(contact: str | None) -> Iterator[tuple[list[str], int]]:
    """Contact points and port: `--cassandra HOST[:PORT]`, or an embedded CQL server."""
    if contact is not None:
        host, _, port = contact.partition(":")
        yield [host], int(port or CQL_PORT)
        return
    from bridge.testing.cqlserver import CQLServer

    with CQLServer.start_in_thread() as server:
        yield server.contact_points, server.port


def demo(base: str, site: Website, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The demo's requests: add three links, list them, re-check one after its page changed.

    Returns each exchange (method, path, status, JSON body) for comparison.
    """
    site.set_page("/slow", 200, "Slow page", delay=0.2)
    exchanges = []

    def call(method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, base + path, json=body, timeout=30)
        result = response.json()
        exchanges.append(
            {"method": method, "path": path, "status": response.status_code, "body": result}
        )
        shown = f" {json.dumps(body)}" if body is not None else ""
        out(f"{method} {path}{shown} -> {response.status_code}")
        for link in result if isinstance(result, list) else [result]:
            out(f"    {link['status']} {link['title']!r} {link['url']} {link['id']}")
        return result

    for path in ("/", "/slow", "/gone"):
        call("POST", "/links", {"url": site.url(path)})
    slow = next(link for link in call("GET", "/links") if link["url"] == site.url("/slow"))
    site.set_page("/slow", 200, "Slow page, updated", delay=0.2)
    call("GET", f"/check/{slow['id']}")
    return exchanges


def main(open_app: OpenApp, argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the link checker with embedded defaults.")
    parser.add_argument("--cassandra", metavar="HOST[:PORT]", help="a real cluster to use")
    parser.add_argument("--keyspace", default="migrate")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default 8000; with --demo a free port")
    parser.add_argument(
        "--demo", action="store_true", help="make the demo requests, print them, and exit"
    )
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else (0 if args.demo else 8000)
    with ExitStack() as stack:
        site = stack.enter_context(Website())
        contact_points, cql_port = stack.enter_context(cassandra(args.cassandra))
        app = stack.enter_context(open_app(contact_points, cql_port, args.keyspace))
        server = stack.enter_context(serve(app, args.host, port))
        if args.demo:
            demo(server.url, site)
            return
        print(f"link checker on {server.url}; a local site to check is at {site.url()}")
        print(
            f"  curl -X POST -H 'Content-Type: application/json' "
            f"""-d '{{"url": "{site.url("/slow")}"}}' {server.url}/links"""
        )
        print(f"  curl {server.url}/links", flush=True)
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)  # `kill` shuts down cleanly, like Ctrl-C
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
