"""The worker pool: growth for blocking calls, retirement, loops that close mid-call."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

import bridge
from bridge._pool import WorkerPool, default_pool
from tests.support import eventually


def _bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("bridge-worker-")]


@pytest.mark.anyio
async def test_blocking_calls_get_a_thread_each_beyond_the_core_size() -> None:
    width = default_pool().core + 10
    barrier = threading.Barrier(width, timeout=30)  # passes only if all run at once

    async with anyio.create_task_group() as tg:
        for _ in range(width):
            tg.start_soon(bridge.to_thread, barrier.wait)
    assert not barrier.broken


def _all_idle() -> bool:
    stats = default_pool().statistics()
    return stats.idle == stats.threads


def test_idle_threads_retire() -> None:
    pool = WorkerPool(4, idle_timeout=0.01, name="bridge-worker-retire")

    async def main() -> None:
        release = threading.Event()
        waker = bridge._waker.current_waker()
        jobs = [bridge._job.Job(release.wait, (30,), {}, waker, pool, None) for _ in range(4)]
        for job in jobs:
            job.handle = asyncio.get_running_loop().create_future()
            pool.submit(job)
        await eventually(lambda: pool.statistics().threads == 4)
        release.set()
        await asyncio.gather(*(job.handle for job in jobs))

    asyncio.run(main())
    with anyio.from_thread.start_blocking_portal() as portal:
        portal.call(eventually, lambda: pool.statistics().threads == 0)
    assert not [t for t in threading.enumerate() if t.name.startswith("bridge-worker-retire")]


def test_stall_monitor_retires_when_the_pool_is_idle() -> None:
    pool = WorkerPool(2, core=1, idle_timeout=0.01, name="bridge-worker-monitored")

    async def main() -> None:
        waker = bridge._waker.current_waker()
        jobs = [bridge._job.Job(sum, ([i],), {}, waker, pool, None) for i in range(20)]
        for job in jobs:
            job.handle = asyncio.get_running_loop().create_future()
            pool.submit(job)  # one core thread: the rest queue, and the monitor starts
        assert pool._monitor is not None
        assert await asyncio.gather(*(job.handle for job in jobs)) == list(range(20))

    asyncio.run(main())

    def monitors() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith("bridge-worker-monitored")]

    with anyio.from_thread.start_blocking_portal() as portal:
        portal.call(eventually, lambda: not monitors() and pool._monitor is None)


def test_loop_closing_with_work_running_leaks_no_thread_and_raises_nothing() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def long_call() -> str:
        started.set()
        release.wait(30)
        finished.set()
        raise RuntimeError("result for a loop that is gone")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.to_thread, long_call)
            await bridge.to_thread(started.wait, 30)
            tg.cancel_scope.cancel()

    for backend, options in (("asyncio", False), ("asyncio", True), ("trio", None)):
        started.clear()
        release.clear()
        finished.clear()
        if backend == "trio":
            bridge.run(main, backend="trio")
        else:
            bridge.run(main, use_uvloop=options)
        # The loop is closed; the call still runs. Its result must be dropped quietly.
        release.set()
        assert finished.wait(30)
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(eventually, _all_idle)
    assert len(_bridge_threads()) <= default_pool().max_workers


def test_pool_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool(0)
