"""The controller behind `Limiter.adaptive`: as many tokens as the loop's lateness target allows.

The target is a percentile: `target_lateness` is the p99 lateness of the
loop's timers, so one probe sample in a hundred (bridge._lateness) may run
later than the target. The controller tracks that quantile the way
stochastic approximation does (AIMD in log space): each late sample cuts the
limit by CUT, each on-time sample grows it by the step that balances the
cuts when exactly QUANTILE_MISS of the samples are late. The limit settles
where a hundredth of the timers run late — the target's own definition —
with no model of how lateness depends on tokens, which differs per driver
and per machine. Measured against it (bench/RESULTS.md, requests, 5 ms
target, load 2-3): allowing 0.5% late swung more (p99 3.6-8.2 ms); a gentler
cut (x0.9) overshot (p99 up to 8.8 ms); the earlier rule (the worst drain
wait of a 10 ms window, aimed at half the target) gave p99 9.3 ms at 0.40x
the throughput of Limiter(16).

Refinements, each from a measured failure:

* Not our lateness: a late sample counts only if the process's other
  threads used at least MIN_SHARE of a core since the previous one, or the
  loop's own thread at least MIN_OWN. Below both the GIL was mostly free and
  the loop mostly idle, so it was late for another reason (the machine's
  other processes) that fewer tokens would not fix. Measured shares:
  `time.sleep` calls 0.16-0.22 cores at 100 tokens, requests at the 5 ms
  target 0.66-0.79, CPU-bound calls 0.93-0.97; on a loaded machine (load 10)
  sleep-only calls saw 0-3% of samples late at every token count. The loop's
  own share is for drivers the loop itself drives (the DB-API loop transport,
  Cassandra's): no thread of theirs holds the GIL, but each call in flight
  is work for the loop and for the server it shares the cores with, and a
  fixed Limiter(8) on psycopg2's loop transport at saturation held the
  heartbeat's p99 at 0.6-2.1 ms against 21-36 ms unbounded (bench/RESULTS.md).
* One cut per round: after a cut the limit neither falls nor grows until the
  calls running fit in it; until then lateness is the old concurrency's.
  (Without it a cut bumped into the growth: one cut in 326 samples, p99 17 ms.)
* Slow start: doubling every 8 samples until the first counted late sample,
  so a limit far below what the loop can take does not need seconds to climb
  at the quantile's pace; and growth speeds up by one step per RAMP on-time
  samples in a row, so the limit finds a load that has eased.

Growth needs calls that waited for a token (saturation): more tokens than
calls change nothing, and samples with idle tokens say nothing about what
more would cost.
"""

from __future__ import annotations

import math
import os

# Where the tokens start: as many calls as the default pool runs without
# waiting (CPU count + 4); slow start moves it from there.
START = (os.cpu_count() or 1) + 4

QUANTILE_MISS = 0.01  # the share of samples allowed over the target: the target is the p99
CUT = 0.8  # a counted late sample: the limit x0.8
# An on-time sample: the growth that balances CUT when QUANTILE_MISS of the samples are late.
GROW = math.log(1 / CUT) * QUANTILE_MISS / (1 - QUANTILE_MISS)
SLOW_START = math.log(2) / 8  # until the first late sample: doubling every 8 samples
RAMP = 100  # on-time samples in a row after which growth speeds up by one GROW each time
MIN_SHARE = 0.3  # cores of CPU the other threads must have used for a late sample to count
MIN_OWN = 0.4  # ... or the loop's own thread (a loop-driven driver's work)


class Controller:
    """Moves a limit between `floor` and `ceiling` so that the loop's p99 lateness is `target`.

    Fed one probe sample at a time (`feed`), on the loop's thread.
    """

    __slots__ = (
        "ceiling",
        "cut_to",
        "cuts",
        "floor",
        "ignored",
        "lateness",
        "limit",
        "on_time",
        "samples",
        "saturated",
        "shares",
        "starting",
        "target",
    )

    def __init__(self, floor: int, ceiling: int, target: float) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.target = target
        self.limit = float(max(floor, min(ceiling, START)))
        self.saturated = False  # a call waited for a token since the last sample
        self.starting = True  # slow start: no counted late sample yet
        self.on_time = 0  # on-time samples in a row
        self.cut_to: int | None = None  # the last cut's limit, until running calls fit in it
        self.lateness: object = None  # the probe of the loop that called last (Limiter's cache)
        # What it has seen, for statistics and the benchmark:
        self.samples = 0
        self.cuts = 0
        self.ignored = 0  # late samples not counted: the other threads were nearly idle
        self.shares = 0.0  # the sum of the samples' CPU shares (their mean, over `samples`)

    def feed(
        self, late: float, share: float, *, saturated: bool, running: int, own: float = 0.0
    ) -> int:
        """One sample: the loop ran a timer `late` seconds late while the other threads
        used `share` cores and the loop's thread `own`; `running` calls hold tokens now.
        Returns the new token count."""
        self.samples += 1
        self.shares += share
        if self.cut_to is not None and running <= self.cut_to:
            self.cut_to = None  # the last cut has taken effect
        if late > self.target:
            self.on_time = 0
            if share < MIN_SHARE and own < MIN_OWN:
                self.ignored += 1
            elif self.cut_to is None:
                self.starting = False
                self.limit = max(float(self.floor), self.limit * CUT)
                self.cut_to = int(self.limit)
                self.cuts += 1
        elif saturated and self.cut_to is None:
            self.on_time += 1
            step = SLOW_START if self.starting else GROW * (1 + self.on_time // RAMP)
            self.limit = min(float(self.ceiling), self.limit * math.exp(step))
        return int(self.limit)
