"""A tiny local website for the link checker to check, so every step runs with no network.

Each page has a status, a `<title>` and a delay; `set_page` changes one while
the site runs, which is how the demo and the tests show `GET /check/<id>`
picking up a change. Unknown paths answer 404 "Not found". The delay matters:
a 200 ms page fetched with a blocking call on the event loop stalls the loop
for 200 ms, long enough for `bridge watch` to point at the line.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Page:
    """What one path answers: a status, a title, and how long it takes."""

    status: int
    title: str
    delay: float = 0.0


DEFAULT_PAGES = {
    "/": Page(200, "Welcome"),
    "/about": Page(200, "About us"),
    "/slow": Page(200, "Slow page", delay=0.2),
}
NOT_FOUND = Page(404, "Not found")


class Website:
    """Serves pages on 127.0.0.1 (an ephemeral port unless told) from a thread until `close()`."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._pages = dict(DEFAULT_PAGES)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.website = self  # type: ignore[attr-defined]
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="migrate-website", daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def page(self, path: str) -> Page:
        with self._lock:
            return self._pages.get(path, NOT_FOUND)

    def set_page(self, path: str, status: int, title: str, delay: float = 0.0) -> None:
        """Serve `path` with this status and title from now on."""
        with self._lock:
            self._pages[path] = Page(status, title, delay)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Website:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real site

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the demo prints what matters; access logs would drown it

    def do_GET(self) -> None:
        website: Website = self.server.website  # type: ignore[attr-defined]
        page = website.page(self.path.split("?", 1)[0])
        if page.delay:
            time.sleep(page.delay)  # this server's own thread: the site is slow, not the app
        body = (
            f"<!doctype html><html><head><title>{html.escape(page.title)}</title></head>"
            f"<body><h1>{html.escape(page.title)}</h1></body></html>"
        ).encode()
        self.send_response(page.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
