"""The one completion path: a per-loop waker that batches results from other threads.

Threads finish jobs at their own pace. Waking the loop once per result costs a
syscall each (asyncio's self-pipe write, trio's wakeup socket); the waker
instead queues finished jobs and wakes the loop only when no wake-up is already
pending, so a burst of N results costs one wake-up and one callback.

Everything loop-specific lives here: how to wake the loop, how a task parks
until its job is done, and how cancellation reaches the job. The rest of the
library is backend-neutral and only calls `current_waker()` and `Waker.wait`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import sniffio

from bridge import _metrics
from bridge._exceptions import NoEventLoopError
from bridge._lateness import Lateness

# How many completions one drain hands out: adapted so that the tasks they wake
# take about one TURN_BUDGET of loop time (see Waker._drain).
TURN_BUDGET = 0.001
MIN_BATCH = 8
MAX_BATCH = 256

_perf_counter = time.perf_counter
_sniffio_local = sniffio.thread_local
_get_running_loop = asyncio.get_running_loop


class Completion(Protocol):
    """Something a waker delivers: a job's outcome, a granted token, a future's result."""

    def complete(self) -> None: ...


class Parked(Completion, Protocol):
    """What a task parks on: started once, completed through the waker, or cancelled."""

    handle: Any

    def start(self) -> None: ...

    def cancel(self) -> None: ...


class Waker:
    """Delivers completions from any thread to one loop, many per wake-up."""

    __slots__ = (
        "_batch",
        "_last_end",
        "_pending",
        "_scheduled",
        "closed",
        "key",
        "lateness",
        "probed",
        "thread_id",
    )

    def __init__(self, key: object) -> None:
        # Weak, so that a waker never keeps a finished loop (and its sockets) alive.
        self.key = weakref.ref(key)
        self._pending: deque[Any] = deque()
        self._scheduled = False
        self._batch = MIN_BATCH
        self._last_end = 0.0
        self.closed = False
        self.thread_id = threading.get_ident()
        self.lateness = Lateness()  # the loop's timer probe, started by adaptive limiters
        self.probed = 0  # the metrics' lateness probe generation whose timer runs on this loop

    def deliver(self, item: Completion) -> None:
        """Queue `item.complete()` to run on the loop; safe from any thread."""
        self._pending.append(item)
        if not self._scheduled:
            # Losing this race only costs an extra wake-up: the drain clears
            # the flag before it empties the queue, never after.
            self._scheduled = True
            try:
                self._schedule(self._drain)
            except RuntimeError:
                self.close()  # the loop is gone (closed, or the trio run ended)
        if self.closed:
            self.close()  # appended after the loop went: fail it too, never leave it waiting

    def close(self) -> None:
        """The loop is gone: nobody awaits these results any more, so drop them,
        except that blocked sync callers (`syncify`, `Portal.call`) are told, not left hanging."""
        self.closed = True
        pending = self._pending
        while pending:
            try:
                item = pending.popleft()
            except IndexError:
                break
            fail = getattr(item, "fail_closed", None)
            if fail is not None:
                fail()

    def _drain(self) -> None:
        self._scheduled = False
        # A bounded batch: each completion wakes a task, and the loop runs every
        # task woken in one turn before it looks at timers again. Unbounded, a
        # burst of thousands of results would make the whole loop late; too
        # small, and each result pays for a turn of its own. So the batch adapts:
        # the time since the last drain ended is mostly the tasks it woke
        # running; over budget halves the batch, under it grows it a little.
        start = _perf_counter()
        batch = self._batch
        if start - self._last_end > TURN_BUDGET:
            batch = max(MIN_BATCH, batch >> 1)
        elif batch < MAX_BATCH:
            batch += MIN_BATCH
        self._batch = batch
        pending = self._pending
        popleft = pending.popleft
        count = min(len(pending), batch)
        if _metrics.on:
            _metrics.waker_batch.record(count)
        for _ in range(count):
            item = popleft()
            try:
                item.complete()
            except Exception as exc:  # one broken completion must not strand the rest
                self._fail(item, exc)
        if pending and not self._scheduled:
            self._scheduled = True
            self._schedule(self._drain)  # on the loop thread: a plain call_soon
        self._last_end = _perf_counter()

    def _schedule(self, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    async def wait(self, item: Parked) -> Any:
        """Start `item` and park the calling task until the waker completes it.

        If the task is cancelled while parked, `item.cancel()` runs and the
        cancellation propagates at once; the item decides what to drop.
        """
        raise NotImplementedError

    def finish(self, handle: Any, result: Any, error: BaseException | None) -> None:
        """On the loop: hand an outcome to the task parked on `handle`."""
        raise NotImplementedError

    def running(self) -> bool:
        """False once the loop has stopped or closed: nothing queued to it will run (any thread)."""
        raise NotImplementedError

    def _fail(self, item: Any, exc: Exception) -> None:
        """Delivering `item` failed: whoever waits on it gets the error; nobody hangs.

        A parked task (anything with a `handle`: a job, a callback) is finished
        here with the error; other completions that have a waiter of their own
        (a sync caller blocked in `syncify`) say how with `fail(exc)`.
        """
        try:
            handle = getattr(item, "handle", None)
            if handle is not None:
                item.handle = None
                self.finish(handle, None, exc)
                return
            fail = getattr(item, "fail", None)
            if fail is not None:
                fail(exc)
                return
        except Exception as again:
            exc = again
        logging.getLogger("bridge").error(
            "bridge: delivering %r to its task failed", item, exc_info=exc
        )


class Slot:
    """A task parked until code on the loop wakes it: a buffer's consumer waiting for an item.

    Whatever produces the item runs already (a fetch, a page request), so
    `start` does nothing; the producer's completion calls `complete()` on the
    loop. Cancelling the wait leaves the producer alone: its item still lands
    where the next wait will find it.
    """

    __slots__ = ("handle", "waker")

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.handle: Any = None

    def start(self) -> None:
        return None

    def complete(self) -> None:
        handle = self.handle
        if handle is not None:
            self.handle = None
            self.waker.finish(handle, None, None)

    def cancel(self) -> None:
        self.handle = None


class AsyncioWaker(Waker):
    """asyncio and uvloop: one `call_soon_threadsafe` per batch."""

    __slots__ = ()

    def _schedule(self, fn: Callable[[], None]) -> None:
        loop: asyncio.AbstractEventLoop | None = self.key()  # type: ignore[assignment]
        if loop is None:
            raise RuntimeError("event loop is gone")
        if threading.get_ident() == self.thread_id:
            loop.call_soon(fn)  # already on the loop: no need to write the self-pipe
        else:
            loop.call_soon_threadsafe(fn)

    async def wait(self, item: Parked) -> Any:
        fut = _get_running_loop().create_future()
        item.handle = fut
        item.start()
        try:
            return await fut
        except asyncio.CancelledError:
            item.cancel()
            raise

    def finish(self, handle: Any, result: Any, error: BaseException | None) -> None:
        if handle.done():
            return  # cancelled meanwhile; the outcome is dropped, never "unretrieved"
        if error is None:
            handle.set_result(result)
        else:
            if isinstance(error, StopIteration):
                # A future refuses StopIteration (it would end the awaiting
                # coroutine as if it had returned); trio and anyio raise this.
                error = _stop_iteration_error(error)
            handle.set_exception(error)

    def running(self) -> bool:
        loop: asyncio.AbstractEventLoop | None = self.key()  # type: ignore[assignment]
        return loop is not None and not loop.is_closed() and loop.is_running()


def _stop_iteration_error(error: StopIteration) -> RuntimeError:
    wrapped = RuntimeError(
        "the function run in a thread raised StopIteration, which cannot cross into async "
        "code (it would silently end the awaiting coroutine); catch it in the function"
    )
    wrapped.__cause__ = error
    return wrapped


class TrioWaker(Waker):
    """trio: one `TrioToken.run_sync_soon` per batch; tasks park with `wait_task_rescheduled`."""

    __slots__ = ()

    def _schedule(self, fn: Callable[[], None]) -> None:
        import trio

        token: Any = self.key()
        if token is None:
            raise RuntimeError("trio run is gone")
        try:
            token.run_sync_soon(fn)
        except trio.RunFinishedError as exc:
            raise RuntimeError("trio run finished") from exc

    async def wait(self, item: Parked) -> Any:
        import trio

        item.handle = trio.lowlevel.current_task()
        item.start()

        def abort(_: Any) -> Any:
            item.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def finish(self, handle: Any, result: Any, error: BaseException | None) -> None:
        import outcome
        import trio

        result_or_error = outcome.Value(result) if error is None else outcome.Error(error)
        trio.lowlevel.reschedule(handle, result_or_error)

    def running(self) -> bool:
        # A finished run refuses run_sync_soon (the waker closes then), and trio
        # runs every callback it accepted before it ends: gone means closed.
        return not self.closed and self.key() is not None


# The last loop asked about and its waker, as one tuple (replaced atomically).
# Most programs run one loop, so this answers nearly every call without a
# dictionary lookup; it keeps at most that one loop object alive.
_last: tuple[object, Waker | None] = (None, None)
_wakers: weakref.WeakKeyDictionary[object, Waker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()
#: Set while metrics are on: told of every waker made (a new loop to probe), outside the lock.
on_new_waker: Callable[[Waker], None] | None = None

NO_LOOP_MESSAGE = (
    "{what} must be awaited from async code running in an event loop, but no loop is "
    "running in this thread. Start one with bridge.run(main) (or asyncio.run / trio.run); "
    "from plain sync code, call the function directly, or use bridge.syncify / bridge.Portal "
    "to reach async code."
)


def on_loop_thread() -> bool:
    """True on a thread that is running an event loop (asyncio, uvloop or trio) right now."""
    if _sniffio_local.name is not None:
        return True
    try:
        _get_running_loop()
    except RuntimeError:
        return False
    return True


def current_waker(what: str = "this call") -> Waker:
    """The waker of the loop running on this thread; raises NoEventLoopError if none."""
    if _sniffio_local.name == "trio":
        import trio

        key: object = trio.lowlevel.current_trio_token()
    else:
        try:
            key = _get_running_loop()
        except RuntimeError:
            raise NoEventLoopError(NO_LOOP_MESSAGE.format(what=what)) from None
    global _last
    last = _last
    if last[0] is key:
        return last[1]  # type: ignore[return-value]
    waker = _lookup(key)
    _last = (key, waker)
    return waker


def _lookup(key: object) -> Waker:
    with _wakers_lock:
        waker = _wakers.get(key)
        if waker is not None:
            return waker
        if isinstance(key, asyncio.AbstractEventLoop):
            waker = AsyncioWaker(key)
        else:
            waker = TrioWaker(key)
        _wakers[key] = waker
    hook = on_new_waker
    if hook is not None:
        hook(waker)
    return waker


def _forget_wakers_after_fork() -> None:
    """In a forked child the parent's loops do not run: never deliver to them again.

    Their wakers are closed (a blocked `syncify` gets ClosedError, not a hang),
    and the cache starts empty, so nothing keyed on the parent's loops or thread
    idents is reused (a new thread may get a dead thread's ident).
    """
    global _last, _wakers, _wakers_lock
    for waker in list(_wakers.values()):
        waker._scheduled = True  # no wake-up goes to the parent's loop (its pipe is shared)
        waker.close()
    _last = (None, None)
    _wakers = weakref.WeakKeyDictionary()
    _wakers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_wakers_after_fork)
