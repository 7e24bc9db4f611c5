"""to_thread, asyncify and DedicatedThread, on asyncio, uvloop and trio."""

from __future__ import annotations

import contextvars
import gc
import threading
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import bridge
from bridge import DedicatedThread, Limiter, asyncify, to_thread
from tests.support import eventually

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def _boom(message: str) -> None:
    raise ValueError(message)


async def test_result_comes_back() -> None:
    assert await to_thread(sum, [1, 2, 3]) == 6


async def test_runs_in_a_named_worker_thread() -> None:
    name = await to_thread(lambda: threading.current_thread().name)
    assert name.startswith("bridge-worker-")
    assert name != threading.current_thread().name


async def test_kwargs_are_passed() -> None:
    def f(a: int, *, b: int, c: int = 0) -> tuple[int, int, int]:
        return (a, b, c)

    assert await to_thread(f, 1, b=2, c=3) == (1, 2, 3)


async def test_exception_comes_back_with_its_traceback() -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        await to_thread(_boom, "bad input")
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_boom" in frames


async def test_contextvars_are_copied_into_the_thread() -> None:
    request_id.set("req-42")

    def read_and_write() -> str:
        seen = request_id.get()
        request_id.set("changed-in-thread")  # must not leak back
        return seen

    assert await to_thread(read_and_write) == "req-42"
    assert request_id.get() == "req-42"


async def test_asyncify_keeps_name_and_passes_arguments() -> None:
    @asyncify
    def greet(name: str, *, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    assert greet.__name__ == "greet"
    assert await greet("bridge", punctuation="?") == "hello bridge?"


async def test_asyncify_timeout_raises_timeout_error_and_job_finishes_in_background() -> None:
    release = threading.Event()
    finished = threading.Event()
    limiter = Limiter(1)

    @asyncify(timeout=0.05, limiter=limiter)
    def slow() -> None:
        release.wait(30)
        finished.set()

    with pytest.raises(TimeoutError, match=r"slow\(\) did not finish within .*timeout=0.05"):
        await slow()
    assert limiter.statistics().running == 1  # still holds its token while running
    release.set()
    await eventually(lambda: limiter.statistics().running == 0)
    assert finished.is_set()


async def test_ten_thousand_concurrent_calls_complete() -> None:
    results: list[int] = []

    async def one(i: int) -> None:
        results.append(await to_thread(int, i))

    async with anyio.create_task_group() as tg:
        for i in range(10_000):
            tg.start_soon(one, i)
            if i % 500 == 499:
                await anyio.lowlevel.checkpoint()  # creating 10,000 tasks at once blocks the loop
    assert sorted(results) == list(range(10_000))


async def test_cancel_while_running_returns_at_once_and_token_comes_back_later() -> None:
    limiter = Limiter(1)
    started = threading.Event()
    release = threading.Event()
    call = asyncify(limiter=limiter)(lambda: (started.set(), release.wait(30)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(started.wait)
        tg.cancel_scope.cancel()
    # The task group has exited: the cancelled await returned while the thread still runs.
    assert not release.is_set()
    assert limiter.statistics().running == 1
    release.set()
    await eventually(lambda: limiter.statistics().running == 0)
    assert limiter.statistics().waiting == 0


async def test_cancel_before_start_drops_the_job() -> None:
    limiter = Limiter(1)
    release = threading.Event()
    ran: list[str] = []

    @asyncify(limiter=limiter)
    def blocker() -> None:
        release.wait(30)

    @asyncify(limiter=limiter)
    def never() -> None:
        ran.append("never")

    async with anyio.create_task_group() as outer:
        outer.start_soon(blocker)
        await eventually(lambda: limiter.statistics().running == 1)
        async with anyio.create_task_group() as inner:
            inner.start_soon(never)
            await eventually(lambda: limiter.statistics().waiting == 1)
            inner.cancel_scope.cancel()
        assert limiter.statistics().waiting == 0
        release.set()
    # The blocker is done and its token was not handed to the dropped call.
    assert await to_thread(lambda: "pool still works") == "pool still works"
    assert ran == []
    stats = limiter.statistics()
    assert (stats.running, stats.waiting, stats.total) == (0, 0, 1)


async def test_cancelled_running_call_never_reports_its_exception() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def fails_later() -> None:
        started.set()
        release.wait(30)
        finished.set()
        raise RuntimeError("nobody is waiting for me")

    reported: list[Any] = []
    import asyncio

    import sniffio

    if sniffio.current_async_library() == "asyncio":
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))

    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(to_thread, fails_later)
            await anyio.to_thread.run_sync(started.wait)
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    release.set()
    await anyio.to_thread.run_sync(finished.wait, 30)
    await to_thread(gc.collect)  # a later completion goes through the same waker
    gc.collect()
    await anyio.lowlevel.checkpoint()
    assert reported == []


async def test_dedicated_thread_runs_everything_on_one_thread_in_order() -> None:
    order: list[int] = []
    idents: set[int] = set()

    def record(i: int) -> None:
        order.append(i)
        idents.add(threading.get_ident())

    with DedicatedThread(name="pinned") as thread:
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(thread.run, record, i)
                await anyio.lowlevel.checkpoint()  # start order == submission order
        assert idents == {thread.ident}
        assert await thread.run(lambda: threading.current_thread().name) == "pinned"
    assert order == list(range(200))


async def test_asyncify_with_dedicated_thread_pins_calls() -> None:
    with DedicatedThread() as thread:
        where = asyncify(thread=thread)(threading.get_ident)
        assert {await where() for _ in range(5)} == {thread.ident}


async def test_dedicated_thread_used_after_close_raises_clear_error() -> None:
    thread = DedicatedThread(name="gone")
    await thread.run(int)
    thread.close()
    with pytest.raises(bridge.ClosedError, match="was closed"):
        await thread.run(int)
    assert await anyio.to_thread.run_sync(thread.join, 30)


async def test_coroutine_function_is_refused_with_the_fix() -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"async function .*fetch\(\).*await"):
        await to_thread(fetch)
    with pytest.raises(TypeError, match="async function"):
        asyncify(fetch)  # type: ignore[arg-type]


async def test_coroutine_object_is_refused_with_the_fix() -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"coroutine object.*Await it directly"):
        await to_thread(fetch())  # type: ignore[arg-type]


async def test_function_returning_a_coroutine_is_refused() -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match="returned a coroutine"):
        await to_thread(lambda: fetch())


async def test_obeys_anyio_cancel_scopes() -> None:
    release = threading.Event()
    with anyio.move_on_after(0.01) as scope:
        await to_thread(release.wait, 30)
    assert scope.cancelled_caught
    release.set()


def test_call_with_no_running_loop_says_what_to_do() -> None:
    coro = to_thread(int)
    with pytest.raises(bridge.NoEventLoopError, match=r"no loop is running.*bridge.run"):
        coro.send(None)
    coro.close()


def test_bad_asyncify_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        asyncify(int, timeout=0)
    with pytest.raises(TypeError, match="Limiter"):
        asyncify(int, limiter=3)  # type: ignore[arg-type]


async def test_abandon_on_cancel_false_waits_for_the_thread_to_finish() -> None:
    limiter = Limiter(1)
    started = threading.Event()
    release = threading.Event()
    outcome: list[object] = []

    @asyncify(limiter=limiter, abandon_on_cancel=False)
    def flush() -> int:
        started.set()
        release.wait(30)
        return 42

    async def caller() -> None:
        try:
            outcome.append(await flush())
            await anyio.lowlevel.checkpoint()  # the cancellation arrives here
            outcome.append("not reached")
        finally:
            outcome.append("caller moved on")

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller)
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(started.wait)
        tg.cancel_scope.cancel()
        release.set()
    # An abandoned call would have raised the cancellation instead of returning 42.
    assert outcome == [42, "caller moved on"]
    assert limiter.statistics().running == 0


def test_abandon_on_cancel_false_refuses_a_timeout() -> None:
    with pytest.raises(ValueError, match="cannot time out"):
        asyncify(timeout=1.0, abandon_on_cancel=False)


async def test_a_timeout_error_raised_by_the_function_itself_is_not_rewritten() -> None:
    @asyncify(timeout=30)
    def connect() -> None:
        raise TimeoutError("the driver's own")

    with pytest.raises(TimeoutError, match="the driver's own"):
        await connect()


def test_bad_timeouts_and_thread_names_are_refused_with_the_fix() -> None:
    for bad in (float("nan"), float("inf"), -1, "1", True):
        with pytest.raises(ValueError, match="positive, finite number of seconds"):
            asyncify(int, timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"name=.*needs a str"):
        DedicatedThread(name=5)  # type: ignore[arg-type]


async def test_stop_iteration_from_the_function_reaches_the_caller_as_runtime_error() -> None:
    def exhausted() -> int:
        return next(iter([]))

    with pytest.raises(RuntimeError) as info:
        await to_thread(exhausted)
    assert isinstance(info.value.__cause__, StopIteration) or "StopIteration" in str(info.value)


async def test_worker_threads_see_no_async_library() -> None:
    def library() -> str:
        try:
            return sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return "none"

    assert await to_thread(library) == "none"
    assert await asyncify(library, thread=None)() == "none"


async def test_dedicated_thread_waiting_on_itself_raises_deadlock_error() -> None:
    with DedicatedThread(name="db") as db:

        async def back_to_the_same_thread() -> int:
            return await db.run(int, 7)

        def on_the_thread() -> int:
            return bridge.syncify(back_to_the_same_thread)()

        with pytest.raises(bridge.DeadlockError, match="blocked in syncify"):
            await db.run(on_the_thread)
        assert await db.run(int, 3) == 3  # and the thread still serves

        async def elsewhere() -> int:
            return await to_thread(int, 5)

        assert await db.run(lambda: bridge.syncify(elsewhere)()) == 5


def test_dedicated_thread_call_from_sync_code() -> None:
    import sqlite3

    with DedicatedThread(name="sqlite") as db:
        conn = db.call(sqlite3.connect, ":memory:")
        assert db.call(lambda: conn.execute("select 40 + 2").fetchone()) == (42,)
        with pytest.raises(ZeroDivisionError):
            db.call(lambda: 1 / 0)
        with pytest.raises(bridge.DeadlockError, match="own thread"):
            db.call(lambda: db.call(int))
        db.call(conn.close)
    with pytest.raises(bridge.ClosedError):
        db.call(int)


async def test_dedicated_thread_call_is_refused_on_a_loop_thread() -> None:
    with DedicatedThread() as db:
        with pytest.raises(bridge.DeadlockError, match=r"await thread.run"):
            db.call(int)


async def test_a_call_made_in_an_already_cancelled_scope_never_starts() -> None:
    ran: list[str] = []
    with DedicatedThread() as thread:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await thread.run(ran.append, "run")
        assert scope.cancelled_caught
        with anyio.CancelScope() as scope:
            scope.cancel()
            await asyncify(ran.append, thread=thread)("asyncify")
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope():  # an inner scope inherits the cancellation
                await thread.run(ran.append, "nested")
        await thread.run(ran.append, "after")  # FIFO: anything sent before has run or was dropped
    assert ran == ["after"]


async def test_a_shielded_call_in_a_cancelled_scope_still_runs() -> None:
    ran: list[str] = []
    with DedicatedThread() as thread:
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                await thread.run(ran.append, "shielded")
    assert ran == ["shielded"]


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_abandon_on_cancel_false_waits_through_a_native_asyncio_cancel(use_uvloop: bool) -> None:
    import asyncio

    started = threading.Event()
    release = threading.Event()
    events: list[str] = []

    @asyncify(abandon_on_cancel=False)
    def flush() -> int:
        started.set()
        release.wait(30)
        events.append("thread finished")
        return 42

    async def caller() -> None:
        try:
            events.append(str(await flush()))  # an abandoned call would raise instead
        finally:
            events.append("caller moved on")

    async def main() -> None:
        task = asyncio.ensure_future(caller())
        await bridge.to_thread(started.wait, 30)
        task.cancel()  # asyncio's own cancellation, no anyio scope involved
        release.set()
        with pytest.raises(asyncio.CancelledError):  # still delivered, once the call is done
            await task

    bridge.run(main, use_uvloop=use_uvloop)
    assert events == ["thread finished", "42", "caller moved on"]
