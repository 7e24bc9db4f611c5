"""Limiter: exact caps, FIFO hand-over, statistics, misuse."""

from __future__ import annotations

import math
import threading

import anyio
import pytest

from bridge import Limiter, asyncify
from bridge._adaptive import CUT, GROW, MIN_OWN, MIN_SHARE, QUANTILE_MISS, RAMP, Controller
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


# -- the bound at run time ------------------------------------------------------


async def test_growing_tokens_grants_waiting_calls_at_once() -> None:
    limiter = Limiter(1)
    release = threading.Event()
    running = 0
    lock = threading.Lock()

    @asyncify(limiter=limiter)
    def work() -> None:
        nonlocal running
        with lock:
            running += 1
        release.wait(30)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(work)
        await eventually(lambda: limiter.statistics().waiting == 4 and running == 1)
        limiter.tokens = 3  # two of the waiting calls start now, not when a call ends
        await eventually(lambda: running == 3)
        stats = limiter.statistics()
        assert (stats.tokens, stats.running, stats.waiting) == (3, 3, 2)
        release.set()
    assert limiter.statistics().running == 0


async def test_shrinking_tokens_lets_running_calls_finish_then_holds_the_new_bound() -> None:
    limiter = Limiter(4)
    gates = [threading.Event() for _ in range(4)]
    lock = threading.Lock()
    running = 0
    most_after_shrink = 0
    shrunk = threading.Event()

    @asyncify(limiter=limiter)
    def work(i: int) -> None:
        nonlocal running, most_after_shrink
        with lock:
            running += 1
            if shrunk.is_set():
                most_after_shrink = max(most_after_shrink, running)
        gates[i % 4].wait(30)
        with lock:
            running -= 1

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(work, i)
        await eventually(lambda: running == 4 and limiter.statistics().waiting == 4)
        limiter.tokens = 1
        shrunk.set()
        assert limiter.statistics().running == 4  # nobody is stopped
        for gate in gates:
            gate.set()
    assert most_after_shrink == 1  # the queued calls ran one at a time
    stats = limiter.statistics()
    assert (stats.tokens, stats.running, stats.waiting, stats.total) == (1, 0, 0, 8)


def test_bad_token_counts_are_refused_with_the_fix() -> None:
    limiter = Limiter(2)
    with pytest.raises(ValueError, match=r"limiter\.tokens = 0 would never let a call run"):
        limiter.tokens = 0
    with pytest.raises(TypeError):
        limiter.tokens = 1.5  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"min is the floor"):
        Limiter.adaptive(max=4, min=8)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Limiter.adaptive(target_lateness=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Limiter.adaptive(target_lateness=float("nan"))
    with pytest.raises(ValueError, match="is adaptive"):
        Limiter.adaptive(max=8).tokens = 4
    assert limiter.tokens == 2


# -- adaptive -------------------------------------------------------------------
# The controller is fed probe samples by hand (its seam: `feed`); only the
# end-to-end tests below run the real probe, and they assert directions, not times.

BUSY = MIN_SHARE * 2  # the other threads' CPU share when a late sample is ours to fix


def _grown(limit: float, samples: int) -> float:
    """The limit after `samples` on-time saturated samples, past slow start, from 0 in a row."""
    for n in range(1, samples + 1):
        limit *= math.exp(GROW * (1 + n // RAMP))
    return limit


def test_controller_doubles_in_slow_start_until_the_first_late_sample() -> None:
    control = Controller(floor=1, ceiling=1000, target=0.005)
    start = control.limit
    for _ in range(8):
        control.feed(0.001, BUSY, saturated=True, running=int(control.limit))
    assert control.limit == pytest.approx(start * 2)
    control.feed(0.006, BUSY, saturated=True, running=int(control.limit))
    assert control.limit == pytest.approx(start * 2 * CUT)
    assert not control.starting and control.cuts == 1


def test_controller_balances_when_one_sample_in_a_hundred_is_late() -> None:
    """The target is a p99: a late fraction of QUANTILE_MISS leaves the limit where it was."""
    control = Controller(floor=1, ceiling=1000, target=0.005)
    control.starting = False
    control.limit = 40.0
    on_time = round(1 / QUANTILE_MISS) - 1
    for _ in range(3):
        for _ in range(on_time):
            control.feed(0.001, BUSY, saturated=True, running=40)
        control.feed(0.020, BUSY, saturated=True, running=40)
        assert control.limit == pytest.approx(40.0)
    for _ in range(on_time // 2):  # fewer late samples than that: it grows...
        control.feed(0.001, BUSY, saturated=True, running=40)
    assert control.limit > 40.0
    for _ in range(3):  # ...more: it falls
        control.feed(0.020, BUSY, saturated=True, running=0)
    assert control.limit < 40.0


def test_controller_cuts_once_per_round_until_the_running_calls_fit() -> None:
    control = Controller(floor=2, ceiling=100, target=0.005)
    control.starting = False
    control.limit = 50.0
    assert control.feed(0.050, BUSY, saturated=True, running=50) == 40
    # 45 calls still run from before the cut: their lateness is the old limit's
    assert control.feed(0.050, BUSY, saturated=True, running=45) == 40
    assert control.feed(0.001, BUSY, saturated=True, running=45) == 40  # nor does it grow
    assert control.feed(0.050, BUSY, saturated=True, running=40) == 32  # it took effect
    assert control.cuts == 2
    for _ in range(30):
        control.feed(1.0, BUSY, saturated=True, running=0)
    assert control.limit == 2  # never below the floor


def test_controller_ignores_lateness_the_other_threads_cannot_have_caused() -> None:
    control = Controller(floor=1, ceiling=100, target=0.005)
    limit = control.limit
    assert control.feed(0.050, MIN_SHARE / 2, saturated=True, running=6) == int(limit)
    assert (control.limit, control.cuts, control.ignored) == (limit, 0, 1)
    assert control.starting  # still in slow start


def test_controller_counts_lateness_from_the_loops_own_work() -> None:
    # A loop-driven driver (no thread of its own) makes the loop late by the work its
    # calls in flight bring: the loop's own CPU share makes that late sample count.
    control = Controller(floor=1, ceiling=100, target=0.005)
    limit = control.limit
    assert control.feed(0.050, 0.0, saturated=True, running=6, own=MIN_OWN / 2) == int(limit)
    assert control.ignored == 1
    assert control.feed(0.050, 0.0, saturated=True, running=6, own=MIN_OWN) == int(limit * CUT)
    assert (control.cuts, control.ignored) == (1, 1)


def test_controller_grows_only_when_calls_wait_and_never_past_the_ceiling() -> None:
    control = Controller(floor=1, ceiling=30, target=0.005)
    control.starting = False
    control.limit = 10.0
    for _ in range(50):
        control.feed(0.001, BUSY, saturated=False, running=3)
    assert control.limit == 10.0  # idle tokens: more would change nothing
    for _ in range(50):
        control.feed(0.001, BUSY, saturated=True, running=10)
    assert control.limit == pytest.approx(_grown(10.0, 50))
    for _ in range(3000):
        control.feed(0.001, BUSY, saturated=True, running=30)
    assert control.limit == 30  # long on-time runs grow faster, up to the ceiling


async def test_a_late_sample_shrinks_the_bound_and_calls_keep_their_tokens() -> None:
    limiter = Limiter.adaptive(max=100, min=1, target_lateness=0.005)
    start = limiter.tokens
    control = limiter._control
    assert control is not None
    control.starting = False
    async with anyio.create_task_group() as tg:
        for _ in range(start):
            await limiter.acquire()
        tg.start_soon(limiter.acquire)  # one more waits
        await eventually(lambda: limiter.statistics().waiting == 1)
        limiter._lateness(0.050, BUSY)  # what the probe calls on the loop
        assert limiter.tokens == int(start * CUT)
        stats = limiter.statistics()
        assert (stats.running, stats.waiting) == (start, 1)  # nobody is stopped
        for _ in range(start - limiter.tokens):
            limiter.release()
        assert limiter.statistics().waiting == 1  # still over the new bound
        limiter.release()
    assert limiter.statistics().running == limiter.tokens  # the waiter got the freed token
    for _ in range(limiter.tokens):
        limiter.release()


async def test_an_adaptive_limiter_stays_within_its_bounds() -> None:
    limiter = Limiter.adaptive(max=16, min=2, target_lateness=0.050)
    lock = threading.Lock()
    running = 0
    most = 0

    @asyncify(limiter=limiter)
    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.001)
        with lock:
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(work)
    stats = limiter.statistics()
    assert 2 <= stats.tokens <= 16 and most <= 16
    assert (stats.running, stats.waiting, stats.total) == (0, 0, 200)
