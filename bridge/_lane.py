"""A lane: one thread runs an adaptive limiter's GIL-bound calls back to back.

Calls that hold the GIL run no faster on several threads than on one, but
every extra thread that wants the GIL is one more the loop queues behind:
measured (bench/RESULTS.md, lateness run P), 3,000 pure-Python calls of 1 ms
at 100 tokens ran at the same rate on one worker thread as on four, and the
heartbeat's p99 lateness fell from 80 ms to 11-22 ms. Fewer tokens cannot
give that: at 1-3 tokens each call's hand-off to the next thread is a gap the
loop uses (p99 3-14 ms) and a cost in throughput (0.85-0.95x).

So when `Limiter.adaptive` finds its calls are what holds the GIL (see
bridge._adaptive), it sends the calls it grants to a lane instead of the
pool: a queue that one pool thread (the runner) works through, each call
delivered as it ends. Calls keep their tokens while queued here, as in the
pool's own queue; a cancelled one is skipped. If the call running blocks on
other work of the pool (`bridge.blocking()`, `syncify`), a new runner takes
over the queue, so a call never waits behind one that waits for it. A call
that waits without saying so (an Event another call sets, a socket) shows in
the readings while it runs, not only when it ends: its time without CPU
closes the lane (bridge._adaptive), and the queue goes to the pool.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from bridge._job import Executor, Job
from bridge._pool import _thread_clock, set_park_hook

if TYPE_CHECKING:
    from collections.abc import Callable

_perf_counter = time.perf_counter
_thread_time = time.thread_time
_forks = 0  # fork()s this process descends from: a runner that forked stops in the child


class Lane:
    """Calls granted by one limiter, run one after another on one pool thread."""

    __slots__ = ("_closed", "_lock", "_queue", "_runner", "cpu", "executor", "held", "ran", "wall")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor  # the pool the runner (and the calls, on close) go to
        self._lock = threading.Lock()
        self._queue: deque[Job] = deque()
        self._runner: _Runner | None = None
        self._closed = False
        self.ran = 0  # calls run here: for statistics and tests
        self.held = 0  # calls queued or running here: the limiter's calls outside are the rest
        # The calls run here since the controller last looked (`take`): CPU and time, seconds.
        # Alone on their thread they wait only for I/O, the loop or other threads' GIL.
        self.cpu = self.wall = 0.0

    def take(self) -> tuple[float, float]:
        """The CPU and time of the calls run here since the last `take`, the running one's so far.

        A call that never ends (it waits for one queued behind it) must still show."""
        with self._lock:
            runner = self._runner
            if runner is not None and runner.clock is not None and runner.wall >= 0:
                try:  # under the lock: the runner's thread is alive while its call is marked
                    cpu, wall = time.clock_gettime(runner.clock), _perf_counter()
                except OSError:
                    pass
                else:
                    self.cpu += cpu - runner.cpu
                    self.wall += wall - runner.wall
                    runner.cpu, runner.wall = cpu, wall
            taken = (self.cpu, self.wall)
            self.cpu = self.wall = 0.0
        return taken

    def submit(self, job: Job) -> None:
        """Queue `job` behind the lane's runner; any thread."""
        with self._lock:
            if self._closed:  # closed after the caller read limiter._lane: the pool runs it
                closed = True
            else:
                closed = False
                self._queue.append(job)
                self.held += 1
                if self._runner is not None:
                    return
                runner = self._runner = _Runner(self)
        if closed:
            self.executor.submit(job)
            return
        try:
            self.executor.submit(runner)  # type: ignore[arg-type]  # the pool only calls execute()
        except BaseException:
            # No thread for the runner (the OS's thread limit): this call gets the error
            # (Job.grant), and the next call starts a runner, also for any queued meanwhile.
            with self._lock:
                if self._runner is runner:
                    self._runner = None
                try:
                    self._queue.remove(job)
                except ValueError:
                    pass  # a runner that did start took it
                else:
                    self.held -= 1
            raise

    def close(self) -> None:
        """Stop taking calls; those queued go to the pool, which runs them in parallel."""
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self.held -= len(queued)
        for job in queued:
            self.executor.submit(job)

    def _next(self, runner: _Runner) -> Job | None:
        with self._lock:
            if self._runner is not runner:
                return None  # a new runner took over while this one's call blocked
            if self._queue:
                self.ran += 1
                runner.cpu, runner.wall = runner.now(), _perf_counter()
                return self._queue.popleft()
            self._runner = None
            return None

    def _ended(self, runner: _Runner) -> None:
        """The runner's call ended: its CPU and time since `take` last read them."""
        with self._lock:  # `take` moves the marks under it too
            self.held -= 1
            self.cpu += runner.now() - runner.cpu
            self.wall += _perf_counter() - runner.wall
            runner.wall = -1.0

    def _hand_over(self, runner: _Runner) -> None:
        """The runner's call blocks on other pool work: a new runner takes the queue."""
        with self._lock:
            if self._runner is not runner:
                return
            if not self._queue or self._closed:
                self._runner = None
                return
            successor = self._runner = _Runner(self)
        try:
            self.executor.submit(successor)  # type: ignore[arg-type]
        except BaseException:
            with self._lock:  # no thread for it: the parked runner goes on when its call ends
                if self._runner is successor:
                    self._runner = runner
            raise


class _Runner:
    """What the pool runs for a lane: its queued calls, until the queue is empty."""

    __slots__ = ("_lane", "clock", "cpu", "wall")

    def __init__(self, lane: Lane) -> None:
        self._lane = lane
        self.clock: int | None = None  # its thread's CPU clock, for `Lane.take` to read
        # Where the call running was last read (under the lane's lock); wall -1: none runs.
        self.cpu = 0.0
        self.wall = -1.0

    def now(self) -> float:
        """On its thread: the thread's CPU time, on the clock `Lane.take` reads."""
        return _thread_time() if self.clock is None else time.clock_gettime(self.clock)

    def execute(self) -> bool:
        """On a pool thread. False: there is no outcome of its own to deliver."""
        lane = self._lane
        forks = _forks
        self.clock = _thread_clock()  # None: no per-thread clock, read when each call ends
        park: Callable[[], None] = lambda: lane._hand_over(self)  # noqa: E731
        while (job := lane._next(self)) is not None:
            set_park_hook(park)
            try:
                ran = job.execute()
            finally:
                set_park_hook(None)
            if _forks != forks:
                # The call forked and this is the child: the queue, the lock and the
                # callers are the parent's (as the pool's threads do: bridge._pool).
                return False
            lane._ended(self)
            if ran:
                job.waker.deliver(job)
        return False


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
