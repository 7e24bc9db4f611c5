"""The lane: an adaptive limiter's GIL-bound calls on one thread, and when the controller opens it.

The controller's decisions are fed synthetic samples (no clocks); the lane's
mechanics run real calls on the real pool, ordered by events, never by time.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import anyio
import pytest

from bridge import (
    DedicatedThread,
    Limiter,
    WorkerPool,
    asyncify,
    check_cancelled,
    current_deadline,
    run,
    syncify,
)
from bridge._adaptive import (
    CUT,
    FAST_FAIL,
    LANE_BRAKE,
    LANE_CPU,
    LANE_FLOOR,
    LANE_HOLD,
    LANE_IDLE,
    LANE_SEEN,
    MIN_SHARE,
    TRIAL,
    TRIAL_LATE,
    TRIAL_WAIT,
    Calls,
    Controller,
)
from bridge._job import Executor, Job
from bridge._lane import Lane
from bridge._pool import default_pool
from bridge.iterate import AsyncIterator
from bridge.lowlevel import run_job
from tests.support import eventually

BUSY = MIN_SHARE * 2  # the other threads' CPU share when a late sample is ours to fix
TICK = 0.005  # seconds between synthetic samples
RATE = 1000  # calls per second the synthetic calls run at


def computing(done: int = 5, *, outside: int = 0) -> Calls:
    """`done` calls in one sample's time that computed their whole time (GIL-bound),
    in the lane if one is open (they are also its readings; unread if none is)."""
    return Calls(done, TICK, TICK, TICK, outside, lane_cpu=TICK, lane_wall=TICK)


def waiting(done: int = 5, *, outside: int = 0, each: float = 0.0001) -> Calls:
    """`done` calls that each used `each` seconds of CPU in 20 ms (I/O-bound)."""
    cpu, wall = done * each, done * 0.020
    return Calls(done, cpu, wall, TICK, outside, lane_cpu=cpu, lane_wall=wall)


def warmed(calls: Calls, limit: float = 40.0) -> Controller:
    """A controller past slow start that has seen `calls` for a while, all on time."""
    control = Controller(floor=1, ceiling=100, target=0.005)
    control.starting = False
    control.limit = limit
    for _ in range(60):
        control.feed(0.001, BUSY, saturated=False, running=int(limit), calls=calls)
    return control


def late(control: Controller, calls: Calls, running: int = 40) -> int:
    return control.feed(0.050, BUSY, saturated=True, running=running, calls=calls)


def on_time(control: Controller, calls: Calls, running: int = 40) -> int:
    return control.feed(0.001, BUSY, saturated=True, running=running, calls=calls)


# -- when the controller opens, keeps and closes a lane ---------------------------------


def test_a_late_loop_opens_a_lane_for_calls_that_compute_instead_of_cutting() -> None:
    control = warmed(computing())
    assert control.calls_cpu >= LANE_CPU
    assert late(control, computing()) == 40  # no cut: the lane is tried first
    assert control.lane and control.lane_opened == 1 and control.cuts == 0


def test_calls_that_wait_get_a_cut_not_a_lane() -> None:
    control = warmed(waiting())
    assert control.calls_cpu < LANE_CPU
    assert late(control, waiting()) == int(40 * CUT)
    assert not control.lane and control.lane_opened == 0


def test_a_lane_that_keeps_the_rate_and_the_loop_on_time_is_kept() -> None:
    control = warmed(computing())
    late(control, computing())
    for _ in range(TRIAL):
        assert on_time(control, computing()) == 40  # tokens wait for the verdict
    assert control.lane and control._trial is None
    for _ in range(3 * TRIAL):
        on_time(control, computing())
    assert control.lane and control.limit > 40  # kept, and tokens grow again


def test_a_lane_far_below_the_rate_fails_at_once_and_is_braked() -> None:
    # Calls that wait on I/O (or run C code without the GIL) lose far more on one thread.
    control = warmed(computing())
    late(control, computing())
    for _ in range(FAST_FAIL):
        on_time(control, computing(done=0))
    assert not control.lane
    assert late(control, computing()) == int(40 * CUT)  # braked: this time a cut
    assert control.lane_opened == 1
    for _ in range(LANE_BRAKE):
        on_time(control, computing(), running=0)
    late(control, computing(), running=0)
    assert control.lane and control.lane_opened == 2  # after the brake: tried again


def test_a_lane_for_calls_longer_than_a_few_samples_is_not_failed_before_one_could_end() -> None:
    # 50 ms of bytecode a call: one ends every 10 samples, in the lane as before it.
    # Three samples with none ended is what the rate predicts, not a lane far below it.
    def long_calls(sample: int) -> Calls:
        return computing(done=1 if sample % 10 == 9 else 0)

    control = Controller(floor=1, ceiling=100, target=0.005)
    control.starting = False
    control.limit = 40.0
    for sample in range(200):
        control.feed(0.001, BUSY, saturated=False, running=40, calls=long_calls(sample))
    assert control.calls_cpu >= LANE_CPU and control.rate > 0
    late(control, long_calls(0))
    for sample in range(1, TRIAL + 1):
        on_time(control, long_calls(sample))
    assert control.lane and control._trial is None  # kept: it kept the rate


def test_calls_that_use_much_cpu_but_wait_far_longer_get_a_cut_not_a_lane() -> None:
    requests_call = 0.0009  # requests: about 0.9 ms of CPU a call (issue 14), 20 ms waiting
    control = warmed(waiting(done=5, each=requests_call))
    assert control.calls_cpu >= LANE_CPU  # as much CPU as GIL-bound calls...
    assert late(control, waiting(done=5, each=requests_call)) == int(40 * CUT)
    assert not control.lane and control.lane_opened == 0  # ...but they mostly wait


def test_a_trial_ends_at_once_when_its_calls_wait_alone_on_their_thread() -> None:
    # Calls that computed while tried (the readings are a few samples old) may turn
    # out to wait when alone in the lane: seen at the first ones.
    control = warmed(computing())
    late(control, computing())
    assert control.lane
    requests_call = 0.0009  # requests: about 0.9 ms of CPU a call (issue 14)
    assert late(control, waiting(done=1, outside=10, each=requests_call)) == int(40 * CUT)
    assert not control.lane and control.cuts == 1


def test_a_lane_that_leaves_the_loop_late_fails_its_trial() -> None:
    control = warmed(computing())
    late(control, computing())
    for _ in range(TRIAL_LATE):
        late(control, computing())
    assert control.lane  # within what a p99 allows of a short trial
    # Failed: one thread computing without pause is too late, so more than a couple of
    # tokens are too: this sample cuts to the lane's floor at once.
    assert late(control, computing()) == LANE_FLOOR
    assert not control.lane and control.cuts == 1
    assert control.samples < control.next_trial  # and the next lane waits for the brake


def test_the_trial_counts_only_once_calls_from_before_the_lane_have_ended() -> None:
    control = warmed(computing())
    late(control, computing())
    for _ in range(TRIAL_WAIT - 1):  # the pool's queue still runs them on many threads
        late(control, computing(outside=10))
    assert control.lane  # that lateness is not the lane's
    for _ in range(TRIAL):
        on_time(control, computing())
    assert control.lane and control._trial is None


def test_a_kept_lane_closes_when_its_calls_turn_out_to_wait() -> None:
    control = warmed(computing())
    late(control, computing())
    for _ in range(TRIAL):
        on_time(control, computing())
    assert control.lane
    for _ in range(30):  # the work changed: its time is no longer its CPU
        on_time(control, Calls(5, 0.001, 0.001 * LANE_IDLE * 2, TICK, 0, 0.001, 0.008))
        if not control.lane:
            break
    assert not control.lane
    assert late(control, computing()) < 40  # braked: a cut, not a new trial


def test_a_kept_lane_looks_again_after_its_hold_and_reopens_at_once() -> None:
    control = warmed(computing())
    late(control, computing())
    for _ in range(TRIAL + LANE_HOLD):
        control.feed(0.001, BUSY, saturated=False, running=40, calls=computing())
    assert not control.lane  # held long enough: many threads again, to look
    late(control, computing())
    assert control.lane and control.lane_opened == 2  # not braked: the hold was no failure


def test_a_lane_closes_when_the_tokens_fall_to_its_floor() -> None:
    control = warmed(computing(), limit=LANE_FLOOR / CUT + 0.5)
    late(control, computing())
    for _ in range(TRIAL):
        on_time(control, computing())
    assert control.lane
    # Kept, but the loop is still late now and then: the tokens fall as always...
    for _ in range(5):
        late(control, computing(), running=0)
        if not control.lane:
            break
    assert not control.lane and control.limit <= LANE_FLOOR  # ...and at the floor it closes


# -- the lane itself: real calls on the real pool ----------------------------------------

pytestmark_anyio = pytest.mark.anyio


def lane_for(limiter: Limiter) -> Lane:
    """Open a lane on a fixed limiter (no controller closes it): what an adaptive one does."""
    lane = limiter._lane = Lane(default_pool())
    return lane


@pytestmark_anyio
async def test_calls_in_a_lane_run_one_after_another_and_each_gets_its_result() -> None:
    limiter = Limiter(8)
    lane = lane_for(limiter)
    lock = threading.Lock()
    now = peak = 0

    def call(n: int) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        total = sum(i * i for i in range(2_000))  # some bytecode
        with lock:
            now -= 1
        return n + total - total

    results: dict[int, int] = {}

    async def one(n: int) -> None:
        results[n] = await asyncify(call, limiter=limiter)(n)

    async with anyio.create_task_group() as tg:
        for n in range(40):
            tg.start_soon(one, n)
    assert results == {n: n for n in range(40)}
    assert peak == 1 and lane.ran == 40 and limiter.statistics().lane
    assert limiter.statistics().running == 0 and lane.held == 0


@pytestmark_anyio
async def test_a_call_cancelled_in_a_lanes_queue_never_runs_and_its_token_comes_back() -> None:
    limiter = Limiter(4)
    lane = lane_for(limiter)
    gate = threading.Event()
    ran: list[str] = []

    def first() -> None:
        gate.wait(30)
        ran.append("first")

    def second() -> None:
        ran.append("second")

    scope = anyio.CancelScope()

    async def given_up() -> None:
        with scope:
            await asyncify(second, limiter=limiter)()

    async with anyio.create_task_group() as tg:
        tg.start_soon(asyncify(first, limiter=limiter))
        await eventually(lambda: lane.held == 1 and lane.ran == 1)  # running, on the runner
        tg.start_soon(given_up)
        await eventually(lambda: lane.held == 2)  # queued behind it
        scope.cancel()
        await eventually(lambda: limiter.statistics().running == 1)  # its token is back
        gate.set()
    await eventually(lambda: lane.held == 0)
    assert ran == ["first"]
    assert limiter.statistics().running == 0


@pytestmark_anyio
async def test_closing_a_lane_sends_its_queue_to_the_pool() -> None:
    limiter = Limiter(8)
    lane = lane_for(limiter)
    gate = threading.Event()
    done: list[int] = []

    def blocked() -> None:
        gate.wait(30)

    def quick(n: int) -> None:
        done.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(asyncify(blocked, limiter=limiter))
        await eventually(lambda: lane.ran == 1)
        for n in range(3):
            tg.start_soon(asyncify(quick, limiter=limiter), n)
        await eventually(lambda: lane.held == 4)
        limiter._lane = None
        lane.close()
        # The runner is still held by `blocked`: the three run on other threads.
        await eventually(lambda: len(done) == 3)
        assert not gate.is_set()
        gate.set()
    assert sorted(done) == [0, 1, 2]


@pytestmark_anyio
async def test_a_lane_call_that_waits_for_another_call_of_its_limiter_does_not_deadlock() -> None:
    limiter = Limiter(4)
    lane = lane_for(limiter)

    def inner() -> str:
        return "inner"

    async def coroutine() -> str:
        return await asyncify(inner, limiter=limiter)()  # queued in the same lane

    def outer() -> str:
        # Parks this runner until `inner` ran: a new runner takes the lane's queue.
        return "outer+" + syncify(coroutine)()

    with anyio.fail_after(30):  # bounds a hang; nothing here is timed
        assert await asyncify(outer, limiter=limiter)() == "outer+inner"
    assert lane.ran == 2


@pytestmark_anyio
async def test_a_lane_call_that_forks_runs_none_of_the_lanes_queue_in_the_child() -> None:
    # The calls queued behind it belong to the parent's loops: they run there, once.
    limiter = Limiter(4)
    lane = lane_for(limiter)
    queued = threading.Event()
    read, write = os.pipe()

    def forks() -> int:
        queued.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: the runner goes on from here
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(30)  # bounds a hang in the child; nothing here is timed
            return 0
        os.waitpid(pid, 0)
        return pid

    def behind() -> None:
        os.write(write, f"{os.getpid()}\n".encode())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(asyncify(forks, limiter=limiter))
            await eventually(lambda: lane.ran == 1)
            tg.start_soon(asyncify(behind, limiter=limiter))
            await eventually(lambda: lane.held == 2)
            queued.set()
        os.close(write)
        with os.fdopen(read) as pipe:
            ran_in = pipe.read().split()
    finally:
        queued.set()
    assert ran_in == [str(os.getpid())]


def burn() -> int:
    """About a millisecond of pure-Python bytecode: holds the GIL the whole time."""
    total = 0
    for i in range(20_000):
        total += i * i % 7
    return total


def kept_lane(limiter: Limiter) -> Lane:
    """Open a lane on an adaptive limiter as a trial that passed leaves it: kept, held long."""
    control = limiter._control
    assert control is not None
    control.lane = True
    control.lane_opened += 1
    control.until = 10**9
    lane = limiter._lane = Lane(default_pool())
    return lane


@pytestmark_anyio
async def test_a_kept_lane_does_not_hold_its_queue_behind_a_call_that_waits_for_it() -> None:
    # Two calls of one limiter that meet (an Event, a queue, a concurrent.futures.Future)
    # run side by side on any two tokens; in the lane the second would queue behind the first.
    limiter = Limiter.adaptive(max=8, target_lateness=1.0)  # never late: no cut, no trial
    control = limiter._control
    assert control is not None
    lane = kept_lane(limiter)
    while control._lane_cpu <= LANE_SEEN:  # the lane's calls computed, as a kept lane's did
        await asyncify(burn, limiter=limiter)()
    assert control.lane and limiter._lane is lane
    met = threading.Event()
    results: list[bool] = []

    async def waits() -> None:
        results.append(await asyncify(met.wait, limiter=limiter)(20))

    async with anyio.create_task_group() as tg:
        ran = lane.ran
        tg.start_soon(waits)
        await eventually(lambda: lane.ran == ran + 1)  # running on the lane's runner
        tg.start_soon(asyncify(met.set, limiter=limiter))
    assert results == [True]  # set by the second call, not timed out behind it
    assert not control.lane  # its calls wait: the lane closed, as for calls that ended waiting


@pytestmark_anyio
async def test_calls_pinned_to_a_dedicated_thread_or_another_pool_never_enter_the_lane() -> None:
    limiter = Limiter(4)
    lane = lane_for(limiter)
    pool = WorkerPool(2, name="own-pool")
    with DedicatedThread(name="pinned") as pinned:
        ident = await asyncify(threading.get_ident, limiter=limiter, thread=pinned)()
        assert ident == pinned.ident
        async with AsyncIterator(iter(range(3)), executor=pool, limiter=limiter) as items:
            assert [item async for item in items] == [0, 1, 2]
    assert lane.ran == 0 and lane.held == 0
    assert limiter.statistics().running == 0


def test_a_lane_shared_by_loops_in_three_threads_delivers_each_call_to_its_own_loop() -> None:
    # asyncio, uvloop and trio in threads of their own, one adaptive limiter, its lane
    # open: both probes feed the controller, every result goes back to its caller's loop.
    limiter = Limiter.adaptive(max=16, target_lateness=1.0)  # never late: no cut, no trial
    lane = kept_lane(limiter)
    start = threading.Barrier(3)

    async def calls(tag: str) -> list[str]:
        def call(n: int) -> str:
            burn()
            return f"{tag}{n}"

        results: list[str] = []

        async def one(n: int) -> None:
            results.append(await asyncify(call, limiter=limiter)(n))

        await anyio.to_thread.run_sync(start.wait, 30)
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(one, n)
        return sorted(results)

    got: dict[str, list[str]] = {}

    def loop(tag: str, backend: str, use_uvloop: bool | None) -> None:
        got[tag] = run(calls, tag, backend=backend, use_uvloop=use_uvloop)  # type: ignore[arg-type]

    threads = [
        threading.Thread(target=loop, args=("a", "asyncio", False)),
        threading.Thread(target=loop, args=("u", "asyncio", True)),
        threading.Thread(target=loop, args=("t", "trio", None)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert got == {tag: sorted(f"{tag}{n}" for n in range(50)) for tag in "aut"}
    assert limiter.statistics().running == 0 and lane.held == 0


@pytestmark_anyio
async def test_a_call_that_times_out_in_a_lanes_queue_never_runs() -> None:
    limiter = Limiter(4)
    lane = lane_for(limiter)
    gate = threading.Event()
    ran: list[str] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(asyncify(gate.wait, limiter=limiter), 30)
        await eventually(lambda: lane.ran == 1)  # holds the runner until the gate opens
        with pytest.raises(TimeoutError):
            await asyncify(ran.append, limiter=limiter, timeout=0.05)("late")
        gate.set()
    await eventually(lambda: lane.held == 0)
    assert ran == [] and limiter.statistics().running == 0


@pytestmark_anyio
async def test_a_lane_call_sees_its_callers_deadline_and_cancellation() -> None:
    limiter = Limiter(4)
    lane = lane_for(limiter)
    started = threading.Event()
    seen: list[object] = []

    def polls() -> None:
        seen.append(current_deadline())
        started.set()
        while True:  # until the caller gives up: check_cancelled raises
            check_cancelled()
            time.sleep(0.001)

    with anyio.CancelScope(deadline=anyio.current_time() + 60) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(asyncify(polls, limiter=limiter))
            await anyio.to_thread.run_sync(started.wait, 30)
            scope.cancel()
    await eventually(lambda: lane.held == 0 and limiter.statistics().running == 0)
    deadline = seen[0]
    assert isinstance(deadline, float) and 0 < deadline <= 60
    assert lane.ran == 1


class Refusing(Executor):
    """The shared pool, but unable to start a thread for the next `refuse` submits (the
    OS's thread limit: `RuntimeError: can't start new thread`)."""

    def __init__(self) -> None:
        self.refuse = 0

    def submit(self, job: Job) -> None:
        if self.refuse:
            self.refuse -= 1
            raise RuntimeError("can't start new thread")
        default_pool().submit(job)


@pytestmark_anyio
async def test_a_lane_whose_runner_gets_no_thread_fails_that_call_and_serves_the_next() -> None:
    refusing = Refusing()
    limiter = Limiter(4)
    lane = limiter._lane = Lane(refusing)
    refusing.refuse = 1
    with pytest.raises(RuntimeError, match="can't start new thread"):
        await run_job(lambda: "lost", executor=refusing, limiter=limiter)
    assert lane.held == 0 and limiter.statistics().running == 0
    with anyio.fail_after(30):  # bounds a hang: a runner that never ran held the lane
        assert await run_job(lambda: "served", executor=refusing, limiter=limiter) == "served"
    assert lane.ran == 1
