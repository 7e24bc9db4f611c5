"""Local demo sites on 127.0.0.1 that behave like the web does: fast, slow, flaky and down.

The embedded default checks these, so the monitor shows something worth
watching on a machine with no network. It is a real HTTP server (stdlib,
one thread per connection): the monitor cannot tell it from the internet.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEMO_SITE_NAMES", "OUTAGE_SITE", "DemoSites", "OutageSchedule"]

OUTAGE_SITE = "billing"
"""The demo site that goes down for a while, periodically (HTTP 503)."""


@dataclass(frozen=True)
class OutageSchedule:
    """When `OUTAGE_SITE` is down: from `after` seconds, for `length`, again every `every`."""

    after: float = 6.0
    length: float = 8.0
    every: float = 30.0

    def is_down(self, elapsed: float) -> bool:
        if elapsed < self.after:
            return False
        return (elapsed - self.after) % self.every < self.length


class _Reset(Exception):
    """Close the connection without an answer, as an overloaded proxy does."""


# What each site does to one request: returns (HTTP status, seconds to wait first).
_Behaviour = Callable[[random.Random, "DemoSites"], tuple[int, float]]


def _steady(low_ms: float, high_ms: float) -> _Behaviour:
    return lambda rng, _: (200, rng.uniform(low_ms, high_ms) / 1000)


def _jittery(rng: random.Random, _: DemoSites) -> tuple[int, float]:
    return 200, min(rng.lognormvariate(-3.0, 0.8), 1.2)  # median 50 ms, a long tail


def _flaky(rng: random.Random, _: DemoSites) -> tuple[int, float]:
    return (500 if rng.random() < 0.08 else 200), rng.uniform(0.01, 0.04)


def _resetting(rng: random.Random, _: DemoSites) -> tuple[int, float]:
    if rng.random() < 0.06:
        raise _Reset
    return 200, rng.uniform(0.02, 0.08)


def _hanging(rng: random.Random, _: DemoSites) -> tuple[int, float]:
    # Now and then slower than any sane check timeout: the check fails with a timeout.
    return 200, (12.0 if rng.random() < 0.07 else rng.uniform(0.05, 0.15))


def _outage(rng: random.Random, sites: DemoSites) -> tuple[int, float]:
    if sites.schedule.is_down(time.monotonic() - sites.started):
        return 503, 0.005
    return 200, rng.uniform(0.01, 0.03)


_SITES: dict[str, _Behaviour] = {
    "shop": _steady(5, 25),
    "blog": _steady(20, 60),
    "api": _flaky,
    "search": _steady(200, 600),
    "images": _jittery,
    OUTAGE_SITE: _outage,
    "auth": _steady(3, 12),
    "chat": _resetting,
    "reports": _hanging,
    "docs": _steady(8, 30),
}

DEMO_SITE_NAMES: tuple[str, ...] = tuple(_SITES)


class DemoSites:
    """Serves every demo site at `http://127.0.0.1:PORT/<name>` until `close()`."""

    def __init__(self, schedule: OutageSchedule | None = None, *, seed: int | None = None) -> None:
        self.schedule = schedule or OutageSchedule()
        self.started = time.monotonic()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="uptime-demo-sites",
            daemon=True,
        )
        self._thread.start()

    def urls(self) -> dict[str, str]:
        """Site name -> URL, in display order."""
        return {name: f"http://127.0.0.1:{self.port}/{name}" for name in _SITES}

    def _answer(self, name: str) -> tuple[int, float]:
        behaviour = _SITES.get(name)
        if behaviour is None:
            return 404, 0.0
        with self._rng_lock:  # one seeded generator, so a seeded run is reproducible
            rng = random.Random(self._rng.random())
        return behaviour(rng, self)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> DemoSites:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging demo request must not hold up shutdown
    request_queue_size = 1024
    owner: DemoSites

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are the point of some sites


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.split("?", 1)[0].strip("/")
        try:
            status, delay = self.server.owner._answer(name)
        except _Reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if delay:
            time.sleep(delay)  # a handler thread of the demo server, not an event loop
        body = f"<h1>{name}</h1><p>HTTP {status}</p>\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
