"""Deadlines and cancellation that reach the thread: `current_deadline()`, `check_cancelled()`.

A blocking call made under `anyio.fail_after(2)` (or `trio.fail_after`, or
`asyncify(timeout=...)`) used to run on in its thread until the driver's own
timeout, holding a thread and a limiter token long after its caller gave up.
So each job carries two things into its thread:

* the awaiting task, so that the thread can read the caller's deadline when
  it needs it and pass the time left to a driver (`requests`' timeout, a
  socket timeout, a database statement timeout);
* a cancelled flag, set on the loop when the awaiting task gives up, which a
  long loop in the thread polls with `check_cancelled()` to stop early.

Where the deadline comes from: anyio cancel scopes (on asyncio and uvloop)
and trio's, which covers `anyio.fail_after`, `trio.fail_after`,
`asyncify(timeout=...)` and everything built on them. `asyncio.timeout()`
and `asyncio.wait_for` are invisible: asyncio records them nowhere a thread
could read (cpython#107505); use `anyio.fail_after` where the thread should know.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

import bridge._job as _job_module
from bridge._job import Job, origin
from bridge._waker import TrioWaker, Waker, on_loop_thread

__all__ = ["check_cancelled", "current_deadline"]

NO_DEADLINE = math.inf
TRIO_TASK = object()  # Job.waiter for trio: the task is the job's own handle

_monotonic = time.monotonic
# asyncio.current_task() is pure Python on 3.11: read its table directly.
_current_tasks: dict[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})


def capture(waker: Waker) -> object:
    """On the loop, for every job: what the thread needs to find the caller's deadline later.

    Reading the deadline here would walk the cancel scopes on every call (about
    1 µs inside a task group, a fifth of a whole hand-off); most calls never
    ask. So the job keeps only the awaiting task, and `current_deadline()`
    walks its scopes from the thread, on demand. That is safe because the task
    is parked on this very job: its chain of scopes cannot change until the
    job completes or the task is cancelled (and then `cancelled` answers).
    """
    if waker.__class__ is TrioWaker:
        return TRIO_TASK
    # Not asyncio.current_task(): on 3.11 it is Python code that asks for the
    # running loop again (a getpid() system call); the waker knows the loop.
    return _current_tasks.get(waker.key())


def _deadline_of(job: Job) -> float:
    """In the thread: the caller's deadline as a `time.monotonic()` instant, or inf.

    Reads the (parked) task's cancel scopes from another thread: plain
    attribute reads of objects the loop does not change while the task waits,
    except a scope's deadline or cancel flag, each read whole (a race only
    picks the old or the new value, under the GIL or not).
    """
    waiter = job.waiter
    deadline: float
    now: float
    if waiter is None:
        return NO_DEADLINE
    if waiter is TRIO_TASK:
        task = job.handle
        if task is None:
            return NO_DEADLINE  # completed or cancelled: `cancelled` answers instead
        deadline = task._cancel_status.effective_deadline()
        if deadline == NO_DEADLINE:
            return NO_DEADLINE
        now = task._runner.clock.current_time()
    else:
        backend = sys.modules.get("anyio._backends._asyncio")
        if backend is None:
            return NO_DEADLINE  # anyio never loaded: no anyio cancel scope exists
        state = backend._task_states.get(waiter)
        scope = state.cancel_scope if state is not None else None
        deadline = NO_DEADLINE
        while scope is not None:  # as anyio's current_effective_deadline, for another task
            if scope.cancel_called:
                return -NO_DEADLINE
            deadline = min(deadline, scope.deadline)
            if scope.shield:
                break
            scope = scope._parent_scope
        # anyio's clock is the loop's, and both asyncio's and uvloop's read the
        # monotonic clock (uvloop's in whole ms, cached per turn): no conversion.
        # Not `loop.time()` from here: uvloop's would be as stale as the loop is idle.
        return deadline
    return _monotonic() + (deadline - now)


def _current_job(api: str) -> Job | None:
    job = origin.job
    if job is None and on_loop_thread():  # not a worker: say so if it is the loop's thread
        raise RuntimeError(
            f"bridge.{api} is for code running in a worker thread (to_thread, asyncify, wrap). "
            "In async code, cancellation arrives at every await; use "
            "anyio.current_effective_deadline() for the deadline."
        )
    return job


def current_deadline() -> float | None:
    """Seconds left before the awaiting task's deadline, or None if it has none.

    Call it in a worker thread and pass the result to the driver as its
    timeout, so a call given up on stops by itself instead of holding the
    thread: None means "no deadline", as it does for most drivers' timeouts.
    Never negative: 0.0 once the deadline has passed. Outside a worker thread
    started by bridge, None.

    >>> import anyio, bridge
    >>> async def main():
    ...     with anyio.fail_after(5):
    ...         return await bridge.to_thread(bridge.current_deadline)
    >>> 4 < bridge.run(main) <= 5
    True
    """
    job = _current_job("current_deadline()")
    if job is None:
        return None
    if job.cancelled:
        return 0.0
    deadline = _deadline_of(job)
    if deadline == NO_DEADLINE:
        return None
    return max(0.0, deadline - _monotonic())


def check_cancelled() -> None:
    """Raise the awaiting task's cancellation if it gave up on this call; else return at once.

    Poll it in a long loop running in a worker thread, so that work nobody
    waits for any more stops, and frees its thread and limiter token: the
    exception raised is the backend's own (`asyncio.CancelledError`,
    `trio.Cancelled`), as with anyio's `from_thread.check_cancelled`. Outside
    a worker thread started by bridge there is no awaiting task: it returns.

    >>> import anyio, bridge, threading
    >>> stopped = threading.Event()
    >>> def crunch(started):
    ...     try:
    ...         while True:
    ...             started.set()
    ...             bridge.check_cancelled()
    ...     finally:
    ...         stopped.set()
    >>> async def main():
    ...     started = threading.Event()
    ...     async with anyio.create_task_group() as tg:
    ...         tg.start_soon(bridge.to_thread, crunch, started)
    ...         await bridge.to_thread(started.wait)
    ...         tg.cancel_scope.cancel()
    ...     return await bridge.to_thread(stopped.wait, 30)
    >>> bridge.run(main)
    True
    """
    job = _current_job("check_cancelled()")
    if job is not None and job.cancelled:
        raise _cancelled_exception(job)


def _caller_cancelled(job: Job) -> bool:
    """In the thread, before a job starts: was its caller's scope cancelled already?"""
    return _deadline_of(job) == -NO_DEADLINE


_job_module.caller_cancelled = _caller_cancelled


def _cancelled_exception(job: Job) -> BaseException:
    if isinstance(job.waker, TrioWaker):
        import trio

        return trio.Cancelled._create()  # what trio.from_thread.check_cancelled raises
    return asyncio.CancelledError("the awaiting task was cancelled")
