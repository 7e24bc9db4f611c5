"""Run blocking callables in threads and await them: `to_thread`, `asyncify`, `DedicatedThread`.

Every call here is one job: it goes to the shared worker pool (or to a
dedicated thread), behind an optional limiter, and its outcome comes back
through the loop's batching waker. The same code serves asyncio, uvloop and
trio; only the waker knows which one is running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import itertools
import math
import os
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import anyio

from bridge._exceptions import ClosedError, DeadlockError
from bridge._job import Executor, Job, origin, waiting_threads
from bridge._pool import default_pool
from bridge._waker import current_waker, on_loop_thread
from bridge.deadline import capture as capture_waiter
from bridge.limiter import Limiter

P = ParamSpec("P")
T = TypeVar("T")

_CO_ASYNC = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


def _check_sync(fn: object, api: str) -> None:
    """Refuse async callables and coroutine objects, with the fix in the message."""
    code = getattr(fn, "__code__", None)  # functions and bound methods: one attribute read
    if code is not None and not code.co_flags & _CO_ASYNC:
        return
    if inspect.iscoroutine(fn):
        fn.close()  # we will never run it; closing avoids a "never awaited" warning
        raise TypeError(
            f"{api} got a coroutine object, which is already async. "
            "Await it directly instead of sending it to a thread."
        )
    if not callable(fn):
        raise TypeError(f"{api} needs a callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"{api} got the async function {name}(). Threads are for blocking sync code: "
            f"call and await {name}() directly instead."
        )


def _checked(fn: object, result: Any) -> Any:
    """A sync function that returned a coroutine was async in disguise: refuse its result."""
    if inspect.iscoroutine(result):
        result.close()  # it will never run; closing avoids a "never awaited" warning
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(
            f"{name}() ran in a thread but returned a coroutine, so its real work never ran. "
            f"It is async in disguise (e.g. a lambda or partial around an async function): "
            f"await it directly instead of passing it to a thread."
        )
    return result


async def to_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` in a worker thread and return its result.

    A drop-in for `asyncio.to_thread` that also runs on trio: contextvars are
    copied into the thread; if the awaiting task is cancelled, a call that has
    not started yet never runs, and one that is running finishes in the
    background while the task moves on at once.

    >>> import bridge, time
    >>> async def main():
    ...     return await bridge.to_thread(sum, [1, 2, 3])
    >>> bridge.run(main)
    6
    """
    _check_sync(fn, "to_thread()")
    waker = current_waker("to_thread()")
    # The hand-off of _run_job, inlined: this is the hottest path of the library.
    job = Job(fn, args, kwargs, waker, default_pool(), None)
    job.waiter = capture_waiter(waker)  # for bridge.current_deadline() in the thread
    return _checked(fn, await waker.wait(job))  # type: ignore[no-any-return]


async def _run_job(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limiter: Limiter | None,
    executor: Executor,
    api: str,
    cleanup: bool = False,
) -> Any:
    waker = current_waker(api)
    job = Job(fn, args, kwargs, waker, executor, limiter)
    job.cleanup = cleanup
    job.waiter = capture_waiter(waker)  # for bridge.current_deadline() in the thread
    return _checked(fn, await waker.wait(job))


async def _through_native_cancel(job: Coroutine[Any, Any, T]) -> T:
    """asyncio: await `job` to its end even through `task.cancel()`, which anyio's shield
    does not stop; the cancellation is re-armed for the caller's next await."""
    inner = asyncio.ensure_future(job)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(inner)
            break
        except asyncio.CancelledError:
            if inner.done():
                raise
            cancelled = True
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
    if cancelled:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
    return result


@overload
def asyncify(
    fn: Callable[P, T],
    *,
    limiter: Limiter | None = None,
    timeout: float | None = None,
    thread: DedicatedThread | None = None,
    abandon_on_cancel: bool = True,
) -> Callable[P, Awaitable[T]]: ...


@overload
def asyncify(
    fn: None = None,
    *,
    limiter: Limiter | None = None,
    timeout: float | None = None,
    thread: DedicatedThread | None = None,
    abandon_on_cancel: bool = True,
) -> Callable[[Callable[P, T]], Callable[P, Awaitable[T]]]: ...


def asyncify(
    fn: Callable[P, T] | None = None,
    *,
    limiter: Limiter | None = None,
    timeout: float | None = None,
    thread: DedicatedThread | None = None,
    abandon_on_cancel: bool = True,
) -> Callable[P, Awaitable[T]] | Callable[[Callable[P, T]], Callable[P, Awaitable[T]]]:
    """Turn a blocking function into an async one that runs it off the loop.

    `limiter` caps how many of its calls run at once; `timeout` (seconds)
    raises `TimeoutError` in the caller, while the call itself finishes in
    the background holding its token; `thread` pins every call to one
    `DedicatedThread` (for objects that must stay on the thread that made them).
    `abandon_on_cancel=False` makes a cancelled caller wait until the call has
    really finished (anyio's and trio's option of that name), for code that
    must not move on while the thread still works; the cancellation is then
    delivered at the caller's next checkpoint.

    >>> import bridge
    >>> @bridge.asyncify(limiter=bridge.Limiter(4))
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> async def main():
    ...     return await add(1, b=2)
    >>> bridge.run(main)
    3
    """
    if limiter is not None and not isinstance(limiter, Limiter):
        raise TypeError(f"asyncify(limiter=...) needs a bridge.Limiter, got {limiter!r}")
    if thread is not None and not isinstance(thread, DedicatedThread):
        raise TypeError(f"asyncify(thread=...) needs a bridge.DedicatedThread, got {thread!r}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < math.inf
    ):
        raise ValueError(
            f"asyncify(timeout=...) must be a positive, finite number of seconds "
            f"(or None for no timeout), got {timeout!r}"
        )
    if timeout is not None and not abandon_on_cancel:
        raise ValueError(
            "asyncify(timeout=..., abandon_on_cancel=False) cannot time out: the caller would "
            "wait for the call anyway. Drop the timeout, or let the call be abandoned."
        )

    def decorate(func: Callable[P, T]) -> Callable[P, Awaitable[T]]:
        _check_sync(func, "asyncify()")
        executor: Executor = thread if thread is not None else default_pool()
        api = f"{getattr(func, '__qualname__', 'asyncified function')}()"

        if not abandon_on_cancel:

            @functools.wraps(func)
            async def waited(*args: P.args, **kwargs: P.kwargs) -> T:
                # Shielded: a cancelled caller waits for the thread, then sees the cancellation.
                job = _run_job(func, args, kwargs, limiter, executor, api)
                with anyio.CancelScope(shield=True):
                    if asyncio._get_running_loop() is not None:  # asyncio or uvloop
                        result = await _through_native_cancel(job)
                    else:
                        result = await job
                return result  # type: ignore[no-any-return]

            return waited

        @functools.wraps(func)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            if timeout is None:
                return await _run_job(func, args, kwargs, limiter, executor, api)  # type: ignore[no-any-return]
            with anyio.move_on_after(timeout):
                return await _run_job(func, args, kwargs, limiter, executor, api)  # type: ignore[no-any-return]
            # Only our own deadline gets here: a TimeoutError the function raised
            # itself (socket.timeout is one) propagates unchanged.
            raise TimeoutError(
                f"{api} did not finish within its asyncify(timeout={timeout}) seconds; "
                "it goes on in its thread (holding its limiter token) until it returns. "
                "Raise the timeout, or give the blocking call a timeout of its own."
            )

        return call

    if fn is None:
        return decorate
    return decorate(fn)


_thread_ids = itertools.count(1)
_STOP = object()


class _SyncCall:
    """A call queued by sync code (`DedicatedThread.call`); its caller waits on a future."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def run(self) -> None:
        fn, args = self.fn, self.args
        self.fn = self.args = None  # type: ignore[assignment]
        fn(*args)



class DedicatedThread(Executor):
    """One OS thread that runs calls one at a time, in the order they were made.

    For drivers whose objects must stay on the thread that created them
    (sqlite3 connections, some C clients): create the object with `run`, then
    pass `thread=` to `asyncify` or `wrap` so every later call lands here too.

    >>> import bridge, sqlite3
    >>> async def main():
    ...     with bridge.DedicatedThread(name="db") as db:
    ...         conn = await db.run(sqlite3.connect, ":memory:")
    ...         cursor = await db.run(conn.execute, "select 40 + 2")
    ...         return await db.run(cursor.fetchone)
    >>> bridge.run(main)
    (42,)

    After `os.fork()` the child's copy starts a thread of its own on its first
    call (calls queued in the parent do not run there); one closed in the
    parent stays closed.
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"DedicatedThread(name=...) needs a str (a thread name), got {name!r}")
        self.name = name or f"bridge-dedicated-{next(_thread_ids)}"
        self._closed = False
        self._start()
        _dedicated.add(self)

    def _start(self) -> None:
        """A new queue, lock and thread: at creation, and in a forked child on first use."""
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._forked = False  # set in a forked child, where this thread does not exist
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<DedicatedThread {self.name!r} {state}>"

    @property
    def ident(self) -> int | None:
        """The thread id, to check where a call ran (None in a forked child until it is used)."""
        return None if self._forked else self._thread.ident

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, job: Job) -> None:
        with self._lock:  # nothing may land behind the stop marker, where it would never run
            if not self._closed:
                if self._forked:
                    self._restart()
                self._queue.put(job)
                return
        raise ClosedError(
            f"{self!r} was closed; its thread has stopped. Create a new DedicatedThread "
            "(and re-create the objects that lived on it) to run more calls."
        )

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` on this thread, after every call made before it."""
        _check_sync(fn, "DedicatedThread.run()")
        if self._closed:
            self.submit(None)  # type: ignore[arg-type]  # raises ClosedError
        if self in waiting_threads.get():
            raise DeadlockError(
                f"{self!r} is blocked in syncify() waiting for this very coroutine, so a call "
                "sent to it now would wait forever behind that wait. Run that part of the "
                "work on another thread (bridge.to_thread, another DedicatedThread), or do it "
                "on the dedicated thread before calling syncify()."
            )
        return await _run_job(fn, args, kwargs, None, self, "DedicatedThread.run()")  # type: ignore[no-any-return]

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """From sync code: run `fn(*args, **kwargs)` on this thread and block until it returns.

        For making the objects that must live here (a sqlite3 connection) at
        start-up in a sync application. Refused on an event loop's thread
        (it would block the loop: `await t.run(...)` there) and on this thread
        itself (the call would queue behind the caller: a deadlock).
        """
        _check_sync(fn, "DedicatedThread.call()")
        if threading.get_ident() == self._thread.ident:
            raise DeadlockError(
                f"DedicatedThread.call() was called on {self!r}'s own thread, where it would "
                "wait behind itself forever. Call the function directly: you are already there."
            )
        if on_loop_thread():
            raise DeadlockError(
                "DedicatedThread.call() blocks until the call returns, and this thread runs an "
                "event loop that would stop meanwhile. From async code use "
                "`await thread.run(fn, ...)` instead."
            )
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._queue_sync(contextvars.copy_context().run, run)
        return future.result()

    def _queue_sync(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if not self._closed:
                if self._forked:
                    self._restart()
                self._queue.put(_SyncCall(fn, args))
                return
        self.submit(None)  # type: ignore[arg-type]  # raises ClosedError

    def _restart(self) -> None:
        """In a forked child, under the lock: a thread of this process's own, on first use."""
        self._forked = False
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        origin.dedicated = self
        get = self._queue.get
        while True:
            job = get()
            if job is _STOP:
                return
            job.run()
            if self._forked:
                return  # this call forked, and this is the child: the thread starts anew there

    def _after_fork_in_child(self) -> None:
        # The thread, the calls queued for it and whoever held the lock stayed in
        # the parent. The objects made on the thread were copied: whether they may
        # be used across fork() is the driver's rule (sqlite3: no).
        self._lock = threading.Lock()
        self._forked = not self._closed

    def close(self) -> None:
        """Stop the thread once the calls already queued have run. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait (blocking) for the thread to end after `close()`; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> DedicatedThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> DedicatedThread:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


_dedicated: weakref.WeakSet[DedicatedThread] = weakref.WeakSet()


def _reset_dedicated_after_fork() -> None:
    for thread in list(_dedicated):
        thread._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_dedicated_after_fork)
