"""bridge.lowlevel, the adapter kit: callbacks from any thread, jobs, read-ahead, loop identity."""

from __future__ import annotations

import functools
import math
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import bridge
from bridge import lowlevel
from tests.support import eventually

pytestmark = pytest.mark.anyio


async def test_callback_fired_at_once_on_the_calling_thread() -> None:
    assert await lowlevel.wait_for_callback(lambda done: done.set_result(42)) == 42


async def test_callback_fired_later_from_another_thread() -> None:
    def start(done: lowlevel.Callback[str]) -> None:
        threading.Thread(target=done.set_result, args=("from a thread",)).start()

    assert await lowlevel.wait_for_callback(start) == "from a thread"


async def test_first_outcome_wins_and_errors_are_raised() -> None:
    def start(done: lowlevel.Callback[int]) -> None:
        done.set_exception(LookupError("first"))
        done.set_result(1)  # a driver calling back twice: dropped

    with pytest.raises(LookupError, match="first"):
        await lowlevel.wait_for_callback(start)


async def test_a_start_that_raises_is_the_outcome() -> None:
    def start(done: lowlevel.Callback[int]) -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        await lowlevel.wait_for_callback(start)


async def test_cancelled_wait_stops_the_request_and_drops_the_late_outcome() -> None:
    handles: list[lowlevel.Callback[int]] = []
    stopped: list[bool] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lowlevel.wait_for_callback(handles.append, on_cancel=lambda: stopped.append(True))
    assert scope.cancelled_caught
    assert stopped == [True]
    handles[0].set_result(1)  # late: nobody waits, nothing is reported
    await anyio.lowlevel.checkpoint()


async def test_limiter_token_is_held_until_the_driver_answers() -> None:
    limiter = bridge.Limiter(1)
    handles: list[lowlevel.Callback[int]] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lowlevel.wait_for_callback(handles.append, limiter=limiter)
    assert limiter.statistics().running == 1  # the request is still out there
    queued: list[lowlevel.Callback[int]] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await lowlevel.wait_for_callback(queued.append, limiter=limiter)
    assert queued == []  # gave up while queued for the token: never started
    assert limiter.statistics().waiting == 0
    handles[0].set_result(1)
    await eventually(lambda: limiter.statistics().running == 0)
    assert await lowlevel.wait_for_callback(lambda d: d.set_result(5), limiter=limiter) == 5


async def test_limiter_starts_queued_requests_as_tokens_return() -> None:
    limiter = bridge.Limiter(2)
    started: list[int] = []
    handles: dict[int, lowlevel.Callback[int]] = {}

    def start(i: int, done: lowlevel.Callback[int]) -> None:
        started.append(i)
        handles[i] = done

    results: list[int] = []

    async def one(i: int) -> None:
        results.append(
            await lowlevel.wait_for_callback(functools.partial(start, i), limiter=limiter)
        )

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
        for k in range(6):
            await eventually(lambda k=k: len(started) > k)  # type: ignore[misc]
            assert len(started) <= k + 2  # at most two started and unanswered
            i = started[k]
            threading.Thread(target=handles[i].set_result, args=(i,)).start()
    assert sorted(started) == list(range(6))
    assert sorted(results) == list(range(6))
    assert limiter.statistics().peak == 2


async def test_run_job_on_a_dedicated_thread_behind_a_limiter() -> None:
    limiter = bridge.Limiter(1)
    with bridge.DedicatedThread(name="kit") as thread:
        name = await lowlevel.run_job(lambda: threading.current_thread().name, executor=thread)
        assert name == "kit"
        assert await lowlevel.run_job(pow, 2, 10, limiter=limiter) == 1024
    with pytest.raises(TypeError, match="async function"):

        async def not_sync() -> None: ...

        await lowlevel.run_job(not_sync)  # type: ignore[arg-type]


async def test_cleanup_job_runs_even_when_its_caller_is_cancelled() -> None:
    ran = threading.Event()
    dropped = threading.Event()
    gate = threading.Event()
    with bridge.DedicatedThread() as thread:
        async with anyio.create_task_group() as tg:
            holding = threading.Event()

            def hold() -> None:
                holding.set()
                gate.wait(30)

            tg.start_soon(thread.run, hold)
            await eventually(holding.is_set)  # the thread is busy until the gate opens
            with anyio.move_on_after(0.01):  # both are queued behind the gate, never started
                async with anyio.create_task_group() as inner:
                    inner.start_soon(
                        functools.partial(lowlevel.run_job, ran.set, executor=thread, cleanup=True)
                    )
                    inner.start_soon(
                        functools.partial(lowlevel.run_job, dropped.set, executor=thread)
                    )
            gate.set()
        await thread.run(lambda: None)  # FIFO: everything queued before this has run
    assert ran.is_set()  # cleanup: runs although nobody waits for it
    assert not dropped.is_set()  # plain job: cancelled before it started, so never runs


async def test_read_ahead_bounds_what_a_callback_producer_fetches() -> None:
    fetches: list[int] = []

    def fetch(buffer: lowlevel.ReadAhead[int]) -> None:
        n = len(fetches)
        fetches.append(n)
        waker = lowlevel.current_waker()

        class Landed:
            def complete(self) -> None:
                buffer.put(n, last=n == 9)

        threading.Thread(target=waker.deliver, args=(Landed(),)).start()

    buffer: lowlevel.ReadAhead[int] = lowlevel.ReadAhead(fetch, prefetch=2)
    got: list[int] = []
    while True:
        try:
            got.append(await buffer.get())
        except StopAsyncIteration:
            break
        await eventually(lambda: not buffer.fetching)
        assert buffer.buffered <= 2
        assert len(fetches) <= len(got) + 2
    assert got == list(range(10))


async def test_read_ahead_refuses_a_bad_prefetch() -> None:
    with pytest.raises(ValueError, match="prefetch"):
        lowlevel.ReadAhead(lambda b: None, prefetch=-1)


async def test_current_loop_is_stable_and_identifies_the_loop() -> None:
    first: Any = lowlevel.current_loop()
    assert lowlevel.current_loop() is first
    assert lowlevel.on_loop_thread()
    other = await bridge.to_thread(lambda: lowlevel.on_loop_thread())
    assert other is False


def test_current_loop_outside_a_loop_says_what_to_do() -> None:
    with pytest.raises(bridge.NoEventLoopError, match="current_loop"):
        lowlevel.current_loop()


async def test_time_left_reads_the_tasks_deadline() -> None:
    assert lowlevel.time_left() == math.inf
    with anyio.fail_after(10):  # noqa: ASYNC100 - read, not awaited
        assert 0 < lowlevel.time_left() <= 10
    await lowlevel.yield_to_deadline()  # no deadline: returns at once


@pytest.mark.allow_blocking(reason="holds the loop past the deadline, as a loaded machine does")
async def test_yield_to_deadline_lets_a_passed_deadline_end_the_call() -> None:
    # The deadline passes while the loop is held, so its timer has not run yet; a
    # plain checkpoint would let the task go on (asyncio) with a driver's error.
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            time.sleep(0.05)  # noqa: ASYNC251 - the point: a loop held past the deadline
            await lowlevel.yield_to_deadline()


@pytest.mark.allow_blocking(reason="holds the loop past the deadline, as a loaded machine does")
async def test_yield_to_passed_deadline_waits_only_for_a_deadline_that_has_passed() -> None:
    with anyio.fail_after(60) as scope:
        await lowlevel.yield_to_passed_deadline()  # 60 s left: a shorter timeout stands
    assert not scope.cancelled_caught
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.01):
            time.sleep(0.05)  # noqa: ASYNC251 - the point: a loop held past the deadline
            await lowlevel.yield_to_passed_deadline()
