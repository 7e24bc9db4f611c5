"""One unit of work handed to a thread, and the race between running it and cancelling it.

A job is claimed exactly once: either a thread claims it and runs it, or the
awaiting task claims it on cancellation and it never runs. The claim is a
one-element list popped by the winner: `list.pop` is atomic under the GIL, so
no lock is needed on the hot path.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sniffio

if TYPE_CHECKING:
    from bridge._waker import Waker
    from bridge.limiter import Limiter


class _Origin(threading.local):
    """Which loop sent the job this thread is running: where `syncify` sends async work back."""

    waker: Waker | None = None
    dedicated: Executor | None = None  # the DedicatedThread this thread is, if it is one
    job: Job | None = None  # its caller's deadline and cancel flag: bridge.deadline


origin = _Origin()


def _never(job: Job) -> bool:
    return False


# Whether a job's awaiting task sits in a cancel scope that is already
# cancelled; bridge.deadline installs the real test (it reads the scopes).
caller_cancelled: Callable[[Job], bool] = _never

# The DedicatedThreads blocked in `syncify` on the way to the running coroutine:
# a call sent to one of them from there could never run (it queues behind the wait).
waiting_threads: contextvars.ContextVar[tuple[Executor, ...]] = contextvars.ContextVar(
    "bridge_waiting_threads", default=()
)
_sniffio_cvar = sniffio.current_async_library_cvar
_perf_counter = time.perf_counter
_thread_time = time.thread_time


class Executor:
    """Where jobs run: the shared worker pool or a dedicated thread."""

    def submit(self, job: Job) -> None:
        raise NotImplementedError


class Job:
    """A call to run in a thread; its outcome goes back through the waker of the caller's loop."""

    __slots__ = (
        "_claim",
        "args",
        "cancelled",
        "cleanup",
        "ctx",
        "dropped",
        "error",
        "executor",
        "fn",
        "handle",
        "has_token",
        "kwargs",
        "limiter",
        "result",
        "waiter",
        "waker",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        waker: Waker,
        executor: Executor,
        limiter: Limiter | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx = contextvars.copy_context()
        self.waker = waker
        self.executor = executor
        self.limiter = limiter
        self.handle: Any = None  # the backend's wait handle (asyncio Future, trio Task)
        self.result: Any = None
        self.error: BaseException | None = None
        self.has_token = False  # holds one of `limiter`'s tokens
        self.dropped = False  # cancelled while waiting for a token
        self.cleanup = False  # runs even if the caller is cancelled: a close, an __exit__
        self.waiter: object = None  # the awaiting task, to read its deadline (bridge.deadline)
        self.cancelled = False  # the caller gave up while this ran: check_cancelled() raises
        self._claim = [True]

    def claim(self) -> bool:
        """Win the right to decide this job's fate; True for exactly one caller."""
        try:
            self._claim.pop()
        except IndexError:
            return False
        return True

    def start(self) -> None:
        if self.limiter is None:
            self.executor.submit(self)
        else:
            self.limiter._enter(self)

    def grant(self) -> None:
        """The limiter gave this job a token: send it to its thread.

        This may run on any thread (whichever returned the token). If the job
        cannot be sent (its DedicatedThread was closed), the token goes back
        and the caller gets the error; nothing else may fail with it.
        """
        try:
            # An adaptive limiter whose calls hold the GIL runs them in its lane
            # (bridge._lane). A racy read: a lane closed meanwhile passes the job on.
            lane = self.limiter._lane if self.limiter is not None else None
            if lane is not None and lane.executor is self.executor:
                lane.submit(self)
            else:
                self.executor.submit(self)
        except BaseException as exc:
            if self.claim():
                self.error = exc
                self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
                assert self.limiter is not None
                self.limiter._release()
                self.waker.deliver(self)

    def run(self) -> None:
        """Run on a worker thread, unless the caller cancelled first, and deliver the outcome."""
        if self.execute():
            self.waker.deliver(self)

    def execute(self) -> bool:
        """Run on a worker thread unless the caller cancelled first; False if dropped.

        The caller delivers the outcome (`waker.deliver(job)`) as the last thing
        it does before it goes to sleep, so the loop it wakes finds the GIL free.
        """
        if not self.claim():
            return False  # cancelled before it started: dropped, its token already returned
        if self.waiter is not None and not self.cleanup and caller_cancelled(self):
            # Made inside a cancel scope that was already cancelled (anyio on
            # asyncio delivers that on the next loop turn, after the job was
            # sent): it must not start. The cancellation reaches the task anyway.
            self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
            if self.limiter is not None:
                self.limiter._release()
            return False
        outer = origin.waker  # a sync->async->sync chain can nest jobs on one thread
        outer_job = origin.job
        origin.waker = self.waker
        origin.job = self
        ctx = self.ctx
        if ctx.get(_sniffio_cvar) is not None:
            # No async library runs in this thread: code that picks a path by
            # sniffio (anyio, httpx) must not think it can use the caller's loop.
            ctx.run(_sniffio_cvar.set, None)
        limiter = self.limiter
        timed = limiter is not None and limiter._control is not None
        if timed:  # an adaptive limiter weighs its calls' CPU against their time (bridge._adaptive)
            wall, cpu = _perf_counter(), _thread_time()
        try:
            self.result = ctx.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:
            self.error = exc
        finally:
            origin.waker = outer
            origin.job = outer_job
            self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
        if limiter is not None:
            # The token comes back when the thread is really done.
            if timed:
                limiter._release(_thread_time() - cpu, _perf_counter() - wall)
            else:
                limiter._release()
        return True

    def complete(self) -> None:
        """On the loop, from the waker: wake the awaiting task unless it gave up."""
        handle = self.handle
        if handle is not None:
            self.handle = None
            error = self.error
            self.error = None  # no cycle through the traceback's frames
            result, self.result = self.result, None  # the caller's now: a kept job must not pin it
            self.waker.finish(handle, result, error)

    def cancel(self) -> None:
        """The awaiting task gave up: drop the job if it has not started, else let it finish."""
        if self.cleanup:
            self.handle = None  # cleanup (a close, an __exit__) runs even when nobody waits
            return
        if self.claim():
            self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
            if self.limiter is not None:
                self.limiter._drop(self)
        else:
            self.cancelled = True  # running: tell the thread (bridge.check_cancelled)
        self.handle = None
