"""syncify and Portal: sync code calling async code, from every kind of thread."""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import traceback

import anyio
import anyio.lowlevel
import pytest

import bridge
from bridge import DeadlockError, Portal, syncify, to_thread

user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="anonymous")


async def _double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


async def _fail(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise LookupError(message)


@pytest.mark.anyio
async def test_sync_to_async_chain_nested_twice() -> None:
    # async -> to_thread -> legacy -> syncify -> async -> to_thread -> legacy -> syncify -> async
    loop_threads: list[int] = []

    async def innermost(x: int) -> int:
        loop_threads.append(threading.get_ident())
        return await _double(x)

    def inner_legacy(x: int) -> int:
        return syncify(innermost)(x) + 1

    async def middle(x: int) -> int:
        loop_threads.append(threading.get_ident())
        return await to_thread(inner_legacy, x) * 10

    def outer_legacy(x: int) -> int:
        return syncify(middle)(x) + 3

    assert await to_thread(outer_legacy, 2) == ((2 * 2) + 1) * 10 + 3
    assert loop_threads == [threading.get_ident()] * 2  # both ran on the loop that sent the work


@pytest.mark.anyio
async def test_syncify_on_the_loop_thread_raises_deadlock_error() -> None:
    with pytest.raises(DeadlockError, match=r"would block that thread.*await"):
        syncify(_double)(1)


@pytest.mark.anyio
async def test_exceptions_keep_their_traceback_through_syncify() -> None:
    def legacy() -> None:
        syncify(_fail)("missing")

    with pytest.raises(LookupError, match="missing") as info:
        await to_thread(legacy)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_fail" in names and "legacy" in names


@pytest.mark.anyio
async def test_contextvars_flow_into_syncify_and_back_out() -> None:
    async def login() -> str:
        seen = user.get()
        user.set("alice")
        return seen

    def legacy() -> tuple[str, str]:
        user.set("bob")
        seen = syncify(login)()
        return seen, user.get()

    assert await to_thread(legacy) == ("bob", "alice")


def test_syncify_from_plain_sync_code_uses_the_shared_portal() -> None:
    assert syncify(_double)(21) == 42
    assert bridge.shared_portal() is bridge.shared_portal()


def test_contextvars_flow_back_out_of_the_shared_portal() -> None:
    async def login() -> None:
        user.set("carol")

    ctx = contextvars.copy_context()
    ctx.run(syncify(login))
    assert ctx[user] == "carol"


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_portal_survives_1000_calls_from_8_threads(backend: str) -> None:
    options = {"backend": "trio"} if backend == "trio" else {"use_uvloop": backend == "uvloop"}
    with Portal(**options) as portal:  # type: ignore[arg-type]

        def caller(base: int) -> list[int]:
            return [portal.call(_double, base + i) for i in range(125)]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(caller, range(0, 1000, 125)))
    assert sorted(x for chunk in results for x in chunk) == [2 * i for i in range(1000)]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_portal_submit_returns_a_future_and_cancelling_it_cancels_the_task(backend: str) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    with Portal(backend=backend) as portal:  # type: ignore[arg-type]
        assert portal.submit(_double, 4).result(timeout=30) == 8
        future = portal.submit(forever)
        assert started.wait(30)
        assert future.cancel()
        assert cancelled.wait(30)
        with pytest.raises(LookupError):
            portal.submit(_fail, "x").result(timeout=30)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_portal_stops_cleanly_with_tasks_still_running(backend: str) -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    portal = Portal(backend=backend)  # type: ignore[arg-type]
    future = portal.submit(forever)
    assert started.wait(30)
    portal.stop()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=30)
    with pytest.raises(bridge.ClosedError, match="start a new Portal"):
        portal.call(_double, 1)


def test_portal_call_from_its_own_loop_raises_deadlock_error() -> None:
    with Portal() as portal:

        async def reenter() -> int:
            return portal.call(_double, 1)

        with pytest.raises(DeadlockError):
            portal.call(reenter)


def test_syncify_refuses_a_coroutine_object() -> None:
    coro = _double(1)
    with pytest.raises(TypeError, match="not a coroutine"):
        syncify(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_calls_racing_a_stop_fail_cleanly_instead_of_hanging(backend: str) -> None:
    for _ in range(20):
        portal = Portal(backend=backend)  # type: ignore[arg-type]
        outcomes: list[str] = []

        def caller(portal: Portal = portal, outcomes: list[str] = outcomes) -> None:
            for _ in range(50):
                try:
                    portal.call(_double, 1)
                    outcomes.append("ok")
                except (bridge.ClosedError, concurrent.futures.CancelledError):
                    outcomes.append("closed")
                    return

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        portal.stop()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a caller hung on a stopped portal"
