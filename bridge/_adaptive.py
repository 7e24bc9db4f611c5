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

import os
import time

from bridge._lateness import Lateness

# Where the tokens start: as many calls as the default pool runs without
# waiting (CPU count + 4); the first windows move it from there.
START = (os.cpu_count() or 1) + 4

WINDOW = 0.010  # seconds between looks at the lateness: a couple of GIL switch intervals
MIN_SAMPLES = 4  # wake-ups a window needs before it may justify growth...
MAX_WINDOW = 0.100  # ...unless it has lasted this long (a quiet loop wakes rarely)
MAX_CUT = 0.5  # never shrink by more than half in one window
MAX_GROWTH = 0.5  # nor grow by more than half

_perf_counter = time.perf_counter


class Controller:
    """Moves a limit between `floor` and `ceiling`: the loop's worst lateness under `target`."""

    __slots__ = ("ceiling", "due", "floor", "limit", "saturated", "since", "source", "target")

    def __init__(self, floor: int, ceiling: int, target: float) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.target = target
        self.limit = float(max(floor, min(ceiling, START)))
        self.due = 0.0
        self.since = 0.0  # when the current window began
        self.saturated = False  # a call waited for a token during this window
        self.source: Lateness | None = None  # the loop of the latest call

    def step(self, now: float) -> int | None:
        """Every WINDOW: the new token count, or None to keep it.

        A late wake-up cuts at once; growing needs a window with enough
        wake-ups, all on time: the waker batches completions, so a busy loop
        may see only a few wake-ups per window, and none is not "on time".
        """
        self.due = now + WINDOW
        source = self.source
        if source is None:
            return None
        late = source.worst > self.target
        if not late and source.samples < MIN_SAMPLES and now < self.since + MAX_WINDOW:
            return None  # not enough evidence yet: keep collecting
        worst, samples = source.take()
        saturated, self.saturated = self.saturated, False
        self.since = now
        limit = self.limit
        if late:
            limit *= max(MAX_CUT, self.target / worst)
        elif samples and saturated:
            limit += max(1.0, limit * min(MAX_GROWTH, 1.0 - worst / self.target))
        else:
            return None
        self.limit = min(float(self.ceiling), max(float(self.floor), limit))
        return int(self.limit)
