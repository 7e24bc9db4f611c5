"""One request behind the session's limiter, and `execute_concurrent`'s window of them.

Every request first takes a token from the session's `Limiter` and returns it
when the driver calls back, never earlier, so a cancelled request holds its
slot until the driver is really done with it (see `session.py` for the bound).
A result decoded on the loop thread (the loop transport) completes its task
directly; one that arrives on another thread (the driver's reactor thread,
its executor) goes through the loop's batching waker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cassandra.concurrent import ExecutionResult  # type: ignore[import-untyped]

from bridge import metrics
from bridge.adapters import _cassandra_metrics

from ._kit import Waker, limiter_drop, limiter_enter
from .results import AsyncResultSet

if TYPE_CHECKING:
    from .session import AsyncSession

_get_ident = threading.get_ident


class _Request:
    """One `execute_async` behind the session's limiter, completed through the waker.

    A task parks on it (`execute`), or an owner does: `execute_concurrent`'s
    batch or a page stream, given as `owner`, is called on the loop instead.
    """

    __slots__ = (
        "args",
        "cancelled",
        "dropped",
        "error",
        "future",
        "handle",
        "has_token",
        "index",
        "owner",
        "result",
        "sent",
        "session",
        "started",
        "starting",
        "waker",
    )

    def __init__(
        self,
        session: AsyncSession,
        waker: Waker,
        args: tuple[Any, ...],
        owner: Callable[[_Request], None] | None = None,
        index: int = 0,
    ) -> None:
        self.session = session
        self.waker = waker
        self.args = args  # execute_async's positional arguments
        self.owner = owner
        self.index = index
        self.handle: Any = None
        self.future: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.has_token = False
        self.dropped = False
        self.starting = False
        self.sent = False
        self.started = 0.0
        self.cancelled = False

    # -- the limiter's side ---------------------------------------------------

    def start(self) -> None:
        self.starting = True
        limiter_enter(self.session._limiter, self)
        self.starting = False

    def grant(self) -> None:
        # `starting` alone is not enough: a token released on the reactor
        # thread can reach a request queued a moment ago, before `start` returns.
        if self.starting and _get_ident() == self.waker.thread_id:
            self._send()  # a free token, on the loop thread: send at once
        else:
            # Released by another request's callback, maybe on the reactor
            # thread: send from the loop, where the caller's query belongs.
            self.waker.deliver(self)

    def _send(self) -> None:
        self.sent = True
        session = self.session
        with session._counts_lock:
            session._sent += 1
        self.started = time.perf_counter() if metrics.recording() else 0.0  # 0.0: not timed
        try:
            future = session._execute_async(*self.args)
        except BaseException as exc:  # bad parameters, a closed driver session
            self._on_error(exc)
            return
        self.future = future
        future.add_callbacks(self._on_result, self._on_error)

    # -- the driver's side (reactor thread, or this thread if already done) -----

    def _on_result(self, rows: Any) -> None:
        self.result = rows
        self._driver_done(None)

    def _on_error(self, error: BaseException) -> None:
        self._driver_done(error)

    def _driver_done(self, error: BaseException | None) -> None:
        future = self.future
        if future is not None:
            # The future holds our bound methods and we hold the future: a
            # cycle only the GC's full collections would free (25 ms pauses
            # under load). The driver copied its callbacks before calling them.
            future.clear_callbacks()
        if self.started:  # metrics on: recorded before the waiting task wakes
            _cassandra_metrics.record(future, self.started, error)
        self.error = error
        self.session._finish()
        self._deliver()

    def _deliver(self) -> None:
        # Decoded on the loop thread (the loop transport): wake the task right
        # here. Not while `start` runs (the task is not parked yet, which trio
        # requires) and not for owners (a batch launching its next request from
        # inside the driver's callback could recurse as deep as the batch).
        if (
            self.owner is None
            and not self.starting
            and self.handle is not None
            and _get_ident() == self.waker.thread_id
        ):
            self.complete()
        else:
            self.waker.deliver(self)

    # -- the loop's side ----------------------------------------------------

    def complete(self) -> None:
        if not self.sent:
            if not self.cancelled:
                self._send()  # granted from another thread
            return
        owner = self.owner
        if owner is not None:
            owner(self)
            return
        handle = self.handle
        if handle is not None:
            self.handle = None
            error, self.error = self.error, None
            if error is not None:
                self.waker.finish(handle, None, error)
            else:
                self.waker.finish(handle, self.page(), None)

    def cancel(self) -> None:
        """The task gave up: an unsent request is dropped; a sent one finishes in the background."""
        self.handle = None
        self.cancelled = True
        if not self.sent:
            limiter_drop(self.session._limiter, self)

    def page(self) -> AsyncResultSet:
        return AsyncResultSet(self.session, self.future, self.result, self.args)


class _Concurrent:
    """What `execute_concurrent`'s caller parks on: `concurrency` requests kept going."""

    __slots__ = (
        "args",
        "error",
        "handle",
        "live",
        "next",
        "raise_on_first_error",
        "remaining",
        "results",
        "session",
        "stopped",
        "waker",
        "window",
    )

    def __init__(
        self,
        session: AsyncSession,
        waker: Waker,
        args: list[tuple[Any, ...]],
        concurrency: int,
        raise_on_first_error: bool,
    ) -> None:
        self.session = session
        self.waker = waker
        self.args = args
        self.window = concurrency
        self.raise_on_first_error = raise_on_first_error
        self.results: list[Any] = [None] * len(args)
        self.remaining = len(args)
        self.next = 0
        self.live: dict[int, _Request] = {}
        self.stopped = False
        self.handle: Any = None

    def start(self) -> None:
        self._launch()

    def _launch(self) -> None:
        args, live = self.args, self.live
        while not self.stopped and self.next < len(args) and len(live) < self.window:
            i = self.next
            self.next = i + 1
            request = _Request(self.session, self.waker, args[i], self._done, i)
            live[i] = request
            request.start()

    def _done(self, request: _Request) -> None:
        del self.live[request.index]
        self.remaining -= 1
        error = request.error
        if error is not None:
            request.error = None
            if self.raise_on_first_error:
                self._stop(None, error)
                return
            self.results[request.index] = ExecutionResult(False, error)
        else:
            self.results[request.index] = ExecutionResult(True, request.page())
        if self.remaining == 0:
            self._stop(self.results, None)
        else:
            self._launch()

    def _stop(self, result: Any, error: BaseException | None) -> None:
        self.stopped = True
        handle = self.handle
        if handle is not None:
            self.handle = None
            self.waker.finish(handle, result, error)
        for request in list(self.live.values()):
            request.cancel()  # unsent ones are dropped; sent ones finish in the background

    def complete(self) -> None:  # pragma: no cover - owners finish through _done
        pass

    def cancel(self) -> None:
        self.handle = None
        self._stop(None, None)
