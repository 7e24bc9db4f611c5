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

The lane (bridge._lane). Calls that hold the GIL make the loop late by how
many threads want it, not by how many calls are admitted: one thread working
through 100 admitted calls kept the rate of four threads and cut the p99 from
80 to 11-22 ms, where 3 tokens cost 5-15% of the rate (bench/RESULTS.md,
lateness run P). So at a counted late sample, if the limiter's own calls used
at least LANE_CPU of a core (they may be what holds the GIL), spent at most
TRIAL_IDLE times that on their threads (calls that share the GIL among a few
threads wait for it a few times their CPU; requests' 0.9 ms of CPU comes
with 20 ms or more of waiting for the server) and their tokens are not
already few, the controller first tries the lane instead of a cut. A
trial proves it: the calls must keep KEEP_RATE of their completion rate (a
call that waits on I/O or runs C code without the GIL loses far more on one
thread: it fails within FAST_FAIL samples, or FAST_FAIL_CALLS calls' time) and
the loop must be late at most TRIAL_LATE times in TRIAL samples once only lane
calls run. A failed trial closes the lane and brakes the next one (LANE_BRAKE,
doubling). A kept lane closes when its calls turn out to wait rather than compute (their time over
LANE_IDLE times their CPU: one thread alone holds the GIL whenever it wants
it; the call running counts as it goes, so one that waits for a call queued
behind it, or for a slow server, does not hold the queue until it ends), and
after LANE_HOLD (doubling) to look again; tokens move as always
while it is open, and when they fall to LANE_FLOOR the lane alone cannot hold
the target: it closes (braked), and fewer tokens, whose gaps the loop uses,
take over. A trial that fails on lateness goes there at once: when one
thread computing without pause leaves the loop too late, so do more than
LANE_FLOOR tokens (run P), and cutting down to them by a fifth per round
cost late samples of its own.
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
RATE_WEIGHT = 0.1  # EWMA weight of the newest completion-rate and CPU readings
LANE_CPU = 0.5  # cores the limiter's own calls used: enough to be what holds the GIL
LANE_FLOOR = 2  # tokens at or below this: the lane cannot hold the target, gaps can
TRIAL = 40  # samples a lane is on trial, once only its calls run
TRIAL_LATE = 2  # counted late samples a trial may see (1% of 40 would be 0.4)
TRIAL_WAIT = 40  # samples to wait for calls outside the lane to end before the trial counts
FAST_FAIL = 3  # after this many samples, a lane far below the rate fails at once
FAST_FAIL_CALLS = 3  # ... once this many of its calls should have ended at the rate before it
KEEP_RATE = 0.7  # the rate a lane must keep (one thread gets 0.8x under CPU load: RESULTS.md)
LANE_IDLE = 4.0  # in the lane, calls' time over their CPU beyond this: they wait, not compute
LANE_MEMORY = 0.95  # per sample: the lane's readings weigh about the last 20 samples
LANE_SEEN = 0.0005  # seconds of the lane calls' CPU before their time over CPU is read
TRIAL_IDLE = 8.0  # ... the same on trial, while calls from before the lane still compute
LANE_BRAKE = 1_000  # samples (5 s) before the next trial after a failed one; doubles, up to:
MAX_LANE_BRAKE = 12_000  # (60 s)
LANE_HOLD = 6_000  # samples (30 s) a kept lane stays before looking again; doubles, up to:
MAX_LANE_HOLD = 120_000  # (10 min)


class Controller:
    """Moves a limit between `floor` and `ceiling` so that the loop's p99 lateness is `target`.

    Fed one probe sample at a time (`feed`), on the loop's thread.
    """

    __slots__ = (
        "_brake",
        "_hold",
        "_lane_cpu",
        "_lane_wall",
        "_trial",
        "calls_cpu",
        "calls_wall",
        "ceiling",
        "cut_to",
        "cuts",
        "floor",
        "ignored",
        "lane",
        "lane_opened",
        "lateness",
        "limit",
        "next_trial",
        "on_time",
        "rate",
        "samples",
        "saturated",
        "shares",
        "starting",
        "target",
        "until",
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
        # The lane (see the module):
        self.lane = False  # the limiter's calls run on one thread (bridge._lane)
        self.lane_opened = 0  # times a lane was opened (for statistics and the benchmark)
        self.rate = 0.0  # EWMA of the calls' completions per second
        self.calls_cpu = 0.0  # EWMA of the cores the limiter's calls used
        self.calls_wall = 0.0  # EWMA of the calls' time on threads, per second
        self.next_trial = 0  # the sample from which a lane may be tried
        self.until = 0  # a kept lane looks again at this sample
        self._trial: _Trial | None = None
        self._brake = LANE_BRAKE
        self._hold = LANE_HOLD
        self._lane_cpu = self._lane_wall = 0.0  # the lane's calls since it was kept

    def feed(
        self,
        late: float,
        share: float,
        *,
        saturated: bool,
        running: int,
        own: float = 0.0,
        calls: Calls | None = None,
    ) -> int:
        """One sample: the loop ran a timer `late` seconds late while the other threads
        used `share` cores and the loop's thread `own`; `running` calls hold tokens now;
        `calls` is what the limiter's thread calls did since the last sample.
        Returns the new token count (and sets `lane`)."""
        self.samples += 1
        self.shares += share
        counted = late > self.target and (share >= MIN_SHARE or own >= MIN_OWN)
        if calls is not None and self._lane_step(calls, counted):
            return int(self.limit)  # a lane on trial: the tokens wait for its verdict
        if self.cut_to is not None and running <= self.cut_to:
            self.cut_to = None  # the last cut has taken effect
        if late > self.target:
            self.on_time = 0
            if not counted:
                self.ignored += 1
            elif self.cut_to is None and self._try_lane():
                pass  # the lane, not a cut, answers this one
            elif self.cut_to is None:
                self.starting = False
                self.limit = max(float(self.floor), self.limit * CUT)
                self.cut_to = int(self.limit)
                self.cuts += 1
        elif saturated and self.cut_to is None:
            self.on_time += 1
            step = SLOW_START if self.starting else GROW * (1 + self.on_time // RAMP)
            self.limit = min(float(self.ceiling), self.limit * math.exp(step))
        if self.lane and self.limit <= LANE_FLOOR:
            self._close_lane(failed=True)  # the lane alone cannot hold the target
        return int(self.limit)

    # -- the lane ---------------------------------------------------------------------

    def _lane_step(self, calls: Calls, counted: bool) -> bool:
        """Readings of the calls; a trial's progress. True while a trial decides."""
        if calls.elapsed > 0:
            self.rate += RATE_WEIGHT * (calls.done / calls.elapsed - self.rate)
            self.calls_cpu += RATE_WEIGHT * (calls.cpu / calls.elapsed - self.calls_cpu)
            self.calls_wall += RATE_WEIGHT * (calls.wall / calls.elapsed - self.calls_wall)
        if not self.lane:
            return False
        trial = self._trial
        self._lane_cpu = LANE_MEMORY * self._lane_cpu + calls.lane_cpu
        self._lane_wall = LANE_MEMORY * self._lane_wall + calls.lane_wall
        waits = self._lane_cpu > LANE_SEEN and self._lane_wall > self._lane_cpu * (
            LANE_IDLE if trial is None else TRIAL_IDLE  # on trial, other threads still compute
        )
        if waits:  # alone on a thread, its calls wait (for I/O): they are not what holds the GIL
            self._close_lane(failed=True)
            return False
        if trial is None:  # a kept lane
            if self.samples >= self.until:
                self._hold = min(MAX_LANE_HOLD, 2 * self._hold)
                self._close_lane(failed=False)  # look again: the next late sample reopens it
            return False
        trial.samples += 1
        trial.done += calls.done
        trial.elapsed += calls.elapsed
        expected = trial.rate * trial.elapsed
        # Far slower on one thread: its calls wait, not compute. Judged once a few calls
        # should have ended: calls longer than a sample end in none of the first few.
        judged = trial.samples >= FAST_FAIL and expected >= FAST_FAIL_CALLS
        if judged and trial.done < 0.3 * expected:
            self._close_lane(failed=True)
            return False
        if calls.outside > 0 and trial.waited < TRIAL_WAIT:
            trial.waited += 1  # calls started before the lane still run beside it
            trial.samples = 0
            trial.done, trial.elapsed = 0, 0.0
            return True
        trial.late += counted
        if trial.late > TRIAL_LATE:
            # One thread computing without pause is too many for this target: only the
            # gaps of few tokens are left (run P: 2 tokens are no later than the lane).
            self._close_lane(failed=True)
            if self.limit > LANE_FLOOR / CUT:
                self.limit = LANE_FLOOR / CUT  # this late sample's cut takes it to the floor
            return False
        if trial.samples >= TRIAL:
            if trial.done >= KEEP_RATE * expected:
                self._trial = None  # kept
                self._brake = LANE_BRAKE
                self.until = self.samples + self._hold
            else:
                self._close_lane(failed=True)
        return True

    def _try_lane(self) -> bool:
        """At a counted late sample: open a lane on trial, if its calls may be what is late."""
        if (
            self.lane
            or self.samples < self.next_trial
            or self.calls_cpu < LANE_CPU
            or self.calls_wall > TRIAL_IDLE * self.calls_cpu  # they wait more than the GIL explains
            or self.limit <= LANE_FLOOR
            or self.rate <= 0
        ):
            return False
        self.lane = True
        self.lane_opened += 1
        self._trial = _Trial(self.rate)
        self._lane_cpu = self._lane_wall = 0.0
        return True

    def lane_gone(self) -> None:
        """After a fork: the lane's thread and calls stayed in the parent."""
        self._close_lane(failed=False)

    def _close_lane(self, *, failed: bool) -> None:
        self.lane = False
        self._trial = None
        if failed:
            self.next_trial = self.samples + self._brake
            self._brake = min(MAX_LANE_BRAKE, 2 * self._brake)


class Calls:
    """What a limiter's thread calls did between two samples."""

    __slots__ = ("cpu", "done", "elapsed", "lane_cpu", "lane_wall", "outside", "wall")

    def __init__(
        self,
        done: int,
        cpu: float,
        wall: float,
        elapsed: float,
        outside: int,
        lane_cpu: float = 0.0,
        lane_wall: float = 0.0,
    ) -> None:
        self.done = done  # calls that ended
        self.cpu = cpu  # their threads' CPU time, seconds
        self.wall = wall  # their time on a thread, seconds
        self.elapsed = elapsed  # since the previous sample, seconds
        self.outside = outside  # calls holding tokens that are not in the lane
        self.lane_cpu = lane_cpu  # of those calls, the ones run in the lane: CPU, seconds
        self.lane_wall = lane_wall  # ... and time


class _Trial:
    """A lane on trial: what it must keep, and what it has shown."""

    __slots__ = ("done", "elapsed", "late", "rate", "samples", "waited")

    def __init__(self, rate: float) -> None:
        self.rate = rate  # completions per second before it opened
        self.samples = 0
        self.done = 0
        self.elapsed = 0.0
        self.late = 0
        self.waited = 0
