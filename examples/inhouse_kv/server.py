"""A tiny key-value server over TCP (one text line per request), for the example and its tests."""

from __future__ import annotations

import socketserver
import threading


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        store: dict[str, str] = self.server.store  # type: ignore[attr-defined]
        for raw in self.rfile:
            op, _, rest = raw.decode().rstrip("\n").partition(" ")
            if op == "GET":
                value = store.get(rest)
                reply = "NONE" if value is None else f"VAL {value}"
            elif op == "SET":
                key, _, value = rest.partition(" ")
                store[key] = value
                reply = "OK"
            elif op == "SCAN":
                rows = "".join(
                    f"ROW {k} {v}\n" for k, v in sorted(store.items()) if k.startswith(rest)
                )
                reply = rows + "END"
            else:
                reply = f"ERR unknown command {op!r}"
            self.wfile.write(reply.encode() + b"\n")


class KVServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.store: dict[str, str] = {}
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> KVServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
