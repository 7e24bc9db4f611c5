"""Loop lateness, measured the way a task woken by its own timer experiences it.

While metrics are on, every live loop bridge has a waker for runs one probe
timer of its own, every `INTERVAL` seconds: the probe asks to run at a due
time and records how much later it ran, one loop turn after its timer
fired (where a task whose sleep ended would run). A loop busy with CPU work,
a blocking call or a GIL held by other threads shows it at once, and so does
every result handed back to it: those wait behind the same turns.

A timer on the loop, not a thread that posts to it: waking a thread of our
own 20 times a second cost 100-220 µs of CPU a wake-up here (the thread's
wake-up, its GIL hand-over, then the loop's own wake-up for the post), 0.4 µs
per Cassandra request under load (bench/RESULTS.md, "Metrics", run G). A
timer on a busy loop fires inside a turn that runs anyway; on an idle loop
it is one wake-up, the loop's own.

A thread still runs the exporters' periodic chores (`ticks`), only while
there are some: OpenTelemetry's exact replay is spread over every interval
this way instead of landing all at once, GIL held, when a reader collects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge import _metrics, _waker

INTERVAL = 0.05

_perf_counter = time.perf_counter


def backend_of(waker: _waker.Waker) -> str:
    if isinstance(waker, _waker.TrioWaker):
        return "trio"
    loop = waker.key()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class LatenessProbe:
    """The probe timers of every loop, and the chores' thread; both follow the metrics switch."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        #: Bumped by every `start` and `stop`: a timer from another generation stops.
        self.generation = 0
        self.running = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called on the chores' thread every interval, while the list is not empty.
        self.ticks: list[Callable[[], None]] = []

    def start(self) -> None:
        """Probe every loop (the ones made later too), and run the chores if there are any."""
        with self._lock:
            if not self.running:
                self.running = True
                self.generation += 1
                # Set before the wakers are listed: a loop whose waker is made meanwhile
                # is listed, or watched by the hook, or both (`watch` skips a second timer).
                _waker.on_new_waker = self.watch
                with _waker._wakers_lock:
                    wakers = list(_waker._wakers.values())
                for waker in wakers:
                    self._watch(waker)
            if self.ticks and self._thread is None:
                # A new event per thread: a previous thread still winding down keeps its own.
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="bridge-metrics", daemon=True
                )
                self._thread.start()
                thread = None
            elif not self.ticks:
                thread, self._thread = self._thread, None
            else:
                thread = None
        _join(thread, self._stop)

    def stop(self) -> None:
        """No more probes (each loop's timer ends at its next expiry) and no more chores."""
        with self._lock:
            self.running = False
            self.generation += 1
            _waker.on_new_waker = None
            thread, self._thread = self._thread, None
        _join(thread, self._stop)

    def watch(self, waker: _waker.Waker) -> None:
        """Start `waker`'s loop's probe timer (from any thread), unless it has one running."""
        with self._lock:
            if self.running:
                self._watch(waker)

    def _watch(self, waker: _waker.Waker) -> None:
        """Under `_lock`."""
        generation = self.generation
        if waker.probed == generation:
            return
        waker.probed = generation
        try:
            waker._schedule(lambda: self._begin(waker, generation))
        except RuntimeError:
            pass  # the loop is gone: nothing to probe

    def _begin(self, waker: _waker.Waker, generation: int) -> None:
        """On the loop's thread: its labels, then its first probe timer."""
        if generation != self.generation:
            return
        key = (backend_of(waker), threading.current_thread().name)
        loop: Any = waker.key()
        if loop is None:
            return
        if isinstance(loop, asyncio.AbstractEventLoop):
            self._asyncio_timer(loop, key, generation)
        else:
            import trio

            trio.lowlevel.spawn_system_task(
                self._trio_probe, key, generation, name="bridge-metrics-lateness-probe"
            )

    def _asyncio_timer(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str], generation: int
    ) -> None:
        interval = self.interval
        due = _perf_counter() + interval

        def woken() -> None:
            # Read without the lock: a stale read around a switch records one more probe.
            if generation != self.generation:
                return  # metrics were switched off (or off and on again: a new timer runs)
            _metrics.loop_lateness.record(_perf_counter() - due, key)
            self._asyncio_timer(loop, key, generation)

        # A task sleeping until `due` runs one turn after its timer fires (the timer
        # only schedules the task's step): the probe measures there, as a task would.
        loop.call_later(interval, loop.call_soon, woken)

    async def _trio_probe(self, key: tuple[str, str], generation: int) -> None:
        import trio

        while generation == self.generation:
            interval = self.interval
            due = _perf_counter() + interval
            await trio.sleep(interval)
            if generation != self.generation:
                return
            _metrics.loop_lateness.record(_perf_counter() - due, key)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            for tick in list(self.ticks):
                try:
                    tick()
                except Exception:
                    logging.getLogger("bridge.metrics").exception("metrics chore %r failed", tick)


def _join(thread: threading.Thread | None, stop: threading.Event) -> None:
    if thread is not None:
        stop.set()
        if thread is not threading.current_thread():
            thread.join(1.0)


probe = LatenessProbe()
