"""Run a server from sync code: on a loop in a background thread, or in another process.

The driver is synchronous and so are most tests and benchmarks that use it;
they get a plain handle whose methods hop onto the server's loop and wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._faults import Activity, ErrorKind, Fault, Opcode
from ._permissions import AUTHORIZER

if TYPE_CHECKING:
    from ._results import Result
    from ._server import CQLServer

T = TypeVar("T")


def new_event_loop(use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    """A fresh loop: uvloop when installed (unless told not to), else asyncio's."""
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class ServerThread:
    """A :class:`CQLServer` serving from a loop in a daemon thread; sync methods.

    Made by ``CQLServer.start_in_thread(...)``; use it as a context manager or
    call :meth:`close`. Methods block until the loop has done the work and
    must not be called from the server's own loop thread.
    """

    def __init__(self, server: CQLServer, *, use_uvloop: bool | None = None) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(ready, use_uvloop), name="cqlserver", daemon=True
        )
        self._thread.start()
        ready.result(timeout=60)

    def _main(self, ready: concurrent.futures.Future[None], use_uvloop: bool | None) -> None:
        loop = new_event_loop(use_uvloop)
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- plumbing -------------------------------------------------------------

    def _check_thread(self) -> asyncio.AbstractEventLoop:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "ServerThread methods block until the server's loop runs them, so calling one "
                "from that loop would deadlock; use the CQLServer (handle.server) directly there"
            )
        if self._loop is None or self._loop.is_closed():
            raise RuntimeError("the server thread has stopped; start a new one")
        return self._loop

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop thread and return its result."""
        loop = self._check_thread()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=60)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        loop = self._check_thread()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    # -- the server's controls, synchronously ----------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def contact_points(self) -> list[str]:
        return self.server.contact_points

    def stop_node(self, node: int | str) -> None:
        """Stop a node (listener and connections closed); see ``CQLServer.stop_node``."""
        self.run(self.server.stop_node(node))

    def start_node(self, node: int | str) -> None:
        self.run(self.server.start_node(node))

    def add_node(self) -> int:
        """Bootstrap a node on the next address; returns its index."""
        return self.run(self.server.add_node()).index

    def remove_node(self, node: int | str) -> None:
        """Decommission a node (stopped and gone from the peers tables)."""
        self.run(self.server.remove_node(node))

    def prime(
        self,
        pattern: str | re.Pattern[str],
        *,
        regex: bool = False,
        delay: float = 0.0,
        error: ErrorKind | None = None,
        message: str | None = None,
        no_response: bool = False,
        disconnect: bool = False,
        times: int | None = None,
        node: int | None = None,
        opcodes: Iterable[Opcode] = ("QUERY", "EXECUTE", "BATCH"),
    ) -> Fault:
        """Prime a fault; see ``FaultRegistry.prime``."""
        return self.server.prime(
            pattern,
            regex=regex,
            delay=delay,
            error=error,
            message=message,
            no_response=no_response,
            disconnect=disconnect,
            times=times,
            node=node,
            opcodes=opcodes,
        )

    def clear_faults(self) -> None:
        self.server.clear_faults()

    def activity(
        self,
        *,
        node: int | None = None,
        opcode: str | None = None,
        contains: str | None = None,
        include_system: bool = False,
    ) -> list[Activity]:
        return self.server.activity(
            node=node, opcode=opcode, contains=contains, include_system=include_system
        )

    def clear_activity(self) -> None:
        self.server.clear_activity()

    def forget_prepared(self) -> None:
        self.call(self.server.forget_prepared)

    def execute(
        self, query: str, values: list[bytes | None] | None = None, keyspace: str | None = None
    ) -> Result:
        """Run CQL on the engine directly (seeding data without a driver)."""
        result: Result = self.call(self.server.execute, query, values, keyspace)
        return result

    def close(self) -> None:
        """Stop the server and its thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=60)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServerProcess:
    """A server in a child process (``python -m bridge.testing.cqlserver``).

    For benchmarks: the server's CPU time is then its own and measurable
    (:meth:`cpu_seconds`). Faults are primed with command-line specs
    (``faults=["delay=0.1:SELECT"]``, see ``parse_fault_spec``).
    """

    def __init__(
        self,
        *,
        nodes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Sequence[str] = (),
        use_uvloop: bool | None = None,
        python: str = sys.executable,
        startup_timeout: float = 60.0,
        authenticator: str | None = None,
        authorizer: str | None = None,
    ) -> None:
        cmd = [python, "-m", "bridge.testing.cqlserver", "--host", host, "--port", str(port)]
        cmd += ["--nodes", str(nodes)]
        if authenticator in (
            "PasswordAuthenticator",
            "org.apache.cassandra.auth.PasswordAuthenticator",
        ):
            cmd.append("--auth")
        elif authenticator not in (None, "AllowAllAuthenticator"):
            raise ValueError(f"unknown authenticator {authenticator!r}")
        if authorizer in ("CassandraAuthorizer", AUTHORIZER):
            cmd.append("--authz")
        elif authorizer not in (None, "AllowAllAuthorizer"):
            raise ValueError(f"unknown authorizer {authorizer!r}")
        for spec in faults:
            cmd += ["--fault", spec]
        if use_uvloop is False:
            cmd.append("--no-uvloop")
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        self.stopped: dict[str, Any] | None = None
        info = self._read_event(startup_timeout)
        if info is None or info.get("event") != "listening":
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the CQL server process did not start (got {info!r})")
        self.port: int = int(info["port"])
        self.contact_points: list[str] = list(info["contact_points"])
        self.pid = self.process.pid

    def _read_event(self, timeout: float) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    return None
                line = self.process.stdout.readline()
                if not line:
                    return None
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    return event

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (from /proc)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def close(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """Stop the server; returns its exit report (CPU times) when it gave one."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.stopped = self._read_event(timeout)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.stopped

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
