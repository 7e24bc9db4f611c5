"""The controller behind `Limiter.adaptive`: as many tokens as the loop's lateness target allows.

The signal is the loop's own lateness (bridge._lateness), read as the worst
wait of a control window: threads that hold the GIL make the loop late long
before throughput stops rising, so lateness, not latency or throughput, is
what says "too many". The rule is a gradient step on that signal (the shape
of TCP Vegas and Netflix's gradient limiter, on lateness instead of RTT):

* worse than the target: cut in proportion, `limit *= target / worst`
  (at most halved per window), so one bad window is corrected at once;
* better, and the limiter was saturated (calls waited for a token): grow by
  `limit * (1 - worst / target)`, at least one token: far below the target
  that nearly doubles each window (a slow start that reaches 64 tokens in six
  windows), near it the step shrinks to one token, so it settles under the
  target instead of oscillating around it;
* not saturated: hold, since more tokens would change nothing and the
  window says nothing about what they would cost.

Why not AIMD (+1 / halve): measured in bench/lateness.py, additive growth took
most of a 2-second run to reach the 30-odd tokens a 20 ms HTTP call needs,
and halving on every late window lost a third of the throughput the target
allows. The measurements are in bench/RESULTS.md.
"""

from __future__ import annotations

import time

from bridge._lateness import Lateness

WINDOW = 0.010  # seconds per control step: a few GIL switch intervals, many drains
MAX_CUT = 0.5  # never shrink by more than half in one window

_perf_counter = time.perf_counter


class Controller:
    """Moves a limit between `floor` and `ceiling`: the loop's worst lateness under `target`."""

    __slots__ = ("ceiling", "due", "floor", "limit", "saturated", "source", "target")

    def __init__(self, floor: int, ceiling: int, target: float) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.target = target
        self.limit = float(floor)
        self.due = 0.0
        self.saturated = False  # a call waited for a token during this window
        self.source: Lateness | None = None  # the loop of the latest call

    def step(self, now: float) -> int | None:
        """At the end of a window: the new token count, or None to keep it."""
        self.due = now + WINDOW
        source = self.source
        if source is None:
            return None
        worst, samples = source.take()
        saturated, self.saturated = self.saturated, False
        limit = self.limit
        if samples and worst > self.target:
            limit *= max(MAX_CUT, self.target / worst)
        elif saturated:
            limit += max(1.0, limit * (1.0 - worst / self.target))
        else:
            return None
        self.limit = min(float(self.ceiling), max(float(self.floor), limit))
        return int(self.limit)
