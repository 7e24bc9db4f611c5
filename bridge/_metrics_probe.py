"""Loop lateness, measured the way a result returning from a thread experiences it.

While metrics are on, one daemon thread posts a probe to every live loop
bridge has a waker for, every `INTERVAL` seconds, through that loop's waker:
the same path, and the same queue, as every finished job. The delay until
the loop runs it is the loop's lateness: a loop busy with CPU work, a
blocking call or a GIL held by other threads shows it at once. One probe is
in flight per loop; one still unanswered simply records a longer delay when
the loop gets to it. The cost is one wake-up per loop per interval.

The same thread runs the exporters' periodic chores (`ticks`): OpenTelemetry's
histogram replay is spread over every interval this way instead of landing
all at once, GIL held, when a reader collects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bridge import _metrics, _waker

INTERVAL = 0.05

_perf_counter = time.perf_counter


class _Probe:
    __slots__ = ("done", "key", "sent")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.done = False
        self.sent = _perf_counter()

    def complete(self) -> None:  # on the loop, from the waker's drain
        _metrics.loop_lateness.record(_perf_counter() - self.sent, self.key)
        self.done = True


def backend_of(waker: _waker.Waker) -> str:
    if isinstance(waker, _waker.TrioWaker):
        return "trio"
    loop = waker.key()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class LatenessProbe:
    """The probing thread; `start()` and `stop()` follow the metrics switch."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called on the probe thread after each round of probes.
        self.ticks: list[Callable[[], None]] = []

    def start(self) -> None:
        if self._thread is not None:
            return
        # A new event per thread: a previous thread still winding down keeps its own, set.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="bridge-metrics-probe", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            if thread is not threading.current_thread():
                thread.join(1.0)

    def _run(self, stop: threading.Event) -> None:
        in_flight: dict[int, tuple[_waker.Waker, _Probe]] = {}  # id(waker) -> its last probe
        while not stop.wait(self.interval):
            with _waker._wakers_lock:
                wakers = list(_waker._wakers.values())
            names = {t.ident: t.name for t in threading.enumerate()}
            alive = set()
            for waker in wakers:
                alive.add(id(waker))
                previous = in_flight.get(id(waker))
                if previous is not None and previous[0] is waker and not previous[1].done:
                    continue  # still unanswered: it will record the whole delay
                if not waker.running():
                    continue
                probe = _Probe((backend_of(waker), names.get(waker.thread_id, "")))
                in_flight[id(waker)] = (waker, probe)
                waker.deliver(probe)
            for gone in in_flight.keys() - alive:
                del in_flight[gone]
            for tick in list(self.ticks):
                try:
                    tick()
                except Exception:
                    logging.getLogger("bridge.metrics").exception("metrics chore %r failed", tick)


probe = LatenessProbe()
