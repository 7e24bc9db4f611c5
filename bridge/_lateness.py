"""How late a loop runs its timers: the quantity an adaptive limiter protects.

Threads that hold the GIL starve the loop as surely as a blocking call does,
and nothing inside a thread can see it. The loop can: while an adaptive
limiter admits calls from a loop, a probe timer on that loop fires every
INTERVAL, and how much later than asked it runs is one lateness sample — the
same delay every timer, socket read and woken task on that loop suffers.
(An earlier signal, how long a wake-up the waker requested waited, was read
at no extra wake-up but missed what a timer suffers: bench/RESULTS.md.)

Each sample comes with what could have caused it: how much CPU the process's
other threads used since the previous one, and how much the loop's own
thread did. The loop waits for the GIL only while another thread of ours
holds it, and runs late on its own work only while it has much of it; when
both are small the lateness comes from elsewhere (the machine's other
processes) and fewer tokens would not help.

The probe runs only while some adaptive limiter it serves has calls running
or waiting; a loop with no adaptive limiter never has one, so plain limiters
and the waker pay nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge._waker import Waker
    from bridge.limiter import Limiter

INTERVAL = 0.005  # seconds between probe timers: a heartbeat's pace (bench/RESULTS.md)
IDLE_SAMPLES = 50  # samples with no call running or waiting before the probe stops
SHARE_WEIGHT = 0.2  # EWMA weight of the newest CPU-share reading (about 5 samples)

_perf_counter = time.perf_counter
_process_time = time.process_time
_thread_time = time.thread_time


class Lateness:
    """One loop's probe: samples its timer lateness and feeds it to the adaptive limiters it serves.

    `watch` may run on any thread; the samples are taken, and fed, on the
    loop's thread.
    """

    __slots__ = ("_clock", "_idle", "_lock", "limiters", "own", "running", "share")

    def __init__(self) -> None:
        self.limiters: weakref.WeakSet[Limiter] = weakref.WeakSet()
        self.running = False  # a probe timer is scheduled, or about to be
        self.share = 0.0  # EWMA of the other threads' CPU use, in cores
        self.own = 0.0  # EWMA of the loop thread's own CPU use, in cores
        self._clock = (0.0, 0.0, 0.0)  # perf_counter, process_time, loop thread_time
        self._idle = 0
        self._lock = threading.Lock()

    def watch(self, limiter: Limiter, waker: Waker) -> None:
        """Feed `limiter` this loop's samples from now on; start the probe if it sleeps."""
        with self._lock:
            self.limiters.add(limiter)
            self._idle = 0  # so a probe deciding to stop right now keeps going for it
            if self.running:
                return
            self.running = True
        try:
            waker._schedule(lambda: _start(self, waker))
        except RuntimeError:  # the loop is gone: nothing to watch
            with self._lock:
                self.running = False

    def sample(self, late: float) -> bool:
        """On the loop: one timer ran `late` seconds late. False once the probe should stop."""
        now, cpu, mine = _perf_counter(), _process_time(), _thread_time()
        then, cpu0, mine0 = self._clock
        self._clock = (now, cpu, mine)
        if now > then:
            others = max(0.0, (cpu - cpu0) - (mine - mine0)) / (now - then)
            self.share += SHARE_WEIGHT * (others - self.share)
            self.own += SHARE_WEIGHT * ((mine - mine0) / (now - then) - self.own)
        with self._lock:  # `watch` may add to the set from another thread meanwhile
            limiters = list(self.limiters)
        busy = False
        for limiter in limiters:
            busy = limiter._lateness(late, self.share, self.own) or busy
        with self._lock:
            self._idle = 0 if busy else self._idle + 1
            if self._idle < IDLE_SAMPLES:
                return True
            self.running = False  # the next `watch` starts a new probe
            self.limiters.clear()
            return False

    def begin(self) -> None:
        """On the loop, as the probe starts: CPU readings start from here."""
        self._clock = (_perf_counter(), _process_time(), _thread_time())


def _start(lateness: Lateness, waker: Waker) -> None:
    """On the loop's thread: the first probe timer (a trio system task on trio)."""
    lateness.begin()
    loop: Any = waker.key()
    if loop is None:
        return
    if isinstance(loop, asyncio.AbstractEventLoop):
        _asyncio_timer(lateness, loop)
    else:
        import trio

        trio.lowlevel.spawn_system_task(_trio_probe, lateness, name="bridge-lateness-probe")


def _asyncio_timer(lateness: Lateness, loop: asyncio.AbstractEventLoop) -> None:
    due = _perf_counter() + INTERVAL

    def woken() -> None:
        if lateness.sample(_perf_counter() - due):
            _asyncio_timer(lateness, loop)

    # A task sleeping until `due` runs one turn after its timer fires (the timer
    # only schedules the task's step): the probe measures there, as a task would.
    loop.call_later(INTERVAL, loop.call_soon, woken)


async def _trio_probe(lateness: Lateness) -> None:
    import trio

    while True:
        due = _perf_counter() + INTERVAL
        await trio.sleep(INTERVAL)
        if not lateness.sample(_perf_counter() - due):
            return
