"""Await callback-style futures without a thread, and hand awaitables to sync code as futures.

`asyncio.wrap_future` chains a concurrent future into the loop with one
`call_soon_threadsafe` per result, and it only knows `concurrent.futures`.
Drivers have their own futures: cassandra's `ResponseFuture` takes
`add_callbacks(callback, errback)` and may call them at once on the calling
thread or later on its reactor thread. `wrap_future` accepts either style and
delivers every outcome through the loop's one batching waker, so ten thousand
futures finishing on a driver thread cost a handful of loop wake-ups.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from bridge._callback import Callback
from bridge._waker import Waker, current_waker, on_loop_thread
from bridge.portal import _spawn_tracked, _submit, shared_portal

T = TypeVar("T")


class CallbackFuture(Protocol):
    """cassandra's `ResponseFuture` style: success and error callbacks."""

    def add_callbacks(self, callback: Any, errback: Any) -> Any: ...


class DoneCallbackFuture(Protocol):
    """`concurrent.futures.Future` style: one callback given the finished future."""

    def add_done_callback(self, fn: Any, /) -> Any: ...

    def result(self, timeout: float | None = None) -> Any: ...


class _FutureWait(Callback[Any]):
    """A task parked on a foreign future; callbacks may fire on any thread, even at once."""

    __slots__ = ("future",)

    def __init__(self, future: Any, waker: Waker) -> None:
        super().__init__(waker, _no_start)
        self.future = future

    def start(self) -> None:
        future = self.future
        # hasattr, not isinstance with the runtime protocols: those cost microseconds.
        if hasattr(future, "add_callbacks"):
            future.add_callbacks(self.set_result, self.set_exception)
        else:
            future.add_done_callback(self._on_done)

    def _on_done(self, future: Any) -> None:
        try:
            result = future.result()
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(result)

    def cancel(self) -> None:
        self.handle = None  # a late outcome is dropped, never reported as unretrieved
        future = self.future
        if isinstance(future, concurrent.futures.Future):
            future.cancel()  # a job that has not started yet will not start


def _no_start(callback: Callback[Any]) -> None:
    return None


async def wrap_future(
    future: concurrent.futures.Future[T] | CallbackFuture | DoneCallbackFuture,
) -> T:
    """Await a `concurrent.futures.Future` or a driver's callback-style future.

    Accepts anything with `add_done_callback` (concurrent futures and look-alikes)
    or with `add_callbacks(callback, errback)` (cassandra's `ResponseFuture`).
    No thread is used: the future's own callbacks wake the loop.
    """
    if isinstance(future, concurrent.futures.Future):
        if future.done():
            return future.result()  # already settled: no need to park at all
    elif isinstance(future, asyncio.Future):
        raise TypeError(
            "wrap_future() got an asyncio future, which is already awaitable: await it directly "
            "(or use asyncio.wrap_future to bring a concurrent future to asyncio)"
        )
    elif not (hasattr(future, "add_callbacks") or hasattr(future, "add_done_callback")):
        raise TypeError(
            f"wrap_future() needs a future with add_done_callback() or add_callbacks(), "
            f"got {future!r}. For a blocking call, use `await bridge.to_thread(fn)`."
        )
    waker = current_waker("wrap_future()")
    return await waker.wait(_FutureWait(future, waker))  # type: ignore[no-any-return]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def to_future(awaitable: Awaitable[T]) -> concurrent.futures.Future[T]:
    """Run an awaitable and return a `concurrent.futures.Future` for sync code.

    On a loop thread it becomes a task of that loop; elsewhere it runs on the
    shared portal. Cancelling the future cancels the task.
    """
    if not isinstance(awaitable, Awaitable):
        raise TypeError(f"to_future() needs an awaitable (e.g. a coroutine), got {awaitable!r}")
    if on_loop_thread():
        return _submit(current_waker("to_future()"), _spawn_tracked, _await, (awaitable,), {})
    return shared_portal().submit(_await, awaitable)
