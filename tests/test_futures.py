"""wrap_future and to_future: both directions between futures and awaitables."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import bridge
from bridge import to_future, wrap_future

pytestmark = pytest.mark.anyio


class CallbackStyleFuture:
    """Shaped like cassandra's ResponseFuture: add_callbacks fires at once if already done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcome: tuple[bool, Any] | None = None
        self._callbacks: list[tuple[Callable[[Any], None], Callable[[BaseException], None]]] = []

    def add_callbacks(
        self, callback: Callable[[Any], None], errback: Callable[[BaseException], None]
    ) -> None:
        with self._lock:
            if self._outcome is None:
                self._callbacks.append((callback, errback))
                return
        ok, value = self._outcome
        (callback if ok else errback)(value)

    def _settle(self, ok: bool, value: Any) -> None:
        with self._lock:
            self._outcome = (ok, value)
            callbacks, self._callbacks = self._callbacks, []
        for callback, errback in callbacks:
            (callback if ok else errback)(value)

    def set_result(self, value: Any) -> None:
        self._settle(True, value)

    def set_exception(self, error: BaseException) -> None:
        self._settle(False, error)


async def test_callback_fires_immediately_on_the_calling_thread() -> None:
    future = CallbackStyleFuture()
    future.set_result(["row"])
    assert await wrap_future(future) == ["row"]


async def test_callback_fires_later_from_another_thread() -> None:
    future = CallbackStyleFuture()
    threading.Timer(0.01, future.set_result, args=(["late row"],)).start()
    assert await wrap_future(future) == ["late row"]


async def test_errback_raises_the_drivers_exception() -> None:
    future = CallbackStyleFuture()
    threading.Thread(target=future.set_exception, args=(TimeoutError("read timeout"),)).start()
    with pytest.raises(TimeoutError, match="read timeout"):
        await wrap_future(future)


async def test_concurrent_future_completed_elsewhere() -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(pow, i, 2) for i in range(1000)]
        results = [await wrap_future(f) for f in futures]
    assert results == [i * i for i in range(1000)]


async def test_concurrent_future_exception_comes_back() -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pytest.raises(ZeroDivisionError):
            await wrap_future(pool.submit(lambda: 1 / 0))


async def test_cancelled_wait_drops_the_late_result_and_cancels_a_pending_future() -> None:
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    with anyio.move_on_after(0.01) as scope:
        await wrap_future(pending)
    assert scope.cancelled_caught
    assert pending.cancelled()
    reported: list[object] = []
    if sniffio.current_async_library() == "asyncio":
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
    late = CallbackStyleFuture()
    with anyio.move_on_after(0.01):
        await wrap_future(late)
    late.set_exception(RuntimeError("nobody listens"))  # must not surface anywhere
    await bridge.to_thread(gc.collect)  # the late outcome has gone through the waker by now
    gc.collect()
    assert reported == []


async def test_refuses_what_is_not_a_future() -> None:
    with pytest.raises(TypeError, match="add_done_callback"):
        await wrap_future(42)


async def test_to_future_on_the_loop_thread_becomes_a_task() -> None:
    async def work() -> str:
        await anyio.lowlevel.checkpoint()
        return "done"

    future = to_future(work())
    assert await wrap_future(future) == "done"


def test_to_future_from_sync_code_runs_on_the_shared_portal() -> None:
    async def work(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x + 1

    assert to_future(work(1)).result(timeout=30) == 2


async def test_blocking_on_to_future_from_its_own_loop_raises_deadlock_error() -> None:
    async def later() -> int:
        await anyio.lowlevel.checkpoint()
        return 1

    future = bridge.to_future(later())
    with pytest.raises(bridge.DeadlockError, match="would wait forever"):
        future.result()
    assert await wrap_future(future) == 1
    assert future.result() == 1  # settled: reading it is fine anywhere
