"""Limiter: exact caps, FIFO hand-over, statistics, misuse."""

from __future__ import annotations

import threading

import anyio
import pytest

from bridge import Limiter, asyncify
from tests.support import eventually

pytestmark = pytest.mark.anyio


async def test_limiter_caps_concurrency_exactly() -> None:
    limiter = Limiter(3, name="db")
    lock = threading.Lock()
    running = 0
    most = 0
    release = threading.Event()

    @asyncify(limiter=limiter)
    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(30)
        with lock:
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(work)
        await eventually(lambda: limiter.statistics().waiting == 17 and running == 3)
        stats = limiter.statistics()
        assert (stats.running, stats.waiting) == (3, 17)
        release.set()
    stats = limiter.statistics()
    assert most == 3
    assert (stats.running, stats.waiting, stats.peak, stats.total) == (0, 0, 3, 20)


def _queued(limiter: Limiter) -> int:
    stats = limiter.statistics()
    return stats.total + stats.waiting


async def test_tokens_are_handed_over_in_fifo_order() -> None:
    limiter = Limiter(1)
    gate = threading.Event()
    order: list[int] = []

    @asyncify(limiter=limiter)
    def work(i: int) -> None:
        if i == 0:
            gate.wait(30)
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(work, i)
            await eventually(lambda n=i + 1: _queued(limiter) == n)
        gate.set()
    assert order == list(range(10))


async def test_async_with_holds_a_token() -> None:
    limiter = Limiter(2)
    inside = 0
    most = 0

    async def user() -> None:
        nonlocal inside, most
        async with limiter:
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.001)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(user)
    assert most == 2
    assert limiter.statistics().running == 0


async def test_cancelled_acquire_gives_its_place_up() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()
    assert limiter.statistics().waiting == 0
    limiter.release()
    async with limiter:
        assert limiter.statistics().running == 1
    assert limiter.statistics().running == 0


def test_zero_tokens_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"Limiter\(0\) would never let a call run"):
        Limiter(0)
    with pytest.raises(TypeError):
        Limiter(2.5)  # type: ignore[arg-type]


def test_release_without_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="more often than acquire"):
        Limiter(1).release()


async def test_a_job_for_a_closed_thread_gives_its_token_back() -> None:
    from bridge import ClosedError, DedicatedThread

    limiter = Limiter(1)
    thread = DedicatedThread()
    gate = threading.Event()
    pinned = asyncify(limiter=limiter, thread=thread)(int)

    @asyncify(limiter=limiter)
    def holder() -> None:
        gate.wait(30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await eventually(lambda: limiter.statistics().running == 1)
        failures: list[BaseException] = []

        async def pinned_call() -> None:
            try:
                await pinned()
            except ClosedError as exc:
                failures.append(exc)

        tg.start_soon(pinned_call)
        await eventually(lambda: limiter.statistics().waiting == 1)
        thread.close()  # the token the holder returns goes to a job that cannot run
        gate.set()
    assert len(failures) == 1
    stats = limiter.statistics()
    assert (stats.running, stats.waiting) == (0, 0)
    assert await asyncify(limiter=limiter)(int)("7") == 7  # the limiter still works
