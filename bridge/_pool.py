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
2). Beyond it, a monitor thread looks while jobs are queued, over windows of
four GIL switch intervals (longer, until each thread has finished a job), and
asks what the threads are doing, with two readings:

- the workers' CPU, from each one's own CPU clock: threads blocked in I/O use
  none; threads running bytecode share one GIL and together use about a core;
- the GIL wait: how long the monitor itself, waking from each 1 ms tick, waits
  for the GIL (its sleep's overshoot minus its time in the OS run queue, from
  Linux's schedstat). Threads blocked in I/O leave the GIL free (0.03-0.5 ms a
  tick, measured); threads running bytecode hold it until a switch interval
  forces it away (1.2-100 ms a tick). Other processes taking the CPU push the
  workers' CPU down, so that bytecode would read as blocked, but not this.

When jobs stayed queued through a window:

- workers under `CPU_BUSY` (0.75) of a core and the GIL wait under `GIL_BUSY`
  (a fifth of a switch interval), two windows in a row: they are blocked, not
  computing; the running threads double (slow start: a wrong reading costs a
  few threads, not the maximum), up to `max_workers`;
- otherwise no thread is added (`held_back`; `held_back_gil` when only the GIL
  wait said so); likewise when jobs take a thread under `MIN_JOB` (200 µs)
  each: calls that short are limited by the loop handing them out, not by
  threads. GIL-bound work thus runs on `core` threads. Fewer were tried (a
  hill climb down to 2, kept while the rate held): on a quiet machine 1 to 6
  threads give the same rate, and under load fewer threads get less CPU time
  while noise let the climb keep them (0.5-0.7x), so it was taken out.

A growth step must raise the completion rate by half the ideal linear gain
(`KEEP_GAIN` 1.5x for a doubling) and leave the workers under `CPU_BUSY`,
judged over the next two jobs per thread, or it is undone (threads over the
limit go idle) and growth pauses for `BRAKE` (1 s, doubling while steps keep
failing, up to 30 s): hill climbing's test, for when the readings mislead.
A pool grown past `core` is also watched while nothing is queued (every 5 ms):
when its work turns GIL-bound its many threads would all compute at once, so
at the second window in a row whose GIL wait says saturated the running
threads are capped at `core` (`capped`), and from there the windows above size them. Where
the platform has no per-thread CPU clock or schedstat, the readings are less
sure and the brake keeps the size. Idle threads retire after `idle_timeout`.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from bridge._exceptions import DeadlockError
from bridge._job import Executor, Job

DEFAULT_MAX_WORKERS = 128
DEFAULT_IDLE_TIMEOUT = 10.0
MAX_WORKERS_ENV = "BRIDGE_MAX_WORKERS"
TICK = 0.001  # how often the monitor looks while jobs are queued
CPU_BUSY = 0.75  # of one core: above it, the GIL (or the CPU) is the bottleneck
GIL_BUSY = 0.2  # of a switch interval: the monitor waiting longer per tick for the GIL: saturated
LONGEST_WINDOW = 0.1  # a window ends after this even if few jobs finished
KEEP_GAIN = 1.5  # a doubling is kept if the completion rate rose by this factor (smaller: pro rata)
BRAKE = 1.0  # seconds without growth after a step that did not raise the completion rate
MAX_BRAKE = 30.0  # ... doubling after each such step in a row, up to this
MIN_JOB = 0.0002  # jobs shorter than ~10 thread hand-offs: the loop, not threads, limits them
QUIET_TICK = 0.005  # the monitor's tick while nothing is queued but more than `core` threads run


def default_core() -> int:
    """Threads started without measuring: enough to keep the CPUs busy, few to share one GIL."""
    return (os.cpu_count() or 1) + 2


def _window() -> float:
    # Several GIL switch intervals (and OS time slices): shorter, and a rate
    # measured on a loaded machine is mostly scheduling noise.
    return max(0.01, 4 * sys.getswitchinterval())


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
    held_back: int = 0  #: windows where jobs waited but the CPU or GIL was busy: no thread added
    held_back_gil: int = 0  #: ... of those, windows where only the GIL wait said so (CPU read low)
    braked: int = 0  #: growth steps that did not raise the completion rate (growth then paused)
    retired: int = 0  #: threads that exited (idle timeout, or surplus after `blocking()`)
    limit: int | None = None  #: while capped (GIL-bound work, a step undone): most threads running
    capped: int = (
        0  #: times a pool grown past `core` was capped at `core` (its work turned GIL-bound)
    )
    last_cpu: float = 0.0  #: workers' CPU (cores) in the last window the monitor judged
    last_gil_wait: float = 0.0  #: the monitor's wait for the GIL per tick (seconds), same window


class _Local(threading.local):
    """The pool thread this is, if any: what `blocking()` reports to."""

    worker: _Worker | None = None
    park: Callable[[], None] | None = None  # a lane's runner: hand its queue on (bridge._lane)


_local = _Local()


def set_park_hook(hook: Callable[[], None] | None) -> None:
    """Call `hook` if this thread's job enters `blocking()`: a lane's queue must not wait on it."""
    _local.park = hook


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
                park = _local.park
                if park is not None:
                    _local.park = None
                    park()

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
        self._held_back = self._held_back_gil = self._braked = self._retired = 0
        self._last_cpu = self._last_gil_wait = 0.0
        self._surplus = 0  # threads over the bound, to leave when they next finish a job
        self._bound = 0  # while capped: the most threads that may run jobs at once
        self._capped = False  # the monitor holds the running threads below the threads alive
        self._caps = 0

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
            if self._idle and (
                not self._capped or self._threads - len(self._idle) - self._blocked < self._bound
            ):
                worker = self._idle.pop()
                worker.job = job
                worker.signal.release()
                return
            running = self._threads - len(self._idle) - self._blocked
            if self._threads - self._blocked >= self.core or (
                self._capped and running >= self._bound
            ):  # `_capped` may be stale after a `blocking()`: the count decides
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
        """While jobs are queued or more than `core` threads run, size the pool (see the module)."""
        monotonic = time.monotonic
        while True:
            with self._lock:
                grown = self._threads - self._blocked > self.core
            # A pool grown for blocking calls is looked at every window even with
            # nothing queued: its work may turn GIL-bound on all those threads.
            if not self._queued.wait(_window() if grown else self.idle_timeout):
                with self._lock:
                    if not self._over_core():
                        if not grown and not self._queued.is_set():
                            self._monitor = None  # idle: retire; the next backlog starts one
                            return
                        continue
            self._judge_windows(monotonic)

    def _over_core(self) -> bool:
        """More than `core` threads run jobs (under the lock)."""
        return self._threads - len(self._idle) - self._blocked > self.core

    def _judge_windows(self, monotonic: Callable[[], float]) -> None:
        """One busy period: a window at a time, grow the running threads or cap them."""
        step: _Step | None = None  # the last change of the bound, still to be judged
        seen_blocked = False  # the window before this one also read "blocked"
        seen_saturated = False  # ... or, with nothing queued, "GIL saturated"
        brake_until = cap_until = 0.0
        brake = BRAKE
        with self._lock:
            taken0 = self._taken
        start, used0 = monotonic(), self._cpu_used()
        window = _window()
        gil = _GilWait()
        slow = False  # the last window read the GIL saturated, or no thread may be added
        while True:
            # Each tick takes the GIL from the workers. While they hold it anyway, a
            # forced switch to the monitor leaves it idle while the OS schedules the
            # monitor (long on a loaded machine): tick once a window, not 20 times.
            tick = window if slow else TICK if self._backlog else QUIET_TICK  # a racy read
            before_tick = monotonic()
            time.sleep(tick)
            now = monotonic()
            gil.overshoot += now - before_tick - tick
            gil.ticks += 1
            spawn: list[Job] = []
            with self._lock:
                if not self._backlog and not self._over_core():
                    self._queued.clear()
                    return
                elapsed = now - start
                taken = self._taken - taken0
                active = self._active()
                # Let each thread finish about one job before judging, two
                # after a step (one rate must be compared with another).
                enough = 2 * active if step else active
                if elapsed < window or (
                    self._backlog and taken < enough and elapsed < LONGEST_WINDOW
                ):
                    continue
            used = self._cpu_used()
            wait = gil.per_tick()
            with self._lock:
                cpu = _spent(used0, used) / elapsed
                self._last_cpu, self._last_gil_wait = cpu, wait
                saturated = wait >= GIL_BUSY * sys.getswitchinterval()
                busy = cpu >= CPU_BUSY or saturated
                rate = taken / elapsed
                active = self._active()
                slow = saturated or active >= self.max_workers
                if not self._backlog:
                    # Nothing queued, more than `core` threads running, and they hold
                    # the GIL: cap them at `core`; jobs then queue, and the windows
                    # below size the pool from there.
                    step = None
                    if not saturated:
                        seen_saturated = False
                    elif not seen_saturated:
                        seen_saturated = True  # two windows in a row: a spike is not enough
                    elif now >= cap_until and self._over_core():
                        self._set_bound(self.core)
                        self._caps += 1
                        cap_until = now + BRAKE
                        seen_saturated = False
                elif step is not None:
                    self._judge(step, rate, cpu)
                    if not step.kept:
                        brake_until = now + brake
                        brake = min(2 * brake, MAX_BRAKE)
                    else:
                        brake = BRAKE
                        seen_blocked = True  # a kept step is evidence enough for the next
                    step = None
                else:
                    step, spawn, seen_blocked = self._decide(
                        rate,
                        cpu,
                        busy,
                        saturated,
                        active,
                        elapsed,
                        taken,
                        seen_blocked,
                        now >= brake_until,
                    )
            for job in spawn:
                self._spawn_for_queued(job)
            if spawn:
                used = self._cpu_used()  # the next window starts with the new threads running
            with self._lock:
                taken0 = self._taken
            start, used0 = monotonic(), used
            gil = _GilWait()

    def _active(self) -> int:
        """Threads that may run jobs now (under the lock)."""
        return self._bound if self._capped else self._threads - self._blocked

    def _decide(
        self,
        rate: float,
        cpu: float,
        busy: bool,
        saturated: bool,
        active: int,
        elapsed: float,
        taken: int,
        seen_blocked: bool,
        may_grow: bool,
    ) -> tuple[_Step | None, list[Job], bool]:
        """Under the lock, jobs having waited through a window: the next step, if any."""
        job_time = active * elapsed / max(taken, 1)  # a thread's wall time per job
        if busy or job_time < MIN_JOB:
            self._held_back += 1
            if saturated and cpu < CPU_BUSY and job_time >= MIN_JOB:
                self._held_back_gil += 1
            return None, [], False
        if not seen_blocked:
            # One reading is not enough: the first window after jobs queue sees
            # the loop handing them out, which leaves the GIL free between jobs
            # even when they compute.
            return None, [], True
        room = self.max_workers - active
        if room <= 0 or not may_grow:
            return None, [], False
        count = min(len(self._backlog), room, max(1, active))
        self._grown += count
        step = _Step(active, rate)
        self._set_bound(active + count)
        step.gain = 1 + (KEEP_GAIN - 1) * count / max(1, active)  # half the ideal, linear gain
        return step, self._dispatch(count), False

    def _judge(self, step: _Step, rate: float, cpu: float) -> None:
        """Under the lock: keep the last growth step, or go back (its threads go idle)."""
        # Kept if the added threads raised the rate and still wait, not compute
        # (the workers' CPU; not the GIL wait, which spikes when another process
        # preempts the thread holding the GIL: one such window only delays the
        # next step).
        step.kept = rate >= step.rate * step.gain and cpu < CPU_BUSY
        if not step.kept:
            self._braked += 1
            self._set_bound(step.before)

    def _set_bound(self, bound: int) -> None:
        """Under the lock: at most `bound` threads run jobs; threads over it go idle."""
        self._bound = bound
        self._capped = bound < self._threads - self._blocked

    def _dispatch(self, count: int) -> list[Job]:
        """Under the lock: start up to `count` queued jobs, on idle threads first; the
        rest are returned, counted as threads, for the caller to spawn."""
        spawn = []
        backlog = self._backlog
        while count > 0 and backlog:
            job = backlog.popleft()
            self._taken += 1
            count -= 1
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.signal.release()
            else:
                self._add_thread()
                spawn.append(job)
        self._capped = self._bound < self._threads - self._blocked
        return spawn

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
            if self._backlog and room:
                job = self._backlog.popleft()
                self._taken += 1
                self._compensated += 1
                if self._idle:  # idle only because the running threads are capped
                    worker = self._idle.pop()
                    worker.job, job = job, None
                    worker.signal.release()
                else:
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
                    self._surplus -= 1  # over the bound after a `blocking()` ended
                    self._leave(me)
                    me.pool = None
                elif backlog and (
                    not self._capped or self._threads - len(idle) - self._blocked <= self._bound
                ):
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
                            if self._surplus:
                                self._surplus -= 1  # leaving anyway: one fewer to leave later
                            self._leave(me)
                            return
                    me.signal.acquire()  # a job was handed over just as we timed out
                job, me.job = me.job, None
                if job is None:  # woken by configure(): wait again, with the new idle_timeout
                    with lock:
                        if backlog and not self._capped:
                            job = backlog.popleft()
                            self._taken += 1
                        else:
                            idle.append(me)

    def _leave(self, worker: _Worker) -> None:
        """A thread exits; under the lock."""
        self._workers.discard(worker)
        self._threads -= 1
        self._retired += 1
        if self._capped and self._bound >= self._threads - self._blocked:
            self._capped = False
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
                held_back_gil=self._held_back_gil,
                braked=self._braked,
                retired=self._retired,
                last_cpu=self._last_cpu,
                last_gil_wait=self._last_gil_wait,
                limit=self._bound if self._capped else None,
                capped=self._caps,
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


@dataclass
class _Step:
    """A growth step, judged on the next window's completion rate."""

    before: int  # the threads running before the step: where an undone step goes back to
    rate: float  # the completion rate before it
    kept: bool = field(default=False)
    gain: float = field(default=KEEP_GAIN)  # for "grow": the rise in rate that keeps it


class _GilWait:
    """How long the monitor waited for the GIL after its ticks, over one window.

    A tick's sleep overshoots by the OS waking the thread (time spent in the run
    queue, read from the thread's schedstat where Linux has it, and subtracted:
    other processes taking the CPU must not count) plus the wait for the GIL.
    Threads blocked in I/O leave the GIL free, so the monitor gets it at once
    (measured: 0.03-0.3 ms a tick, even with 6 busy processes beside it);
    threads running bytecode hold it until a switch interval forces it away
    (1.2-70 ms a tick with 4 threads). Unlike the workers' CPU, which other
    processes taking the CPU push down, this does not read as "blocked" under load.
    """

    __slots__ = ("overshoot", "queued0", "ticks")

    def __init__(self) -> None:
        self.overshoot = 0.0
        self.ticks = 0
        self.queued0 = _run_queue_wait()

    def per_tick(self) -> float:
        queued = _run_queue_wait() - self.queued0
        return max(0.0, self.overshoot - queued) / max(self.ticks, 1)


_SCHEDSTAT = "/proc/thread-self/schedstat"
_has_schedstat = os.path.exists(_SCHEDSTAT)


def _run_queue_wait() -> float:
    """Seconds this thread has been runnable but not running (0 without Linux's schedstat)."""
    global _has_schedstat
    if _has_schedstat:
        try:
            with open(_SCHEDSTAT, "rb") as f:  # twice a window: not worth keeping open
                return int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            _has_schedstat = False
    return 0.0


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
