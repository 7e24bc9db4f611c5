"""The worker pool: threads started lazily up to a bound, idle ones retire.

Why not `concurrent.futures.ThreadPoolExecutor`: each submit there builds a
Future and a work item, takes a lock and probes a semaphore, and every
completion chains into the loop with its own wake-up. Here a submit hands the
job straight to the most recently idle thread (its own lock released as a
signal), or queues it when every thread is busy; threads pick queued jobs
before going idle. The last-idle-first order keeps a few threads hot and lets
the rest time out and exit.

How many threads: short calls are fastest on few threads (each extra thread
is one more sleeper to wake and one more contender for the GIL), blocking
calls need one thread each. So the pool starts threads freely only up to
`core` (CPU count + 4, as asyncio does); beyond that it grows, up to
`max_workers`, only when queued work makes no progress for two GIL switch
intervals (10 ms by default), which is what threads blocked in I/O look like.
A shorter window would mistake a loop busy submitting, which holds the GIL
until the switch interval forces it to let go, for a stall.

Threads are daemons, so a job still running never holds the interpreter at
exit, and results for a loop that has closed are dropped by its waker.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from bridge._job import Executor, Job

DEFAULT_MAX_WORKERS = 64
DEFAULT_CORE_WORKERS = min(DEFAULT_MAX_WORKERS, (os.cpu_count() or 1) + 4)
DEFAULT_IDLE_TIMEOUT = 10.0
STALL_CHECK_INTERVAL = 0.001


def _stall_window() -> float:
    return max(0.002, 2 * sys.getswitchinterval())


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of the pool: threads alive, idle among them, jobs queued."""

    threads: int
    idle: int
    queued: int
    core: int
    max_workers: int


class _Worker:
    __slots__ = ("job", "signal")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.signal = threading.Lock()
        self.signal.acquire()


class WorkerPool(Executor):
    """A bounded set of named daemon threads that run jobs."""

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        *,
        core: int | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        name: str = "bridge-worker",
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self.core = min(max_workers, core if core is not None else DEFAULT_CORE_WORKERS)
        self.idle_timeout = idle_timeout
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._backlog: deque[Job] = deque()
        self._threads = 0
        self._taken = 0  # jobs taken from the backlog: the progress the stall check watches
        self._stall_check = threading.Event()
        self._monitor: threading.Thread | None = None
        self._counter = itertools.count(1)

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.signal.release()
                return
            if self._threads >= self.core:
                self._backlog.append(job)
                if not self._stall_check.is_set():
                    self._stall_check.set()
                    if self._monitor is None:
                        self._start_monitor()
                return
            self._threads += 1
        self._spawn(job)

    def _spawn(self, job: Job | None) -> None:
        thread = threading.Thread(
            target=self._work,
            args=(job,),
            name=f"{self._name}-{next(self._counter)}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _start_monitor(self) -> None:
        self._monitor = threading.Thread(
            target=self._watch_stalls, name=f"bridge-monitor-{self._name}", daemon=True
        )
        self._monitor.start()

    def _watch_stalls(self) -> None:
        """While jobs are queued, add threads when the queue stops moving."""
        while True:
            if not self._stall_check.wait(self.idle_timeout):
                with self._lock:
                    if not self._stall_check.is_set():
                        self._monitor = None  # idle: retire; the next backlog starts a new one
                        return
            window = _stall_window()
            with self._lock:
                taken = self._taken
            since = time.monotonic()
            jobs: list[Job] = []
            while not jobs:
                time.sleep(STALL_CHECK_INTERVAL)
                now = time.monotonic()
                with self._lock:
                    if not self._backlog:
                        self._stall_check.clear()
                        break
                    if self._taken != taken:
                        taken, since = self._taken, now  # moving: the threads keep up
                        continue
                    if now - since < window:
                        continue
                    # Every thread is stuck in a long call. Give each waiting job
                    # a thread of its own, as far as the bound allows.
                    grow = min(len(self._backlog), self.max_workers - self._threads)
                    jobs = [self._backlog.popleft() for _ in range(grow)]
                    self._taken += grow
                    self._threads += grow
                    taken, since = self._taken, now
            for job in jobs:
                self._spawn(job)

    def _work(self, job: Job | None) -> None:
        me = _Worker()
        lock = self._lock
        idle = self._idle
        backlog = self._backlog
        while job is not None:
            done = job if job.execute() else None
            job = None
            with lock:
                if backlog:
                    job = backlog.popleft()
                    self._taken += 1
                else:
                    idle.append(me)
            if done is not None:
                # Last before sleeping: the loop this wakes should find the GIL free.
                done.waker.deliver(done)
                done = None  # hold nothing while asleep: the job may own a closable iterator
            if job is not None:
                continue
            if not me.signal.acquire(timeout=self.idle_timeout):
                with lock:
                    if me in idle:  # nobody handed us a job: retire
                        idle.remove(me)
                        self._threads -= 1
                        return
                me.signal.acquire()  # a job was handed over just as we timed out
            job = me.job
            me.job = None

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(
                threads=self._threads,
                idle=len(self._idle),
                queued=len(self._backlog),
                core=self.core,
                max_workers=self.max_workers,
            )


_default_pool = WorkerPool()


def default_pool() -> WorkerPool:
    """The process-wide pool that `to_thread` and `asyncify` use."""
    return _default_pool
