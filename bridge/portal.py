"""Sync code calling async code: `syncify` and `Portal`.

A sync caller needs a loop to run a coroutine on, and which loop is right
depends on where the caller is:

- On a bridge worker thread (a legacy function called through `to_thread`),
  the loop that sent the work is waiting on this very thread, but it is not
  blocked: it runs other tasks while the thread works. So the coroutine goes
  back to *that* loop, through its waker, and the thread blocks until the
  result comes back. The legacy code sees a plain function call; the async
  code it reaches shares the loop, its connections and its locks.
- On a thread with no loop of its own (a script, a Flask view, the REPL), the
  coroutine goes to the shared portal: one background loop in a daemon thread,
  started on first use.
- On a thread that runs a loop, blocking would stop the very loop that has to
  run the coroutine: a deadlock. That raises `DeadlockError` instead.

contextvars flow both ways: the coroutine runs in a copy of the caller's
context, and what it sets is copied back into the caller's when it returns, as
if the call had been a plain sync one.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
)
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast

import anyio
import sniffio

from bridge import _metrics
from bridge._exceptions import ClosedError, DeadlockError
from bridge._job import origin, waiting_threads
from bridge._pool import blocking
from bridge._waker import Waker, current_waker, on_loop_thread
from bridge.runner import run

P = ParamSpec("P")
T = TypeVar("T")

_MISSING = object()




_DEADLOCK = (
    "{what} was called on a thread that is running an event loop. It would block that "
    "thread until the coroutine finishes, but the coroutine needs this same loop to run: "
    "a deadlock. From async code, `await` the coroutine function directly. If sync code "
    "in between is the problem, run that sync code with `await bridge.to_thread(...)`; "
    "from there, {what} works."
)


class _Call:
    """One coroutine call sent to a loop, and its outcome sent back to a blocked thread.

    `complete` runs on the loop (the waker delivers it) and starts the task;
    the task hands its outcome to `done`. The sync side waits on `signal`.
    The outcome is settled once: by the task, or by the caller giving up
    because the loop stopped or closed first (then the task, if it ever runs,
    finds its outcome unwanted).
    """

    __slots__ = (
        "_claim",
        "args",
        "cancelled",
        "ctx",
        "done",
        "error",
        "fn",
        "kwargs",
        "result",
        "signal",
        "spawn",
        "task",
    )

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spawn: Callable[[_Call], None],
    ) -> None:
        if _metrics.on:
            _metrics.portal_calls.add()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.spawn = spawn
        self.ctx = contextvars.copy_context()
        blocked = origin.dedicated
        if blocked is not None:
            # This DedicatedThread now waits for the coroutine: anything the
            # coroutine sends back to it could never run (see DedicatedThread.run).
            self.ctx.run(waiting_threads.set, (*self.ctx.get(waiting_threads, ()), blocked))
        if self.ctx.get(_sniffio_cvar) is not None:
            # The coroutine runs on its own loop, whichever library the caller's was.
            self.ctx.run(_sniffio_cvar.set, None)
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: Any = None  # asyncio: the Task; trio: the CancelScope around the call
        self.signal: threading.Lock | None = None
        self.done: Callable[[_Call], None] | None = None
        self.cancelled = False
        # Popped by whoever settles the outcome first: `list.pop` is atomic (under
        # the GIL, and per-object locked on free-threaded builds).
        self._claim = [True]

    def complete(self) -> None:
        if self._claim:  # not given up on while it waited in the loop's queue
            self.spawn(self)

    def fail(self, error: BaseException) -> None:
        """Starting the task failed (e.g. trio's system nursery is closed at shutdown)."""
        self._finish(None, error)

    async def run_asyncio(self) -> None:
        # No cancel scope here: cancelling the task is enough, and anyio's scope
        # would cost more than the rest of the round trip.
        try:
            result = await self.fn(*self.args, **self.kwargs)
        except asyncio.CancelledError:
            self._finish(None, concurrent.futures.CancelledError())
        except BaseException as exc:  # handed to the caller, whatever it is
            self._finish(None, exc)
        else:
            self._finish(result, None)

    async def run_trio(self) -> None:
        import trio

        result: Any = None
        error: BaseException | None = None
        with trio.CancelScope() as self.task:
            if self.cancelled:
                self.task.cancel()
            try:
                result = await self.fn(*self.args, **self.kwargs)
            except trio.Cancelled:
                error = concurrent.futures.CancelledError()
            except BaseException as exc:  # handed to the caller, whatever it is
                error = exc
        self._finish(result, error)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        try:
            self._claim.pop()
        except IndexError:
            return  # settled already: the caller gave up on a stopped loop
        self.result = result
        self.error = error
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        done, self.done = self.done, None
        if done is not None:
            done(self)

    def _cancelled_before_start(self, task: Any) -> None:
        """asyncio: a task cancelled before its first step never runs `run_asyncio`."""
        if task.cancelled():
            self._finish(None, concurrent.futures.CancelledError())

    def fail_closed(self) -> None:
        """The loop went away before this call could run: its caller gets ClosedError."""
        self._finish(None, ClosedError(_LOOP_GONE))

    def wait(self, waker: Waker) -> Any:
        """Block this (non-loop) thread until the task is done; then act as the call did.

        While it waits, it checks now and then that the loop still runs: a loop
        that stopped or closed without running the call would leave this thread
        blocked for good, so the call fails with ClosedError instead.
        """
        signal = self.signal
        assert signal is not None
        stopped_seen = False
        with blocking():  # a pool thread parked here must not starve the work it waits for
            while not signal.acquire(timeout=_LIVENESS_POLL):
                if waker.running():
                    stopped_seen = False
                elif not stopped_seen:
                    stopped_seen = True  # one more poll: a loop may stop and restart at once
                else:
                    self._finish(None, ClosedError(_LOOP_GONE))
        for var, value in self.ctx.items():  # what the coroutine set flows back out
            if var is not _sniffio_cvar and var.get(_MISSING) is not value:
                var.set(value)
        error = self.error
        if error is not None:
            self.error = None
            raise error
        return self.result


# How often a thread blocked on a coroutine checks that its loop still runs.
_LIVENESS_POLL = 0.1
_LOOP_GONE = (
    "the event loop this call was sent to stopped or closed before the call finished; "
    "keep the loop (or Portal) running until the sync code calling into it returns"
)
_sniffio_cvar = sniffio.current_async_library_cvar


def _release(call: _Call) -> None:
    assert call.signal is not None
    call.signal.release()


def _blocking_call(
    waker: Waker, spawn: Callable[[_Call], None], fn: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    call = _Call(fn, args, kwargs, spawn)
    call.signal = threading.Lock()
    call.signal.acquire()
    call.done = _release
    waker.deliver(call)
    if waker.closed:
        raise ClosedError(_LOOP_GONE)
    return call.wait(waker)


# -- spawning on a loop that is not ours --------------------------------------


def _spawn(call: _Call, tasks: set[Any] | None) -> None:
    """Start `call` as a new task of the loop running here; the waker calls this on the loop.

    It runs as a plain callback, outside any task, so it uses the loops' own
    spawning (anyio's task groups need a current task to find their backend).
    """
    if sniffio.thread_local.name == "trio":
        import trio

        trio.lowlevel.spawn_system_task(call.run_trio, context=call.ctx)
    else:
        call.task = task = asyncio.get_running_loop().create_task(
            call.run_asyncio(), context=call.ctx
        )
        if tasks is not None:
            tasks.add(task)  # a task must be referenced until done, or the GC may take it
            task.add_done_callback(tasks.discard)


def _spawn_held(call: _Call) -> None:
    """For a caller that blocks on the call: it holds the call, the call holds the task."""
    _spawn(call, None)


def _spawn_tracked(call: _Call) -> None:
    """For a call nobody blocks on (a future handed out): the module holds the task."""
    _spawn(call, _running_tasks)


_running_tasks: set[Any] = set()


# -- syncify ------------------------------------------------------------------


def syncify(async_fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Turn an async function into a sync one that sync code can call anywhere.

    From a bridge worker thread it runs on the loop that sent the work there;
    from plain sync code, on the shared portal; on a loop thread it raises
    `DeadlockError`.

    >>> import bridge
    >>> async def double(x: int) -> int:
    ...     return 2 * x
    >>> bridge.syncify(double)(21)
    42
    """
    if isinstance(async_fn, Coroutine):
        async_fn.close()
        raise TypeError(
            "syncify() takes the async function itself, not a coroutine: "
            "write syncify(fetch)(args), not syncify(fetch(args))"
        )
    _check_async(async_fn, "syncify()")
    name = getattr(async_fn, "__qualname__", "async function")
    what = f"syncify({name})"

    @functools.wraps(async_fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        if on_loop_thread():
            raise DeadlockError(_DEADLOCK.format(what=what))
        waker = origin.waker
        if waker is not None and not waker.closed:
            return _blocking_call(waker, _spawn_held, async_fn, args, kwargs)  # type: ignore[no-any-return]
        return shared_portal().call(async_fn, *args, **kwargs)

    return call


def _check_async(fn: object, api: str) -> None:
    """Refuse, before anything runs, what is plainly not an async function.

    A sync function would run on the event loop's thread, blocking it, and
    only then fail; an async generator function has no single result to wait for.
    """
    if not callable(fn):
        raise TypeError(f"{api} needs an async function, got {fn!r}")
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", repr(target))
    if inspect.isasyncgenfunction(target):
        raise TypeError(
            f"{api} got the async generator function {name}(), which yields many values "
            "instead of returning one. Collect them in an async function "
            f"(`async def f(): return [x async for x in {name}()]`) and pass that."
        )
    if inspect.iscoroutinefunction(target):
        return
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target):
        raise TypeError(
            f"{api} got the sync function {name}(), which would run on the event loop's "
            f"thread and block it. Call {name}() directly from sync code (it needs no "
            "bridge), or pass an `async def` function."
        )


# -- Portal -------------------------------------------------------------------


class Portal:
    """A background event loop in a thread, for sync code and the REPL.

    >>> import bridge, anyio
    >>> async def add(a: int, b: int) -> int:
    ...     await anyio.sleep(0)
    ...     return a + b
    >>> with bridge.Portal() as portal:
    ...     portal.call(add, 1, 2)
    3
    """

    def __init__(
        self, *, backend: Literal["asyncio", "trio"] = "asyncio", use_uvloop: bool | None = None
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"Portal(backend=...) must be 'asyncio' or 'trio', got {backend!r}")
        self.backend = backend
        self._started = threading.Event()
        self._closed = False
        self._waker: Waker | None = None
        self._tasks: set[Any] = set()
        self._stop: anyio.Event | None = None
        self._failure: BaseException | None = None
        self._running = 0  # calls started on the loop and not finished (loop thread only)
        self._idle: anyio.Event | None = None
        self._draining = 0
        options: dict[str, Any] = {"backend": backend}
        if backend == "asyncio":
            options["use_uvloop"] = use_uvloop
        self._thread = threading.Thread(
            target=self._serve, kwargs=options, name=f"bridge-portal-{backend}", daemon=True
        )
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            raise RuntimeError(f"the portal's event loop failed to start: {self._failure!r}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<Portal {self.backend} {state}>"

    def _serve(self, **options: Any) -> None:
        try:
            run(self._main, **options)
        except BaseException as exc:
            self._failure = exc
        finally:
            self._closed = True
            if self._waker is not None:
                self._waker.close()  # calls that arrived as the loop stopped: fail, not hang
            self._started.set()

    async def _main(self) -> None:
        self._waker = current_waker()
        self._stop = anyio.Event()
        self._started.set()
        await self._stop.wait()
        # Cancel what still runs; its callers get CancelledError. (On trio the
        # run cancels its system tasks itself when this main task returns.)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with anyio.CancelScope(shield=True):
                try:
                    await task
                except BaseException:  # its caller has the outcome
                    pass

    def _spawn(self, call: _Call) -> None:
        if self._stop is not None and self._stop.is_set():
            call._finish(None, concurrent.futures.CancelledError())
            return
        self._track(call)
        _spawn(call, self._tasks)

    def _check(self, what: str) -> Waker:
        if self._closed or self._waker is None:
            raise ClosedError(f"{self!r} is closed; start a new Portal to run {what}")
        if threading.get_ident() == self._waker.thread_id:
            raise DeadlockError(_DEADLOCK.format(what=f"Portal.{what}"))
        return self._waker

    def call(self, async_fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `async_fn(*args, **kwargs)` on the portal's loop and block until it returns."""
        _check_async(async_fn, "Portal.call()")
        waker = self._check("call()")
        return _blocking_call(waker, self._spawn, async_fn, args, kwargs)  # type: ignore[no-any-return]

    def submit(
        self, async_fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Start `async_fn(*args, **kwargs)` on the loop; cancelling the future cancels it."""
        _check_async(async_fn, "Portal.submit()")
        waker = self._check("submit()")
        return _submit(waker, self._spawn, async_fn, args, kwargs)

    def run_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the sync `fn(*args, **kwargs)` on the portal's loop thread and return its result.

        For code that must run on the loop (loop-bound objects, callbacks that
        touch tasks); anyio's `from_thread.run_sync`. It blocks the loop while
        it runs, so keep it short.
        """
        return self.call(_run_sync, fn, *args, **kwargs)  # type: ignore[arg-type]

    def start_task(
        self, async_fn: Callable[..., Awaitable[T]], /, *args: Any
    ) -> tuple[concurrent.futures.Future[T], Any]:
        """Start a task that reports it is ready; return its future and its start value.

        `async_fn(*args, task_status=...)` calls `task_status.started(value)`
        once it is ready (a server that is listening, say), as with anyio's
        `BlockingPortal.start_task`; this returns then, with `value`, while the
        task runs on. If the task fails or returns before `started()`, this
        raises its error.
        """
        started: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future = self.submit(async_fn, *args, task_status=_TaskStatus(started))
        concurrent.futures.wait([started, future], return_when=concurrent.futures.FIRST_COMPLETED)
        if started.done():
            return future, started.result()
        error = None if future.cancelled() else future.exception()
        if error is not None:
            raise error
        name = getattr(async_fn, "__qualname__", repr(async_fn))
        raise RuntimeError(
            f"{name}() ended without calling task_status.started(); "
            "start it with submit() if it has no start value to report"
        )

    def wrap_async_context_manager(
        self, manager: contextlib.AbstractAsyncContextManager[T]
    ) -> contextlib.AbstractContextManager[T]:
        """Use an async context manager from sync code: `with portal.wrap_async_context_manager(x)`.

        Entering and exiting run in one task on the portal's loop (task groups
        and cancel scopes need that); an exception in the `with` body reaches
        `__aexit__`, which may suppress it.
        """
        return _PortalContextManager(self, manager)

    def wrap_async_iterator(self, iterable: AsyncIterable[T]) -> Generator[T, None, None]:
        """Iterate an async iterable from sync code, one item per round trip to the loop.

        Leaving the loop early (`break`, an exception) closes the async
        iterator (its `aclose()`) on the portal's loop.
        """
        iterator = aiter(iterable)
        try:
            while True:
                more, item = self.call(_next_item, iterator)
                if not more:
                    return
                yield cast(T, item)
        finally:
            if hasattr(iterator, "aclose") and not self._closed:
                self.call(_aclose, iterator)

    def stop_when_idle(self, timeout: float | None = None) -> None:
        """Let every call and task still running on the portal finish, then `stop()`.

        The graceful stop (anyio's `stop(cancel_remaining=False)`): work
        submitted meanwhile is waited for too.
        """
        if not self._closed:
            self.call(self._until_idle)
        self.stop(timeout)

    def _track(self, call: _Call) -> None:
        """Count `call` as running until it finishes (runs on the loop)."""
        self._running += 1
        done = call.done

        def finished(call: _Call) -> None:
            self._running -= 1
            if self._idle is not None:
                self._idle.set()
            if done is not None:
                done(call)

        call.done = finished

    async def _until_idle(self) -> None:
        self._draining += 1  # the calls waiting here are running calls too
        try:
            while self._running > self._draining:
                self._idle = anyio.Event()
                await self._idle.wait()
        finally:
            self._draining -= 1

    def stop(self, timeout: float | None = None) -> None:
        """Cancel what still runs, stop the loop and join its thread. Idempotent."""
        waker = self._waker
        if not self._closed and waker is not None:
            if threading.get_ident() == waker.thread_id:
                raise DeadlockError(_DEADLOCK.format(what="Portal.stop()"))
            waker.deliver(_Stop(self))
        self._thread.join(timeout)

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _submit(
    waker: Waker,
    spawn: Callable[[_Call], None],
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> concurrent.futures.Future[Any]:
    """Start a call on the waker's loop; its outcome settles a concurrent future."""
    future: concurrent.futures.Future[Any] = _LoopFuture(waker.thread_id)
    call = _Call(fn, args, kwargs, spawn)

    def done(call: _Call) -> None:
        _settle(future, call.result, call.error)

    def cancelled(f: concurrent.futures.Future[Any]) -> None:
        if f.cancelled():
            # Tell `concurrent.futures.wait` / `as_completed` too: only this call
            # wakes their waiters for a cancelled future.
            f.set_running_or_notify_cancel()
            waker.deliver(_Cancel(call))

    call.done = done
    future.add_done_callback(cancelled)
    waker.deliver(call)
    return future


class _LoopFuture(concurrent.futures.Future[Any]):
    """A future settled by a loop: waiting for it on that loop's own thread is refused.

    Blocking there would stop the very loop that has to settle it, freezing
    the program without a word.
    """

    def __init__(self, loop_thread: int) -> None:
        super().__init__()
        self._loop_thread = loop_thread

    def _refuse_deadlock(self, what: str) -> None:
        if threading.get_ident() == self._loop_thread and not self.done():
            raise DeadlockError(
                f"Future.{what} was called on the thread of the event loop that must settle "
                "this future, so it would wait forever. Await it instead "
                "(`await bridge.wrap_future(future)`), or call it from another thread."
            )

    def result(self, timeout: float | None = None) -> Any:
        self._refuse_deadlock("result()")
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._refuse_deadlock("exception()")
        return super().exception(timeout)


def _settle(
    future: concurrent.futures.Future[Any], result: Any, error: BaseException | None
) -> None:
    try:
        if isinstance(error, concurrent.futures.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass  # the caller cancelled it meanwhile; nobody wants the outcome


class _Cancel:
    __slots__ = ("call",)

    def __init__(self, call: _Call) -> None:
        self.call = call

    def complete(self) -> None:
        call = self.call
        call.cancelled = True  # trio: if its task has not started yet, it starts cancelled
        task = call.task
        if task is None:
            return
        task.cancel()
        if isinstance(task, asyncio.Task):
            task.add_done_callback(call._cancelled_before_start)


class _Stop:
    __slots__ = ("portal",)

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def complete(self) -> None:
        assert self.portal._stop is not None
        self.portal._stop.set()


async def _run_sync(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


def run_on_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the sync `fn(*args, **kwargs)` on an event loop's thread and return its result.

    anyio's `from_thread.run_sync`: from a bridge worker thread it runs on the
    loop that sent the work there (to touch loop-bound objects: an
    `asyncio.Event`, a task's state); from plain sync code, on the shared
    portal. Like `syncify`, it raises `DeadlockError` on a loop thread.
    """
    return syncify(_run_sync)(fn, *args, **kwargs)


async def _aclose(iterator: Any) -> None:
    await iterator.aclose()


async def _next_item(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    # A flag, not StopAsyncIteration: that would end the task, not the iteration.
    try:
        return True, await anext(iterator)
    except StopAsyncIteration:
        return False, None


class _TaskStatus:
    """What `Portal.start_task` hands its task: `task_status.started(value)` (anyio's protocol)."""

    __slots__ = ("_future",)

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def started(self, value: object = None) -> None:
        try:
            self._future.set_result(value)
        except concurrent.futures.InvalidStateError:
            raise RuntimeError("task_status.started() was called twice") from None


class _PortalContextManager(contextlib.AbstractContextManager[T]):
    """An async context manager driven from sync code, entered and exited in one portal task."""

    def __init__(self, portal: Portal, manager: contextlib.AbstractAsyncContextManager[T]) -> None:
        self._portal = portal
        self._manager = manager
        self._entered: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._exit: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()
        self._task: concurrent.futures.Future[bool | None] | None = None

    async def _run(self) -> bool | None:
        from bridge.futures import wrap_future  # bridge.futures imports this module

        value = await self._manager.__aenter__()
        self._entered.set_result(value)
        error: BaseException | None = await wrap_future(self._exit)
        if error is None:
            return await self._manager.__aexit__(None, None, None)
        return await self._manager.__aexit__(type(error), error, error.__traceback__)

    def __enter__(self) -> T:
        if self._task is not None:
            raise RuntimeError("this wrapped context manager was already entered; wrap a new one")
        self._task = task = self._portal.submit(self._run)
        waits: list[concurrent.futures.Future[Any]] = [self._entered, task]
        concurrent.futures.wait(waits, return_when=concurrent.futures.FIRST_COMPLETED)
        if not self._entered.done():
            task.result()  # raises what __aenter__ raised
        return self._entered.result()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._task is not None
        self._exit.set_result(exc)
        return bool(self._task.result())


_shared: Portal | None = None
_shared_lock = threading.Lock()


def shared_portal() -> Portal:
    """The process-wide portal `syncify` uses from plain sync code; started on first use."""
    global _shared
    portal = _shared
    if portal is None or portal._closed:
        with _shared_lock:
            if _shared is None or _shared._closed:
                _shared = Portal()
                atexit.register(_shared.stop, 5)
            portal = _shared
    return portal


def _forget_shared_portal_after_fork() -> None:
    """In a forked child the portal's thread does not exist: the next use starts a new one."""
    global _shared, _shared_lock
    if _shared is not None:
        _shared._closed = True  # its atexit stop() then does nothing
    _shared = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared_portal_after_fork)
