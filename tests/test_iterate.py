"""iterate: bounded read-ahead, early stop and cancellation close the source."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import anyio
import pytest

from bridge import iterate
from tests.support import eventually

pytestmark = pytest.mark.anyio


def _counting(produced: list[int], closed: threading.Event) -> Iterator[int]:
    i = 0
    try:
        while True:
            produced.append(i)
            yield i
            i += 1
    finally:
        closed.set()


async def test_items_come_in_order() -> None:
    assert [x async for x in iterate(range(100))] == list(range(100))


async def test_read_ahead_never_exceeds_prefetch() -> None:
    for prefetch in (0, 1, 3):
        produced: list[int] = []
        closed = threading.Event()
        it = iterate(_counting(produced, closed), prefetch=prefetch)
        async with it:
            for expected in range(5):
                assert await it.__anext__() == expected
                await eventually(lambda it=it: not it._fetching)  # let any read-ahead land
                assert it.buffered <= prefetch
                assert len(produced) == expected + 1 + prefetch
        assert closed.is_set()


async def test_abandoned_infinite_generator_is_closed() -> None:
    produced: list[int] = []
    closed = threading.Event()
    seen = []
    async for x in iterate(_counting(produced, closed)):
        seen.append(x)
        if len(seen) == 3:
            break
    assert seen == [0, 1, 2]
    await eventually(closed.is_set)


async def test_cancellation_mid_iteration_closes_the_generator() -> None:
    closed = threading.Event()
    closed_on: list[str] = []
    gate = threading.Event()
    got: list[int] = []

    def slow() -> Iterator[int]:
        try:
            yield 1
            gate.wait(30)  # the consumer is cancelled while this runs
            yield 2
        finally:
            closed_on.append(threading.current_thread().name)
            closed.set()

    it = iterate(slow())  # held here, so only bridge, not the GC, can close it

    with anyio.CancelScope() as scope:
        async with it:
            async for x in it:
                got.append(x)
                scope.cancel()  # the next item's fetch is running (blocked on the gate)
    assert scope.cancelled_caught
    assert got == [1]
    gate.set()
    await eventually(closed.is_set)
    assert closed_on[0].startswith("bridge-worker-")


async def test_errors_from_the_iterator_come_back() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        async for x in iterate(broken()):
            got.append(x)
    assert got == [1]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="prefetch"):
        iterate([], prefetch=-1)
    with pytest.raises(TypeError, match="sync iterable"):
        iterate(42)  # type: ignore[arg-type]


async def test_aclose_cancelled_by_a_timeout_still_closes_on_a_worker_thread() -> None:
    closed_on: list[str] = []
    started = threading.Event()
    gate = threading.Event()

    def slow_close() -> Iterator[int]:
        try:
            yield 1
            started.set()
            gate.wait(30)
            yield 2
        finally:
            closed_on.append(threading.current_thread().name)

    it = iterate(slow_close(), prefetch=1)
    assert await it.__anext__() == 1  # read-ahead of item 2 now blocks on the gate
    await eventually(started.is_set)
    with anyio.move_on_after(0.01) as scope:
        await it.aclose()  # waits for the fetch, and is cancelled meanwhile
    assert scope.cancelled_caught
    gate.set()
    await eventually(lambda: bool(closed_on))
    assert closed_on[0].startswith("bridge-worker-")
    del it


@pytest.mark.parametrize("prefetch", [0, 1, 3])
async def test_break_closes_the_generator_without_the_garbage_collector(prefetch: int) -> None:
    produced: list[int] = []
    closed = threading.Event()
    gc.disable()  # only reference counting may end the iterator
    try:
        async for x in iterate(_counting(produced, closed), prefetch=prefetch):
            if x == 2:
                break
        await eventually(closed.is_set)
    finally:
        gc.enable()
