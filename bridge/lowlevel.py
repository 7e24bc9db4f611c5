"""The adapter kit: what an adapter for a blocking or callback-style driver is built from.

bridge's own adapters (Cassandra, requests, DB-API) use only this module and
the public API, so an adapter for an in-house client can do all they do:

- `wait_for_callback(start)`: park a task until a driver's callback, fired on
  any thread, completes it; outcomes are batched through the loop's one waker.
- `run_job(fn, *args, executor=, limiter=)`: run a blocking call on a given
  executor (the shared pool, a `WorkerPool` of the adapter's own, a
  `DedicatedThread`) behind a limiter, and await it.
- `ReadAhead`: a bounded read-ahead buffer between one producer (pages, rows,
  chunks) and an async consumer.
- `current_loop()`, `on_loop_thread()`, `current_waker()`: the loop's identity
  and its completion path, for adapters that keep per-loop state.
- `time_left()` / `yield_to_deadline()` / `yield_to_passed_deadline()`: the
  calling task's deadline, to cut a driver's timeout to, and the wait that lets
  that deadline (not the driver's timeout error) end the call when both fall
  due together (the second only once the deadline has passed).
- `limiter_enter` / `limiter_release` / `limiter_drop`: a request object of the
  adapter's own that takes a limiter token (when `wait_for_callback` is not the
  right shape, e.g. a result decoded on the loop thread that wakes its task directly).

Everything here works the same on asyncio, uvloop and trio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from bridge._callback import Callback, wait_for_callback
from bridge._job import Executor, Job
from bridge._pool import WorkerPool, default_pool
from bridge._readahead import ReadAhead
from bridge._task_deadline import time_left, yield_to_deadline, yield_to_passed_deadline
from bridge._waker import Completion, Parked, Slot, Waker, current_waker, on_loop_thread
from bridge.limiter import Limiter
from bridge.threads import _check_sync, _run_job

T = TypeVar("T")

__all__ = [
    "Callback",
    "Completion",
    "Executor",
    "Job",
    "LimiterEntry",
    "Parked",
    "ReadAhead",
    "Slot",
    "Waker",
    "WorkerPool",
    "current_loop",
    "current_waker",
    "default_pool",
    "limiter_drop",
    "limiter_enter",
    "limiter_release",
    "on_loop_thread",
    "run_job",
    "time_left",
    "wait_for_callback",
    "yield_to_deadline",
    "yield_to_passed_deadline",
]


class LimiterEntry(Protocol):
    """A claim on a limiter token that an adapter manages itself (see `limiter_enter`)."""

    has_token: bool  #: set by the limiter when a token is granted
    dropped: bool  #: set by the limiter when the entry gave up while queued
    waker: Waker  #: the caller's loop (an adaptive limiter watches its lateness)

    def grant(self) -> None:
        """A token is yours: start the work (runs on the loop or on the releasing thread)."""


def limiter_enter(limiter: Limiter, entry: LimiterEntry) -> None:
    """Queue `entry` for one of `limiter`'s tokens: `entry.grant()` runs now if one is
    free, else on whichever thread returns one (FIFO, never barged)."""
    limiter._enter(entry)


def limiter_release(limiter: Limiter) -> None:
    """Give back the token an entry was granted, when its work has really ended (any thread)."""
    limiter._release()


def limiter_drop(limiter: Limiter, entry: LimiterEntry) -> None:
    """`entry` gave up: queued, it leaves the queue; granted and unused, its token goes on."""
    limiter._drop(entry)


def current_loop() -> object:
    """The running loop's identity: the asyncio loop object, or trio's `TrioToken`.

    Hashable and stable for the loop's life: key per-loop state (a connection
    bound to one loop) on it. Raises `NoEventLoopError` outside a loop.
    """
    key = current_waker("current_loop()").key()
    assert key is not None  # the loop is running: it is alive
    return key


async def run_job(
    fn: Callable[..., T],
    /,
    *args: object,
    executor: Executor | None = None,
    limiter: Limiter | None = None,
    cleanup: bool = False,
) -> T:
    """Run `fn(*args)` on `executor` (default: the shared pool) behind `limiter`; await it.

    The token is held until the call really ends, even if the awaiting task
    is cancelled first; a call that has not started when its task is
    cancelled never runs, unless `cleanup` is set (a close, an `__exit__`:
    work that must happen whether or not anybody waits for it).
    Keyword arguments: pass `functools.partial(fn, key=value)`.
    """
    _check_sync(fn, "run_job()")
    executor = executor or default_pool()
    return await _run_job(fn, args, {}, limiter, executor, "run_job()", cleanup)  # type: ignore[no-any-return]
