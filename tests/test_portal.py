"""syncify and Portal: sync code calling async code, from every kind of thread."""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import contextlib
import contextvars
import functools
import threading
import traceback
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import sniffio

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


# -- what sync code needs from a portal (anyio's BlockingPortal API) ----------------------------

PORTAL_BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])


def _portal(backend: str) -> Portal:
    if backend == "trio":
        return Portal(backend="trio")
    return Portal(use_uvloop=backend == "uvloop")


class _Resource:
    """An async context manager that records what happened to it, on which thread."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.threads: set[int] = set()

    async def __aenter__(self) -> str:
        self.threads.add(threading.get_ident())
        await anyio.lowlevel.checkpoint()
        self.events.append("enter")
        return "connection"

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self.threads.add(threading.get_ident())
        await anyio.lowlevel.checkpoint()
        self.events.append(f"exit {type(exc).__name__ if exc else None}")
        return isinstance(exc, KeyError)  # suppresses KeyError only


@PORTAL_BACKENDS
def test_wrap_async_context_manager_enters_and_exits_on_the_loop(backend: str) -> None:
    with _portal(backend) as portal:
        resource = _Resource()
        with portal.wrap_async_context_manager(resource) as value:
            assert value == "connection"
        with pytest.raises(LookupError):
            with portal.wrap_async_context_manager(resource):
                raise LookupError("not suppressed")
        with portal.wrap_async_context_manager(resource):
            raise KeyError("suppressed by __aexit__")
    assert resource.events == [
        "enter",
        "exit None",
        "enter",
        "exit LookupError",
        "enter",
        "exit KeyError",
    ]
    assert threading.get_ident() not in resource.threads and len(resource.threads) == 1


@PORTAL_BACKENDS
def test_wrap_async_context_manager_keeps_a_task_group_in_one_task(backend: str) -> None:
    results: list[int] = []

    async def work() -> None:
        results.append(await _double(21))

    @contextlib.asynccontextmanager
    async def service() -> collections.abc.AsyncIterator[str]:
        # A task group must be entered and exited by the same task.
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            yield "running"

    with _portal(backend) as portal:
        with portal.wrap_async_context_manager(service()) as state:
            assert state == "running"
    assert results == [42]  # the task group waited for its task on exit


@PORTAL_BACKENDS
def test_wrap_async_context_manager_raises_what_aenter_raises(backend: str) -> None:
    class Broken:
        async def __aenter__(self) -> None:
            raise ConnectionRefusedError("no server")

        async def __aexit__(self, *exc_info: object) -> None:
            raise AssertionError("never entered, never exited")

    with _portal(backend) as portal, pytest.raises(ConnectionRefusedError, match="no server"):
        with portal.wrap_async_context_manager(Broken()):  # type: ignore[arg-type]
            pass


@PORTAL_BACKENDS
def test_wrap_async_iterator_yields_items_and_closes_on_break(backend: str) -> None:
    closed: list[bool] = []

    async def numbers(n: int) -> collections.abc.AsyncGenerator[int, None]:
        try:
            for i in range(n):
                await anyio.lowlevel.checkpoint()
                yield i
        finally:
            closed.append(True)

    with _portal(backend) as portal:
        assert list(portal.wrap_async_iterator(numbers(5))) == [0, 1, 2, 3, 4]
        for i in portal.wrap_async_iterator(numbers(1000)):
            if i == 2:
                break
    assert closed == [True, True]


@PORTAL_BACKENDS
def test_start_task_returns_the_start_value_while_the_task_runs_on(backend: str) -> None:
    async def server(greeting: str, *, task_status: anyio.abc.TaskStatus[int]) -> str:
        stop = anyio.Event()
        state["stop"] = stop
        task_status.started(8080)
        await stop.wait()
        return greeting

    state: dict[str, anyio.Event] = {}
    with _portal(backend) as portal:
        future, port = portal.start_task(server, "bye")
        assert port == 8080 and not future.done()
        portal.run_sync(state["stop"].set)
        assert future.result(timeout=30) == "bye"


@PORTAL_BACKENDS
def test_start_task_raises_when_the_task_fails_or_never_starts(backend: str) -> None:
    async def fails(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        raise OSError("port in use")

    async def returns(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        return None

    with _portal(backend) as portal:
        with pytest.raises(OSError, match="port in use"):
            portal.start_task(fails)
        with pytest.raises(RuntimeError, match=r"without calling task_status\.started"):
            portal.start_task(returns)


@PORTAL_BACKENDS
def test_run_sync_runs_on_the_loop_thread(backend: str) -> None:
    def where() -> tuple[int, str | None]:
        import sniffio

        return threading.get_ident(), sniffio.current_async_library()

    with _portal(backend) as portal:
        thread, library = portal.run_sync(where)
    assert thread != threading.get_ident()
    assert library == ("trio" if backend == "trio" else "asyncio")


@PORTAL_BACKENDS
def test_stop_when_idle_lets_running_calls_finish(backend: str) -> None:
    release = threading.Event()
    started = threading.Event()

    async def slow(x: int) -> int:
        started.set()
        await bridge.to_thread(release.wait, 30)
        return x

    portal = _portal(backend)
    future = portal.submit(slow, 7)
    assert started.wait(30)
    stopper = threading.Thread(target=portal.stop_when_idle)
    stopper.start()
    release.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert future.result(timeout=0) == 7  # finished, not cancelled
    with pytest.raises(bridge.ClosedError):
        portal.call(_double, 1)


# -- a loop that stops or closes under a blocked syncify caller (issue 11.2) ----


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("then_close", [False, True], ids=["stopped", "closed"])
def test_syncify_after_its_loop_stopped_raises_closed_error(kind: str, then_close: bool) -> None:
    loop = _new_loop(kind)
    started = threading.Event()
    gate = threading.Event()
    outcome: list[BaseException | int] = []
    finished = threading.Event()

    def legacy() -> None:
        started.set()
        gate.wait(30)
        try:
            outcome.append(syncify(_double)(21))  # its loop is not running any more
        except BaseException as exc:
            outcome.append(exc)
        finished.set()

    async def main() -> None:
        # Fire and forget: the job keeps running after main returns.
        asyncio.get_running_loop().create_task(to_thread(legacy))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)

    loop.run_until_complete(main())
    gate.set()
    if then_close:
        loop.close()
    assert finished.wait(30), "syncify stayed blocked on a loop that will never run its call"
    assert isinstance(outcome[0], bridge.ClosedError)
    assert "stopped or closed" in str(outcome[0])
    if not then_close:
        loop.close()


def test_asyncio_run_shutdowns_with_syncify_in_flight_never_hang() -> None:
    # A worker calls syncify just as asyncio.run ends: each call must end,
    # with its result, a cancellation or ClosedError.
    outcomes: list[str] = []
    for _ in range(30):
        done = threading.Event()
        started = threading.Event()

        def legacy(done: threading.Event = done, started: threading.Event = started) -> None:
            started.set()
            try:
                syncify(_double)(1)
                outcomes.append("result")
            except concurrent.futures.CancelledError:
                outcomes.append("cancelled")
            except bridge.ClosedError:
                outcomes.append("closed")
            finally:
                done.set()

        async def main(started: threading.Event = started) -> None:
            asyncio.get_running_loop().create_task(to_thread(legacy))
            await to_thread(started.wait, 30)  # running: its syncify races the loop's end

        asyncio.run(main())
        assert done.wait(30), "a syncify call racing asyncio.run's end never returned"
    assert len(outcomes) == 30


# -- sniffio does not cross into other loops' threads (issue 11.11) -------------


def test_portal_call_from_a_trio_program_sees_the_portals_own_library() -> None:
    import trio

    async def library() -> str:
        return sniffio.current_async_library()

    with Portal(backend="asyncio") as portal:

        async def main() -> str:
            return await to_thread(portal.call, library)

        assert trio.run(main) == "asyncio"
        assert anyio.run(main, backend="trio") == "asyncio"


# -- futures cancelled by Portal.stop() (issue 11.12) ---------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_futures_cancelled_by_stop_are_seen_by_wait_and_as_completed(backend: str) -> None:
    portal = Portal(backend=backend)  # type: ignore[arg-type]
    futures = [portal.submit(anyio.sleep_forever) for _ in range(5)]
    portal.stop(30)
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done
    assert all(f.cancelled() for f in done)
    assert len(list(concurrent.futures.as_completed(futures, timeout=30))) == 5


def test_future_cancelled_by_its_holder_is_seen_by_wait() -> None:
    with Portal() as portal:
        future = portal.submit(anyio.sleep_forever)
        assert future.cancel()
        done, _ = concurrent.futures.wait([future], timeout=30)
        assert done == {future}


# -- misuse refused before anything runs (issues 11.8, 11.13) -------------------


def test_syncify_refuses_a_sync_function_at_wrap_time() -> None:
    ran: list[int] = []

    def plain(x: int) -> int:
        ran.append(x)
        return x

    with pytest.raises(TypeError, match=r"sync function .*plain\(\).*block it"):
        syncify(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sync function"):
        syncify(functools.partial(plain, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sync function"):
        Portal.call(bridge.shared_portal(), plain, 1)  # type: ignore[arg-type]
    assert ran == []


def test_syncify_refuses_an_async_generator_function() -> None:
    async def rows() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"async generator function .*rows\(\).*Collect them"):
        syncify(rows)  # type: ignore[arg-type]


def test_syncify_accepts_partials_and_async_callables() -> None:
    class Doubler:
        async def __call__(self, x: int) -> int:
            return 2 * x

    assert syncify(functools.partial(_double, 4))() == 8
    assert syncify(Doubler())(5) == 10


def test_portal_with_an_unknown_backend_raises_value_error() -> None:
    with pytest.raises(ValueError, match="'asyncio' or 'trio'"):
        Portal(backend="curio")  # type: ignore[arg-type]


def test_trio_run_returns_when_a_finalizer_calls_back_into_trio_from_a_thread() -> None:
    # At shutdown trio refuses new tasks; the worker's syncify must get that
    # error instead of waiting forever (issue 11.9). A hang fails by timeout.
    import trio

    seen: list[str] = []

    async def rows() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            try:
                await to_thread(syncify(trio.sleep), 0)
                seen.append("ran")
            except BaseException as exc:
                seen.append(type(exc).__name__)
                raise

    async def main() -> None:
        async for _ in rows():
            break  # left unfinished: trio finalizes it as the run ends

    trio.run(main)
    assert len(seen) == 1


@pytest.mark.anyio
async def test_run_on_loop_from_a_worker_runs_on_the_loop_that_sent_the_work() -> None:
    event = anyio.Event()  # loop-bound: set() must run on its loop's thread

    def legacy() -> int:
        bridge.run_on_loop(event.set)
        return bridge.run_on_loop(threading.get_ident)

    assert await to_thread(legacy) == threading.get_ident()
    assert event.is_set()
    with pytest.raises(DeadlockError):
        bridge.run_on_loop(threading.get_ident)


def test_run_on_loop_from_plain_sync_code_uses_the_shared_portal() -> None:
    assert bridge.run_on_loop(threading.get_ident) == bridge.shared_portal()._thread.ident
