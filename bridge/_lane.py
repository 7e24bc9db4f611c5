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
over the queue, so a call never waits behind one that waits for it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from bridge._job import Executor, Job
from bridge._pool import set_park_hook

if TYPE_CHECKING:
    from collections.abc import Callable

_perf_counter = time.perf_counter
_thread_time = time.thread_time


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
        """The CPU and time of the calls run here since the last `take`."""
        with self._lock:
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
        else:
            self.executor.submit(runner)  # type: ignore[arg-type]  # the pool only calls execute()

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
                return self._queue.popleft()
            self._runner = None
            return None

    def _hand_over(self, runner: _Runner) -> None:
        """The runner's call blocks on other pool work: a new runner takes the queue."""
        with self._lock:
            if self._runner is not runner:
                return
            if not self._queue or self._closed:
                self._runner = None
                return
            successor = self._runner = _Runner(self)
        self.executor.submit(successor)  # type: ignore[arg-type]


class _Runner:
    """What the pool runs for a lane: its queued calls, until the queue is empty."""

    __slots__ = ("_lane",)

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    def execute(self) -> bool:
        """On a pool thread. False: there is no outcome of its own to deliver."""
        lane = self._lane
        park: Callable[[], None] = lambda: lane._hand_over(self)  # noqa: E731
        while (job := lane._next(self)) is not None:
            set_park_hook(park)
            wall, cpu = _perf_counter(), _thread_time()
            try:
                ran = job.execute()
            finally:
                set_park_hook(None)
            cpu, wall = _thread_time() - cpu, _perf_counter() - wall
            with lane._lock:
                lane.held -= 1
                lane.cpu += cpu
                lane.wall += wall
            if ran:
                job.waker.deliver(job)
        return False
