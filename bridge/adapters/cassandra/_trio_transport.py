"""trio as the driver's reactor: system tasks read, write and time the driver's connections.

trio has no reader callbacks, so each connection gets a system task that
waits for its socket to be readable and then runs the shared framing code
(`LoopConnection._on_readable`, bounded per turn). Everything else that must
run "at the next turn" goes through one runner task, woken with
`trio.lowlevel.reschedule` (no syscall) rather than `TrioToken.run_sync_soon`,
which writes to trio's wake-up socket on every call, even from trio's own
thread. Timers are one task sleeping in a cancel scope whose deadline moves.
System tasks are cancelled when the trio run ends: the runner's exit closes
every connection (see `Reactor.loop_ending`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ._kit import Waker
from ._transport import LoopConnection, Reactor

__all__ = ["TrioReactor", "trio_reactor"]

log = logging.getLogger("bridge.adapters.cassandra")


class TrioReactor(Reactor):
    """trio: a reader task per connection, one runner for next-turn calls, one timer task."""

    def __init__(self, waker: Waker, on_loop_end: Callable[[], None]) -> None:
        super().__init__(waker, on_loop_end)
        self._soon: deque[Callable[[], None]] = deque()
        self._parked: Any = None  # the runner task, while it waits for calls
        self._deadline = math.inf
        self._timer_scope: trio.CancelScope | None = None
        self._scopes: list[trio.CancelScope] = []
        self._writing: set[LoopConnection] = set()
        trio.lowlevel.spawn_system_task(self._run_soon, name="bridge cassandra reactor")
        trio.lowlevel.spawn_system_task(self._run_timers, name="bridge cassandra timers")

    # -- next-turn calls ----------------------------------------------------------

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._soon.append(fn)
        task = self._parked
        if task is not None:
            self._parked = None
            trio.lowlevel.reschedule(task)

    async def _run_soon(self) -> None:
        def abort(_: Any) -> trio.lowlevel.Abort:
            self._parked = None
            return trio.lowlevel.Abort.SUCCEEDED

        try:
            with self._scope():
                calls = self._soon
                while True:
                    if not calls:
                        self._parked = trio.lowlevel.current_task()
                        await trio.lowlevel.wait_task_rescheduled(abort)
                    for _ in range(len(calls)):
                        try:
                            calls.popleft()()
                        except Exception:
                            log.exception("bridge cassandra reactor: a call failed")
                    if calls:
                        # Queued by what just ran (a decode continuation): let
                        # the tasks it woke run first, as a loop turn would.
                        await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self.loop_ending()

    def _scope(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._scopes.append(scope)
        return scope

    # -- sockets --------------------------------------------------------------

    def watch_read(self, conn: LoopConnection) -> None:
        trio.lowlevel.spawn_system_task(self._read, conn, name="bridge cassandra reader")

    async def _read(self, conn: LoopConnection) -> None:
        sock = conn._socket
        with self._scope():
            try:
                while not conn.is_closed:
                    await trio.lowlevel.wait_readable(sock)
                    conn._on_readable()
            except (trio.ClosedResourceError, OSError, ValueError):
                pass  # closed under us (unwatch), or the socket went away
            except Exception as exc:  # a system task must never raise
                conn.defunct(exc)

    def watch_write(self, conn: LoopConnection, on: bool) -> None:
        if on and conn not in self._writing:
            self._writing.add(conn)
            trio.lowlevel.spawn_system_task(self._write, conn, name="bridge cassandra writer")

    async def _write(self, conn: LoopConnection) -> None:
        sock = conn._socket
        with self._scope():
            try:
                while conn._unsent is not None and not conn.is_closed:
                    await trio.lowlevel.wait_writable(sock)
                    conn._on_writable()
            except (trio.ClosedResourceError, OSError, ValueError):
                pass
            except Exception as exc:
                conn.defunct(exc)
            finally:
                self._writing.discard(conn)

    def unwatch(self, conn: LoopConnection) -> None:
        if conn._socket.fileno() >= 0:
            trio.lowlevel.notify_closing(conn._socket)

    # -- timers ---------------------------------------------------------------

    def arm_at(self, wall_time: float) -> None:
        deadline = trio.current_time() + max(0.0, wall_time - time.time())
        self._deadline = deadline
        if self._timer_scope is not None:
            self._timer_scope.deadline = deadline

    async def _run_timers(self) -> None:
        with self._scope():
            while True:
                with trio.CancelScope(deadline=self._deadline) as scope:
                    self._timer_scope = scope
                    await trio.sleep_forever()
                self._timer_scope = None
                self._deadline = math.inf
                self._fire()

    def close(self) -> None:
        super().close()
        for scope in self._scopes:
            scope.cancel()


def trio_reactor(waker: Waker, on_loop_end: Callable[[], None]) -> Reactor:
    """A reactor for the running trio run (call from a trio task)."""
    return TrioReactor(waker, on_loop_end)
