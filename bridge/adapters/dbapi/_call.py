"""One blocking driver call, and who owns its aftermath when the caller gives up.

A cancelled await returns at once, but the driver call may be running in its
thread: the connection is then in the middle of a statement and must not go
back to the pool. The race between the thread starting the call and the task
giving up is settled under a lock: a call given up before it started never
runs; one given up while running is *abandoned*, and its thread, once the
driver returns, hands the outcome to `on_abandon` (which recovers the
connection) instead of to a task that is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

PENDING, RUNNING, DONE, DROPPED, ABANDONED = range(5)


class Call:
    """Run `fn(*args)` in a thread; `give_up()` from the loop decides who handles the outcome."""

    __slots__ = ("_args", "_fn", "_lock", "_on_abandon", "result", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        on_abandon: Callable[[Any, BaseException | None], None],
        lock: threading.Lock,
    ) -> None:
        self._fn = fn
        self._args = args
        self._on_abandon = on_abandon
        # The connection's, not one per call: a connection has one call alive at a
        # time (an abandoned one keeps the connection until its thread recovers it).
        self._lock = lock
        self.state = PENDING
        self.result: Any = None

    def run(self) -> Any:
        """In the thread. A bound method, so run_job's sync check takes its fast path."""
        with self._lock:
            if self.state == DROPPED:
                return None
            self.state = RUNNING
        try:
            result = self._fn(*self._args)
        except BaseException as exc:
            if self._finish(None):
                self._on_abandon(None, exc)
                return None
            raise
        if self._finish(result):
            self._on_abandon(result, None)
            return None
        return result

    def _finish(self, result: Any) -> bool:
        """The driver returned: True if the caller abandoned the call meanwhile."""
        with self._lock:
            abandoned = self.state == ABANDONED
            self.state = DONE
            self.result = result  # a caller cancelled after this still finds it
        return abandoned

    def give_up(self) -> int:
        """The caller is cancelled: the state it found (PENDING means the call will never run)."""
        with self._lock:
            state = self.state
            if state == PENDING:
                self.state = DROPPED
            elif state == RUNNING:
                self.state = ABANDONED
            return state
