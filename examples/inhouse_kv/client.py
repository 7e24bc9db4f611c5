"""The "legacy driver": a blocking client whose requests complete through callbacks.

Like many in-house and C-backed drivers, it writes requests on the caller's
thread and a reader thread of its own calls `on_done(value, error)` when each
reply arrives. `scan` is a plain blocking generator.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator

OnDone = Callable[[str | None, Exception | None], None]


class KVError(Exception):
    """The server refused a request."""


class KVClient:
    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._sock = socket.create_connection(self._address)
        self._lock = threading.Lock()
        self._waiting: deque[OnDone] = deque()
        self._reader = threading.Thread(target=self._read, name="kv-reader", daemon=True)
        self._reader.start()

    def get_async(self, key: str, on_done: OnDone) -> None:
        self._send(f"GET {key}", on_done)

    def set_async(self, key: str, value: str, on_done: OnDone) -> None:
        self._send(f"SET {key} {value}", on_done)

    def scan(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Every (key, value) under `prefix`, read from a connection of its own (blocking)."""
        with socket.create_connection(self._address) as sock, sock.makefile("rw") as f:
            f.write(f"SCAN {prefix}\n")
            f.flush()
            for line in f:
                if line == "END\n":
                    return
                _, key, value = line.rstrip("\n").split(" ", 2)
                yield key, value

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join()

    def _send(self, line: str, on_done: OnDone) -> None:
        with self._lock:  # replies come back in request order
            self._waiting.append(on_done)
            self._sock.sendall(line.encode() + b"\n")

    def _read(self) -> None:
        for raw in self._sock.makefile("r"):
            kind, _, rest = raw.rstrip("\n").partition(" ")
            on_done = self._waiting.popleft()
            if kind == "ERR":
                on_done(None, KVError(rest))
            else:
                on_done(rest if kind == "VAL" else None, None)
        while self._waiting:  # the connection closed under requests in flight
            self._waiting.popleft()(None, KVError("connection closed"))
