"""Deadlines and cancellation reach the worker thread: current_deadline, check_cancelled."""

from __future__ import annotations

import threading

import anyio
import pytest

import bridge

pytestmark = pytest.mark.anyio


async def test_check_cancelled_raises_once_the_caller_was_cancelled() -> None:
    started = threading.Event()
    cancel_seen = threading.Event()
    before: list[str] = []
    raised: list[type[BaseException]] = []

    def crunch() -> None:
        bridge.check_cancelled()  # the caller is still waiting: returns
        before.append("ok")
        started.set()
        cancel_seen.wait(30)
        try:
            bridge.check_cancelled()
        except BaseException as exc:
            raised.append(type(exc))
            raise
        raised.append(type(None))  # not reached when check_cancelled works

    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.to_thread, crunch)
        await bridge.to_thread(started.wait, 30)
        tg.cancel_scope.cancel()
    cancel_seen.set()  # the loop has delivered the cancellation; now the thread looks
    with anyio.fail_after(30):
        while not raised:  # noqa: ASYNC110 - the verdict comes from another thread
            await anyio.sleep(0.001)
    assert before == ["ok"]
    assert raised == [anyio.get_cancelled_exc_class()]


async def test_a_polling_loop_in_a_thread_stops_and_frees_its_token() -> None:
    limiter = bridge.Limiter(1)
    started = threading.Event()
    stopped = threading.Event()

    @bridge.asyncify(limiter=limiter)
    def crunch() -> None:
        started.set()
        try:
            while True:
                bridge.check_cancelled()
        finally:
            stopped.set()

    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(crunch)
            await bridge.to_thread(started.wait, 30)
            tg.cancel_scope.cancel()
        assert await bridge.to_thread(stopped.wait, 30)
        # The token came back: a second call gets it (it would queue forever otherwise).
        assert await bridge.asyncify(limiter=limiter)(int)("3") == 3
    assert not scope.cancelled_caught


async def test_current_deadline_is_the_time_left_of_the_callers_scope() -> None:
    assert await bridge.to_thread(bridge.current_deadline) is None
    with anyio.fail_after(100):
        left = await bridge.to_thread(bridge.current_deadline)
        assert left is not None and 0 < left <= 100
        with anyio.move_on_after(50):
            inner = await bridge.to_thread(bridge.current_deadline)
            assert inner is not None and 0 < inner <= 50
        with anyio.CancelScope(shield=True):
            assert await bridge.to_thread(bridge.current_deadline) is None


async def test_asyncify_timeout_reaches_the_thread() -> None:
    left = await bridge.asyncify(bridge.current_deadline, timeout=100)()
    assert left is not None and 0 < left <= 100


async def test_trio_fail_after_reaches_the_thread(anyio_backend: object) -> None:
    if anyio_backend[0] != "trio":  # type: ignore[index]
        pytest.skip("trio's own cancel scopes exist only under trio")
    import trio

    with trio.fail_after(100):
        left = await bridge.to_thread(bridge.current_deadline)
    assert left is not None and 0 < left <= 100


async def test_the_deadline_is_zero_once_the_caller_gave_up() -> None:
    started = threading.Event()
    cancel_seen = threading.Event()
    seen: list[float | None] = []

    def wait_then_look() -> None:
        started.set()
        cancel_seen.wait(30)
        seen.append(bridge.current_deadline())

    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.to_thread, wait_then_look)
        await bridge.to_thread(started.wait, 30)
        tg.cancel_scope.cancel()
    cancel_seen.set()
    with anyio.fail_after(30):
        while not seen:  # noqa: ASYNC110 - written by another thread
            await anyio.sleep(0.001)
    assert seen == [0.0]


async def test_on_the_loop_thread_check_cancelled_refuses_with_the_fix() -> None:
    with pytest.raises(RuntimeError, match="is for code running in a worker thread"):
        bridge.check_cancelled()
    with pytest.raises(RuntimeError, match=r"anyio\.current_effective_deadline"):
        bridge.current_deadline()


def test_outside_bridge_threads_there_is_nothing_to_check() -> None:
    results: list[object] = []

    def plain_thread() -> None:
        bridge.check_cancelled()
        results.append(bridge.current_deadline())

    thread = threading.Thread(target=plain_thread)
    thread.start()
    thread.join(30)
    assert results == [None]


async def test_adapter_jobs_carry_the_deadline_too() -> None:
    from bridge import lowlevel

    with anyio.fail_after(100):
        left = await lowlevel.run_job(bridge.current_deadline)
    assert left is not None and 0 < left <= 100
