"""A real HTTP/1.1 server on 127.0.0.1, in threads, for the requests adapter's tests.

Standard library only (the core imports no driver, and neither does this).
Keep-alive is on, so connection reuse is real; the server counts what a test
cannot see from the client side: requests in progress and their peak,
connections opened, requests that hang and whether the client's socket
reached EOF.

    with HTTPTestServer() as server:
        requests.get(server.url("/echo?x=1")).json()["query"]  # {"x": ["1"]}

Endpoints: `/echo` (any method; reflects method, path, query, headers, body,
json, form and files), `/redirect?to=PATH&status=302`, `/cookies/set?k=v`,
`/basic-auth/USER/PASSWORD`, `/status/CODE`, `/stream?size=N&chunk=M`
(chunked, generated on the fly), `/lines?n=N`, `/gate` (answers once
`server.gate` is set), `/hang` (never answers; waits for the client to close),
`/stream-hang` (sends part of a body, then never the rest), `/sleep?ms=N`.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_HANG_LIMIT = 120.0  # seconds a hanging handler waits before giving up on its own


class HTTPTestServer:
    """Serves the endpoints above on an ephemeral port until `close()`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self.gate = threading.Event()  # `/gate` requests answer once this is set
        self.stopping = threading.Event()
        self.active = 0  #: requests being handled now
        self.peak = 0  #: the most handled at once
        self.connections = 0  #: TCP connections accepted
        self.hanging = 0  #: `/hang` and `/stream-hang` requests waiting now
        self.eofs = 0  #: hanging requests whose client closed or shut down the socket
        self.paths: Counter[str] = Counter()  #: requests seen, by path
        self.stream_bytes_sent = 0
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.owner = self
        self.host = host
        self.port: int = self._httpd.server_port
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="bridge-httpserver",
            daemon=True,
        )
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.stopping.set()
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> HTTPTestServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _enter(self, path: str) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.paths[path] += 1

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def _count(self, name: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + delta)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 100 clients connecting at once must not overflow the backlog
    owner: HTTPTestServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the
    # second waits for the client's delayed ACK (~40 ms), and a "20 ms" route took 60.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read counters, not logs

    def setup(self) -> None:
        super().setup()
        self.server.owner._count("connections")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    # -- plumbing

    def _dispatch(self, head: bool = False) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        owner._enter(parts.path)
        try:
            body = self._read_body()
            route = parts.path.strip("/").split("/")
            handler = getattr(self, f"_{route[0].replace('-', '_')}", None)
            if handler is None:
                self._send(404, b"no such endpoint\n", "text/plain")
            else:
                handler(route[1:], query, body, head)
        finally:
            owner._leave()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200, head: bool = False) -> None:
        self._send(status, json.dumps(data).encode(), head=head)

    def _wait_for_eof(self) -> None:
        """Hold the request unanswered until the client closes its socket (or the server stops)."""
        owner = self.server.owner
        owner._count("hanging")
        self.close_connection = True
        deadline = time.monotonic() + _HANG_LIMIT
        try:
            while not owner.stopping.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable:
                    try:
                        data = self.connection.recv(1)
                    except OSError:
                        data = b""
                    if not data:
                        owner._count("eofs")
                        return
        finally:
            owner._count("hanging", -1)

    # -- endpoints: _<first path segment>(rest, query, body, head)

    def _echo(self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool) -> None:
        content_type = self.headers.get("Content-Type", "")
        data: dict[str, Any] = {
            "method": self.command,
            "path": urlsplit(self.path).path,
            "query": query,
            "headers": dict(self.headers.items()),
            "body": base64.b64encode(body).decode(),
            "json": None,
            "form": {},
            "files": {},
        }
        if content_type.startswith("application/json") and body:
            data["json"] = json.loads(body)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            data["form"] = parse_qs(body.decode(), keep_blank_values=True)
        elif content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload: bytes = part.get_payload(decode=True)  # type: ignore[assignment]
                if part.get_filename() is not None:
                    data["files"][name] = {"filename": part.get_filename(), "content": payload}
                else:
                    data["form"][name] = [payload.decode()]
            for entry in data["files"].values():
                entry["content"] = entry["content"].decode()
        self._json(data, head=head)

    def _redirect(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        status = int(query.get("status", ["302"])[0])
        self._send(status, b"", "text/plain", {"Location": query.get("to", ["/echo"])[0]}, head)

    def _cookies(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        self.send_response(200)
        for name, values in query.items():
            self.send_header("Set-Cookie", f"{name}={values[0]}; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _basic_auth(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        expected = "Basic " + base64.b64encode(f"{rest[0]}:{rest[1]}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            self._json({"authenticated": True, "user": rest[0]}, head=head)
        else:
            self._send(401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="test"'}, head)

    def _status(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        self._send(int(rest[0]), b"", "text/plain", head=head)

    def _stream(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        size = int(query.get("size", ["1048576"])[0])
        chunk = int(query.get("chunk", ["65536"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = bytes(range(256)) * (chunk // 256 + 1)
        sent = 0
        while sent < size:
            n = min(chunk, size - sent)
            self.wfile.write(b"%x\r\n%s\r\n" % (n, block[:n]))
            sent += n
            self.server.owner._count("stream_bytes_sent", n)
        self.wfile.write(b"0\r\n\r\n")

    def _lines(self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool) -> None:
        n = int(query.get("n", ["10"])[0])
        self._send(200, b"".join(b"line %d\n" % i for i in range(n)), "text/plain", head=head)

    def _gate(self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool) -> None:
        self.server.owner.gate.wait(_HANG_LIMIT)
        self._json({"gate": "open"}, head=head)

    def _sleep(self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool) -> None:
        time.sleep(int(query.get("ms", ["10"])[0]) / 1000)
        self._json({"slept": True}, head=head)

    def _hang(self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool) -> None:
        self._wait_for_eof()

    def _stream_hang(
        self, rest: list[str], query: dict[str, list[str]], body: bytes, head: bool
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"5\r\nhello\r\n")
        self.wfile.flush()
        self._wait_for_eof()


def unused_port() -> int:
    """A port nothing listens on (bound, then released), for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
