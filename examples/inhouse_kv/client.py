"""The "legacy driver": a blocking client whose requests complete through callbacks.

Like many in-house and C-backed drivers (cassandra-driver's reactor, a C
client's I/O thread), it queues each request for an I/O thread of its own,
which writes it and calls `on_done(value, error)` when the reply arrives; the
caller never waits on the socket. `scan` is a plain blocking generator.
"""

from __future__ import annotations

import queue
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
        self._outbox: queue.SimpleQueue[tuple[str, OnDone] | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="kv-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name="kv-writer", daemon=True)
        self._reader.start()
        self._writer.start()

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
        self._outbox.put(None)
        self._writer.join()
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join()

    def _send(self, line: str, on_done: OnDone) -> None:
        if not self._writer.is_alive():
            raise KVError("client closed")
        self._outbox.put((line, on_done))

    def _write(self) -> None:
        while (item := self._outbox.get()) is not None:
            line, on_done = item
            with self._lock:  # replies come back in request order
                self._waiting.append(on_done)
            try:
                self._sock.sendall(line.encode() + b"\n")
            except OSError as exc:
                with self._lock:
                    self._waiting.remove(on_done)
                on_done(None, KVError(f"connection lost: {exc}"))

    def _read(self) -> None:
        for raw in self._sock.makefile("r"):
            kind, _, rest = raw.rstrip("\n").partition(" ")
            with self._lock:
                on_done = self._waiting.popleft()
            if kind == "ERR":
                on_done(None, KVError(rest))
            else:
                on_done(rest if kind == "VAL" else None, None)
        while self._waiting:  # the connection closed under requests in flight
            self._waiting.popleft()(None, KVError("connection closed"))
