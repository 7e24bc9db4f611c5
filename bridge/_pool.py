"""The worker pool: as many threads as blocking calls need, as few as the GIL wants.

Why not `concurrent.futures.ThreadPoolExecutor`: each submit there builds a
Future and a work item, takes a lock and probes a semaphore, and every
completion chains into the loop with its own wake-up. Here a submit hands the
job straight to the most recently idle thread (its own lock released as a
signal), or queues it when every thread is busy; threads pick queued jobs
before going idle. The last-idle-first order keeps a few threads hot and lets
the rest time out and exit.

How many threads. Short calls are fastest on few threads (each extra thread is
one more sleeper to wake and one more contender for the GIL); blocking calls
need one thread each. So threads start freely only up to `core` (CPU count +
2). Beyond it, a monitor thread looks while jobs are queued, over windows of a
GIL switch interval (longer, until each thread has finished about one job),
and asks what the threads are doing: each worker's own CPU clock says how much
CPU the workers used. Threads blocked in I/O use none; threads running Python
bytecode share one GIL and together use about one core, where more threads add
no throughput, only contention. So when jobs stayed queued through a window:

- workers under `CPU_BUSY` (0.75) of a core: they are blocked, not computing;
  the running threads double (slow start: a wrong reading costs a few threads,
  not the maximum), up to `max_workers`;
- otherwise the GIL is the bottleneck: no thread is added (`held_back`).

A growth step must raise the completion rate by `KEEP_GAIN` (25%), judged over
the next two jobs per thread, or it is undone (the added threads leave after
their job) and growth pauses for `BRAKE` (1 s): hill climbing's test, for when
the CPU reading misleads (other processes taking the CPU, a loop that is the
bottleneck). Where the platform has no per-thread CPU clock, workers count as
blocked and the brake alone keeps the size. Idle threads retire after
`idle_timeout`.

Compensation (Java's ForkJoinPool ManagedBlocker): a worker that blocks
waiting for other pool work (`syncify` parks a worker until its coroutine,
which may itself use `to_thread`, returns) says so with `blocking()`. It then
does not count against `core` or `max_workers`, and if jobs are queued a
thread is started for them at once, so the work it waits for is never queued
behind it. The number of threads is thus bounded by `max_workers` plus the
threads parked in `blocking()`, and each of those is one of your calls in
flight waiting on the loop: put a `Limiter` on the sync function that calls
`syncify` to bound it. A thread that returns from `blocking()` to find the
pool over `max_workers` retires when it finishes its job.

Threads are daemons, so a job still running never holds the interpreter at
exit, and results for a loop that has closed are dropped by its waker. After
`os.fork()` the child starts with an empty pool (its parent's threads do not
exist there) and drops the jobs queued in the parent.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from bridge._exceptions import DeadlockError
from bridge._job import Executor, Job

DEFAULT_MAX_WORKERS = 128
DEFAULT_IDLE_TIMEOUT = 10.0
MAX_WORKERS_ENV = "BRIDGE_MAX_WORKERS"
TICK = 0.001  # how often the monitor looks while jobs are queued
CPU_BUSY = 0.75  # of one core: above it, the GIL (or the CPU) is the bottleneck
LONGEST_WINDOW = 0.1  # a window ends after this even if few jobs finished
KEEP_GAIN = 1.25  # a growth step is kept if the completion rate rose by this factor
BRAKE = 1.0  # seconds without growth after a step that did not raise the completion rate


def default_core() -> int:
    """Threads started without measuring: enough to keep the CPUs busy, few to share one GIL."""
    return (os.cpu_count() or 1) + 2


def _window() -> float:
    return max(0.002, sys.getswitchinterval())


@dataclass(frozen=True)
class PoolStatistics:
    """A snapshot of the pool, and why it has its size."""

    threads: int  #: alive now
    idle: int  #: waiting for a job
    queued: int  #: jobs waiting for a thread
    core: int  #: threads started without measuring
    max_workers: int  #: the bound on threads not parked in `blocking()`
    blocked: int = 0  #: threads parked in `blocking()` (waiting for other pool work)
    running: int = 0  #: threads running a job and not parked in `blocking()`
    peak: int = 0  #: the most threads alive at once
    grown: int = 0  #: threads added beyond `core` because queued jobs waited while the CPU was free
    compensated: int = 0  #: threads started because a thread entered `blocking()` with jobs queued
    held_back: int = 0  #: windows where jobs waited but the CPU was busy, so no thread was added
    braked: int = 0  #: growth steps that did not raise the completion rate (growth then paused)
    retired: int = 0  #: threads that exited (idle timeout, or surplus after `blocking()`)


class _Local(threading.local):
    """The pool thread this is, if any: what `blocking()` reports to."""

    worker: _Worker | None = None


_local = _Local()


class _Worker:
    __slots__ = ("clock", "depth", "job", "pool", "signal")

    def __init__(self, pool: WorkerPool, job: Job | None) -> None:
        self.pool: WorkerPool | None = pool  # None once it has left the pool
        self.job = job  # the first job, then each one handed over by `submit`
        self.depth = 0  # nesting of `blocking()`
        self.clock: int | None = None  # its thread's CPU clock, for the monitor
        self.signal = threading.Lock()
        self.signal.acquire()


class _Blocking:
    """The context manager `blocking()` returns: one shared, stateless object."""

    __slots__ = ()

    def __enter__(self) -> None:
        worker = _local.worker
        if worker is not None:
            worker.depth += 1
            if worker.depth == 1 and worker.pool is not None:
                worker.pool._block()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        worker = _local.worker
        if worker is not None:
            worker.depth -= 1
            if worker.depth == 0 and worker.pool is not None:
                worker.pool._unblock()


_BLOCKING = _Blocking()


def blocking() -> _Blocking:
    """Say that this thread is about to wait for other work of the pool: `with blocking(): ...`.

    For code on a worker thread that blocks until something else finishes
    which may itself need a worker: a coroutine sent back to the loop with
    `syncify` (which does this for you), a `concurrent.futures.Future` of
    work submitted through bridge, a queue fed by other calls. While inside,
    the thread does not count against the pool's bounds and queued jobs get a
    thread of their own at once, so the wait cannot starve what it waits for.
    Anywhere else (the loop thread, a `DedicatedThread`, plain threads) it
    does nothing.

    >>> import bridge
    >>> def legacy() -> int:
    ...     with bridge.blocking():
    ...         return 42  # e.g. future.result() of work that needs a pool thread
    >>> async def main():
    ...     return await bridge.to_thread(legacy)
    >>> bridge.run(main)
    42
    """
    return _BLOCKING


class WorkerPool(Executor):
    """A set of named daemon threads that run jobs, sized by what the jobs do (see the module)."""

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_WORKERS,
        *,
        core: int | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        name: str = "bridge-worker",
    ) -> None:
        self._name = name
        self.max_workers = DEFAULT_MAX_WORKERS
        self.core = 1
        self.idle_timeout = DEFAULT_IDLE_TIMEOUT
        self._counter = itertools.count(1)
        self._reset()
        self.configure(max_workers=max_workers, core=core, idle_timeout=idle_timeout)
        _pools.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle_changed = threading.Condition(self._lock)
        self._idle_waiters = 0
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._backlog: deque[Job] = deque()
        self._threads = 0
        self._blocked = 0
        self._taken = 0  # jobs taken from the backlog: the progress the monitor watches
        self._queued = threading.Event()  # set while the monitor should watch
        self._monitor: threading.Thread | None = None
        self._peak = self._grown = self._compensated = 0
        self._held_back = self._braked = self._retired = 0
        self._surplus = 0  # threads over the bound, to leave when they next finish a job

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<WorkerPool {self._name!r} {s.threads} threads, {s.idle} idle, {s.queued} queued>"

    def configure(
        self,
        *,
        max_workers: int | None = None,
        core: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        """Change the pool's bounds; threads already running are left alone.

        `max_workers` bounds the threads not parked in `blocking()`: raise it
        when more than that many blocking calls should run at once (the
        default, 128, also comes from the `BRIDGE_MAX_WORKERS` environment
        variable). `core` is how many threads start without measuring
        (default CPU count + 2, at most `max_workers`); `idle_timeout` is how
        long (seconds) an idle thread waits for work before it exits.

        >>> import bridge
        >>> bridge.default_pool().configure(max_workers=200)
        >>> bridge.default_pool().max_workers
        200
        >>> bridge.default_pool().configure(max_workers=128)
        """
        for label, value in (("max_workers", max_workers), ("core", core)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"WorkerPool {label} must be an int, got {value!r}")
        if max_workers is not None:
            if max_workers < 1:
                raise ValueError(
                    f"WorkerPool max_workers must be at least 1, got {max_workers}: "
                    "it is how many blocking calls may run at once"
                )
            self.max_workers = max_workers
        if core is not None and core < 1:
            raise ValueError(f"WorkerPool core must be at least 1, got {core}")
        if idle_timeout is not None:
            if not isinstance(idle_timeout, int | float) or not idle_timeout > 0:
                raise ValueError(
                    "WorkerPool idle_timeout must be a positive number of seconds, "
                    f"got {idle_timeout!r}"
                )
            self.idle_timeout = float(idle_timeout)
            self._rearm_idle()
        self.core = min(self.max_workers, core if core is not None else default_core())

    def _rearm_idle(self) -> None:
        """Wake the idle threads so that they wait again with the new idle_timeout."""
        with self._lock:
            idle, self._idle[:] = list(self._idle), []
        for worker in idle:
            worker.job = None
            worker.signal.release()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.signal.release()
                return
            if self._threads - self._blocked >= self.core:
                self._backlog.append(job)
                if not self._queued.is_set():
                    self._queued.set()
                    if self._monitor is None:
                        self._start_monitor()
                return
            if self._blocked:
                self._compensated += 1  # room left by threads parked in `blocking()`
            self._add_thread()
        self._spawn(job)

    def _add_thread(self) -> None:
        """Count a thread about to start; under the lock."""
        self._threads += 1
        if self._threads > self._peak:
            self._peak = self._threads

    def _spawn(self, job: Job | None) -> None:
        # The job travels in the _Worker, never in the Thread's args: those stay
        # referenced for the thread's whole life, and so would the job's result.
        thread = threading.Thread(
            target=self._work,
            args=(_Worker(self, job),),
            name=f"{self._name}-{next(self._counter)}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _spawn_for_queued(self, job: Job) -> None:
        """Start a thread for a job taken from the queue; if the OS refuses, queue it again."""
        try:
            self._spawn(job)
        except RuntimeError as exc:  # "can't start new thread": a process or memory limit
            with self._lock:
                self._backlog.appendleft(job)
                self._taken -= 1
            logging.getLogger("bridge").warning(
                "bridge: the worker pool could not start a thread (%s); the job waits for a "
                "running one. Lower max_workers or raise the process's thread limit.",
                exc,
            )

    def _start_monitor(self) -> None:
        self._monitor = threading.Thread(
            target=self._watch, name=f"{self._name}-monitor", daemon=True
        )
        self._monitor.start()

    # -- growth ---------------------------------------------------------------

    def _watch(self) -> None:
        """While jobs are queued, add threads when the CPU is free (see the module)."""
        monotonic = time.monotonic
        while True:
            if not self._queued.wait(self.idle_timeout):
                with self._lock:
                    if not self._queued.is_set():
                        self._monitor = None  # idle: retire; the next backlog starts a new one
                        return
            added = 0  # threads added by the last growth step, still to be judged
            before = 0.0  # the completion rate before that step
            brake_until = 0.0
            with self._lock:
                taken0 = self._taken
            start, used0 = monotonic(), self._cpu_used()
            window = _window()
            while True:
                time.sleep(TICK)
                now = monotonic()
                grow: list[Job] = []
                with self._lock:
                    if not self._backlog:
                        self._queued.clear()
                        break
                    elapsed = now - start
                    taken = self._taken - taken0
                    active = self._threads - self._blocked
                    # Let each thread finish about one job before judging, two
                    # after a growth step (one rate must be compared with another).
                    enough = 2 * active if added else active
                    if elapsed < window or (taken < enough and elapsed < LONGEST_WINDOW):
                        continue
                used = self._cpu_used()
                with self._lock:
                    if not self._backlog:
                        continue
                    cpu = _spent(used0, used) / elapsed
                    rate = taken / elapsed
                    queued = len(self._backlog)
                    if added and rate < before * KEEP_GAIN:
                        # The last step bought nothing: the bottleneck is elsewhere.
                        # Undo it (the added threads leave after their job) and
                        # try again later, as hill climbing does.
                        self._braked += 1
                        self._surplus += added
                        active -= added
                        brake_until = now + BRAKE
                    added = 0
                    room = self.max_workers - active
                    if room > 0:  # jobs waited through the whole window
                        if cpu >= CPU_BUSY:
                            self._held_back += 1
                        elif now >= brake_until:
                            count = min(queued, room, max(1, active))
                            grow = [self._backlog.popleft() for _ in range(count)]
                            self._grown += count
                            self._taken += count
                            for _ in grow:
                                self._add_thread()
                            added, before = count, rate
                for job in grow:
                    self._spawn_for_queued(job)
                if grow:
                    used = self._cpu_used()  # the next window starts with the new threads running
                with self._lock:
                    taken0 = self._taken
                start, used0 = monotonic(), used

    def _cpu_used(self) -> dict[_Worker, float]:
        """CPU seconds each worker thread has used, read from its own clock."""
        with self._lock:
            workers = list(self._workers)
        used = {}
        for worker in workers:
            if worker.clock is not None:
                try:
                    used[worker] = time.clock_gettime(worker.clock)
                except OSError:  # it has just exited
                    pass
        return used

    # -- compensation -----------------------------------------------------------

    def _block(self) -> None:
        """A worker enters `blocking()`: it stops counting, and queued work gets its thread."""
        job = None
        with self._lock:
            self._blocked += 1
            room = self._threads - self._blocked < self.max_workers
            if self._backlog and not self._idle and room:
                job = self._backlog.popleft()
                self._taken += 1
                self._compensated += 1
                self._add_thread()
        if job is not None:
            self._spawn_for_queued(job)

    def _unblock(self) -> None:
        with self._lock:
            self._blocked -= 1
            if self._threads - self._blocked - self._surplus > self.max_workers:
                self._surplus += 1  # one thread leaves when it next finishes a job

    # -- the threads --------------------------------------------------------------

    def _work(self, me: _Worker) -> None:
        _local.worker = me
        me.clock = _thread_clock()
        with self._lock:
            self._workers.add(me)
        job, me.job = me.job, None
        lock = self._lock
        idle = self._idle
        backlog = self._backlog
        while job is not None:
            done = job if job.execute() else None
            job = None
            if me.pool is not self:
                return  # this thread called fork() and lives on in the child: not a worker there
            with lock:
                if self._surplus:
                    self._surplus -= 1  # over the bound (a `blocking()` ended, a step undone)
                    self._leave(me)
                    me.pool = None
                elif backlog:
                    job = backlog.popleft()
                    self._taken += 1
                else:
                    idle.append(me)
                    if self._idle_waiters:
                        self._idle_changed.notify_all()
            if done is not None:
                # Last before sleeping: the loop this wakes should find the GIL free.
                done.waker.deliver(done)
                done = None  # hold nothing while asleep: the job may own a closable iterator
            if job is not None:
                continue
            if me.pool is None:
                return
            while job is None:
                if not me.signal.acquire(timeout=self.idle_timeout):
                    with lock:
                        if me in idle:  # nobody handed us a job: retire
                            idle.remove(me)
                            self._leave(me)
                            return
                    me.signal.acquire()  # a job was handed over just as we timed out
                job, me.job = me.job, None
                if job is None:  # woken by configure(): wait again, with the new idle_timeout
                    with lock:
                        if backlog:
                            job = backlog.popleft()
                            self._taken += 1
                        else:
                            idle.append(me)

    def _leave(self, worker: _Worker) -> None:
        """A thread exits; under the lock."""
        self._workers.discard(worker)
        self._threads -= 1
        self._retired += 1
        if self._idle_waiters:
            self._idle_changed.notify_all()

    # -- observing --------------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(
                threads=self._threads,
                idle=len(self._idle),
                queued=len(self._backlog),
                core=self.core,
                max_workers=self.max_workers,
                blocked=self._blocked,
                running=self._threads - len(self._idle) - self._blocked,
                peak=self._peak,
                grown=self._grown,
                compensated=self._compensated,
                held_back=self._held_back,
                braked=self._braked,
                retired=self._retired,
            )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits in this pool; False if `timeout` (seconds) passed first.

        For tests and clean shutdown: after it returns True, every call sent
        to the pool so far has finished (calls still waiting for a `Limiter`
        token are not in the pool yet). Refused on one of the pool's own
        threads, which would wait for itself.
        """
        if _local.worker is not None and _local.worker.pool is self:
            raise DeadlockError(
                "wait_idle() was called on one of the pool's own threads, which would wait "
                "for itself to finish. Call it from the thread that sent the work, or from "
                "a test's sync code."
            )
        with self._idle_changed:
            self._idle_waiters += 1
            try:
                return self._idle_changed.wait_for(
                    lambda: not self._backlog and len(self._idle) == self._threads, timeout
                )
            finally:
                self._idle_waiters -= 1


def _spent(before: dict[_Worker, float], after: dict[_Worker, float]) -> float:
    """CPU seconds the workers used between two readings (a new thread: since it started)."""
    return sum(now - before.get(worker, 0.0) for worker, now in after.items())


def _thread_clock() -> int | None:
    """This thread's CPU clock, or None where the platform has none (then it counts as idle)."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: every pool's threads, its
    # monitor and its lock holders are gone, and queued jobs belong to loops of
    # the parent. Start from empty; a worker that forked leaves after its job.
    for pool in list(_pools):
        pool._reset()
    worker = _local.worker
    if worker is not None:
        _local.worker = None
        worker.pool = None


def _max_workers_from_env() -> int:
    value = os.environ.get(MAX_WORKERS_ENV)
    if value is None:
        return DEFAULT_MAX_WORKERS
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{MAX_WORKERS_ENV}={value!r} is not a whole number; set it to the most "
            "blocking calls the default pool may run at once, e.g. 200"
        ) from None


_default_pool = WorkerPool(_max_workers_from_env())
os.register_at_fork(after_in_child=_after_fork_in_child)


def default_pool() -> WorkerPool:
    """The process-wide pool that `to_thread` and `asyncify` use."""
    return _default_pool
