"""Limiter: caps how many calls use one resource at once.

A limiter is a gate in front of the threads, not a lock the task holds: a
call that finds no token is queued *as a job*, and the thread that returns a
token starts the next queued job itself. The awaiting task parks once, on its
job's completion, however long the queue; and a token is returned only when
the thread's work has really ended, even if the task that asked for it was
cancelled long before.

Tokens are handed over in FIFO order and never barged: a released token goes
to the oldest waiter, so no caller starves. The bound can move at run time
(`limiter.tokens = n`, or the controller of `Limiter.adaptive`): growing it
grants waiting calls at once; shrinking it lets the calls running finish and
retires their tokens as they come back. A grant runs on whichever thread
released the token (a worker, a driver's reactor), possibly before `_enter`
has even returned on the loop: an entry's `grant()` must be safe from any
thread, as `Job.grant` (a submit) and `Waker.deliver` are.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from bridge import _metrics
from bridge._adaptive import Calls, Controller
from bridge._job import origin
from bridge._lane import Lane
from bridge._pool import default_pool
from bridge._waker import Slot, Waker, current_waker

_perf_counter = time.perf_counter


@dataclass(frozen=True)
class LimiterStatistics:
    """How a limiter is used right now, and since it was made."""

    tokens: int  #: the bound
    running: int  #: tokens held now (calls running, or granted and about to)
    waiting: int  #: calls queued for a token
    peak: int  #: the most tokens ever held at once
    total: int  #: tokens granted since creation
    lane: bool = False  #: an adaptive limiter's GIL-bound calls run one after another now


class _Entry(Protocol):
    """A claim on a token: a job to start, or a task to wake."""

    has_token: bool
    dropped: bool
    waker: Waker

    def grant(self) -> None: ...


class Limiter:
    """Caps concurrent use of a resource at `tokens`; pass it as `limiter=` anywhere.

    After `os.fork()` the child's copy has all its tokens free (the calls that
    held them stayed in the parent) and no waiters.

    >>> limiter = Limiter(10, name="db")
    >>> limiter.statistics().running
    0
    """

    def __init__(self, tokens: int, *, name: str | None = None) -> None:
        _check_tokens(tokens, "Limiter({})")
        self.name = name
        self._tokens = tokens
        self._available = tokens  # tokens - running; below 0 after a shrink, until calls end
        self._lock = threading.Lock()
        self._waiters: deque[_Entry] = deque()
        self._waiting = 0
        self._peak = 0
        self._total = 0
        self._queued_at: dict[_Entry, float] = {}  # while metrics are on: when each waiter queued
        _metrics.track(_metrics.limiters, self)
        self._control: Controller | None = None
        self._lane: Lane | None = None  # while adaptive calls run one after another (bridge._lane)
        self._calls = _CallsSoFar()  # adaptive: what the thread calls did since the last sample
        _limiters.add(self)

    @classmethod
    def adaptive(
        cls,
        max: int = 100,
        *,
        min: int = 1,
        target_lateness: float = 0.005,
        name: str | None = None,
    ) -> Limiter:
        """A limiter whose tokens move between `min` and `max` to keep the loop on time.

        Threads that hold the GIL make the event loop late (a timer due now
        runs 5, 50, 500 ms later) long before they stop adding throughput. This
        limiter measures the lateness of the loops whose calls it admits (a
        probe timer on each, while it has calls) and takes as many tokens as
        keep their p99 lateness at `target_lateness` (seconds): few for
        CPU-heavy calls, up to `max` for calls that mostly wait. Use it
        wherever a `Limiter` goes.

        >>> limiter = Limiter.adaptive(max=64, target_lateness=0.005, name="api")
        >>> limiter.max_tokens, limiter.adaptive_target
        (64, 0.005)
        """
        _check_tokens(max, "Limiter.adaptive(max={})")
        _check_tokens(min, "Limiter.adaptive(min={})")
        if min > max:
            raise ValueError(
                f"Limiter.adaptive(min={min}, max={max}): min is the floor the tokens never go "
                "below, so it must be <= max."
            )
        if (
            isinstance(target_lateness, bool)
            or not isinstance(target_lateness, int | float)
            or not math.isfinite(target_lateness)
            or target_lateness <= 0
        ):
            raise ValueError(
                f"Limiter.adaptive(target_lateness={target_lateness!r}) must be a positive "
                "number of seconds: how late the loop may run, e.g. 0.005 for 5 ms."
            )
        control = Controller(min, max, float(target_lateness))
        limiter = cls(int(control.limit), name=name)
        limiter._control = control
        return limiter

    @property
    def tokens(self) -> int:
        """How many calls may run at once now; settable (not on an adaptive limiter)."""
        return self._tokens

    @tokens.setter
    def tokens(self, tokens: int) -> None:
        _check_tokens(tokens, "limiter.tokens = {}")
        if self._control is not None:
            raise ValueError(
                f"{self!r} is adaptive: it sets its own tokens to hold its lateness target. "
                "Use Limiter(n) for a bound you set yourself."
            )
        with self._lock:
            granted = self._resize(tokens)
        for entry in granted:
            entry.grant()

    @property
    def max_tokens(self) -> int:
        """The most tokens this limiter may ever hand out at once: size thread pools to it."""
        control = self._control
        return control.ceiling if control is not None else self._tokens

    @property
    def adaptive_target(self) -> float | None:
        """The lateness target (seconds) of an adaptive limiter; None for a fixed one."""
        control = self._control
        return control.target if control is not None else None

    def __repr__(self) -> str:
        s = self.statistics()
        label = f" {self.name!r}" if self.name else ""
        return f"<Limiter{label} {s.running}/{s.tokens} running, {s.waiting} waiting>"

    def statistics(self) -> LimiterStatistics:
        with self._lock:
            return LimiterStatistics(
                tokens=self._tokens,
                running=self._tokens - self._available,
                waiting=self._waiting,
                peak=self._peak,
                total=self._total,
                lane=self._lane is not None,
            )

    # -- the gate; called by jobs and by `acquire` -------------------------

    def _enter(self, entry: _Entry) -> None:
        """Grant a token now, or queue `entry` for the next one released."""
        control = self._control
        if control is not None:
            lateness = entry.waker.lateness
            if lateness is not control.lateness or not lateness.running:
                self._watch(control, entry.waker)
        with self._lock:
            now = self._available > 0 and not self._waiting  # no live waiter to overtake
            if now:
                self._available -= 1
                self._take(entry)
            else:
                self._waiters.append(entry)
                self._waiting += 1
                if _metrics.on:
                    self._queued_at[entry] = _perf_counter()
                if control is not None:
                    control.saturated = True
        if now:
            entry.grant()

    def _take(self, entry: _Entry) -> None:
        entry.has_token = True
        self._total += 1
        running = self._tokens - self._available
        if running > self._peak:
            self._peak = running
        if self._queued_at:  # metrics on, and calls queued: how long did this one wait?
            self._waited(entry)

    def _waited(self, entry: _Entry) -> None:
        queued_at = self._queued_at.pop(entry, None)
        if queued_at is not None:
            _metrics.limiter_wait.record(_perf_counter() - queued_at, (self.name or "",))

    def _release(self, cpu: float = -1.0, wall: float = 0.0) -> None:
        """A token comes back; it goes straight to the oldest live waiter.

        A thread call of an adaptive limiter says how much CPU (`cpu`) it used in
        how much time (`wall`), seconds."""
        with self._lock:
            if cpu >= 0:
                calls = self._calls
                calls.done += 1
                calls.cpu += cpu
                calls.wall += wall
            self._available += 1
            if self._available <= 0 or not self._waiters:
                return
            granted = self._hand_out()  # also sweeps out dropped waiters
        for entry in granted:
            entry.grant()

    def _hand_out(self) -> list[_Entry]:
        """Under the lock: give free tokens to the oldest live waiters; the caller grants them."""
        granted = []
        waiters = self._waiters
        while self._available > 0 and waiters:
            entry = waiters.popleft()
            if entry.dropped:
                continue
            self._waiting -= 1
            self._available -= 1
            self._take(entry)
            granted.append(entry)
        return granted

    def _resize(self, tokens: int) -> list[_Entry]:
        """Under the lock: move the bound; waiters that now fit are returned, to be granted."""
        self._available += tokens - self._tokens
        self._tokens = tokens
        return self._hand_out()

    # -- the adaptive part: fed by the lateness probe of each loop it serves --

    def _watch(self, control: Controller, waker: Waker) -> None:
        """A call from a loop whose probe does not feed this limiter (yet, or any more)."""
        control.lateness = waker.lateness
        waker.lateness.watch(self, waker)

    def _lateness(self, late: float, share: float, own: float = 0.0) -> bool:
        """On a loop's thread, from its probe: one sample. True while calls run or wait."""
        control = self._control
        assert control is not None
        with self._lock:
            lane = self._lane
            running = self._tokens - self._available
            saturated = control.saturated or self._waiting > 0
            control.saturated = False
            calls = self._calls.take(_perf_counter(), running - (lane.held if lane else 0))
            if lane is not None:
                calls.lane_cpu, calls.lane_wall = lane.take()
            tokens = control.feed(
                late, share, saturated=saturated, running=running, own=own, calls=calls
            )
            granted = self._resize(tokens) if tokens != self._tokens else _NONE
            busy = running > 0 or self._waiting > 0
            # Under the lock: the probes of loops in other threads feed this limiter too,
            # and two that both saw no lane would each open one (the first then never closes).
            closed = None
            if control.lane != (lane is not None):
                if lane is None:
                    self._lane = Lane(default_pool())
                else:
                    self._lane, closed = None, lane
        if closed is not None:
            closed.close()
        for entry in granted:
            entry.grant()
        return busy

    def _after_fork_in_child(self, held: int) -> None:
        """Only the forking thread lives on in a child: the calls that held tokens, the
        waiters (tasks of the parent's loops) and whoever held the lock stayed in the
        parent. All tokens are free again but the `held` ones of the forking thread's
        own call, which it returns when that call ends."""
        self._lock = threading.Lock()
        self._available = self._tokens - held
        self._waiters = deque()
        self._waiting = 0
        self._queued_at = {}
        self._lane = None  # its calls and runner stayed in the parent
        self._calls = _CallsSoFar()
        if self._control is not None:
            self._control.lane_gone()

    def _drop(self, entry: _Entry) -> None:
        """`entry` was cancelled before it used its token (or before it got one)."""
        with self._lock:
            if not entry.has_token:
                entry.dropped = True
                self._waiting -= 1
                self._queued_at.pop(entry, None)
                return
            entry.has_token = False
        self._release()

    # -- holding a token from async code ---------------------------------

    async def acquire(self) -> None:
        """Wait for a token; pair with `release()`, or use `async with limiter:`."""
        waker = current_waker("Limiter.acquire()")
        await waker.wait(_TokenRequest(self, waker))

    def release(self) -> None:
        """Give back a token taken with `acquire()`; safe from any thread."""
        with self._lock:
            unbalanced = self._available >= self._tokens
        if unbalanced:
            raise RuntimeError(
                f"{self!r}: release() was called more often than acquire(); "
                "use `async with limiter:` to keep them paired"
            )
        self._release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


_NONE: list[_Entry] = []  # shared empty result: never appended to


class _CallsSoFar:
    """An adaptive limiter's thread calls since its last sample; under the limiter's lock."""

    __slots__ = ("cpu", "done", "since", "wall")

    def __init__(self) -> None:
        self.done = 0
        self.cpu = self.wall = 0.0
        self.since = _perf_counter()

    def take(self, now: float, outside: int) -> Calls:
        calls = Calls(self.done, self.cpu, self.wall, now - self.since, max(0, outside))
        self.done = 0
        self.cpu = self.wall = 0.0
        self.since = now
        return calls


def _check_tokens(tokens: object, what: str) -> None:
    """`what` is how the user wrote it, with {} for the value: "Limiter({})"."""
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise TypeError(f"{what.format('tokens')} needs an int, got {tokens!r}")
    if tokens < 1:
        raise ValueError(
            f"{what.format(tokens)} would never let a call run. Pass tokens >= 1 "
            "(the number of calls allowed at once), or pass limiter=None for no limit."
        )


class _TokenRequest(Slot):
    """A task waiting in a limiter's queue; granted by waking it through its loop's waker."""

    __slots__ = ("dropped", "has_token", "limiter")

    def __init__(self, limiter: Limiter, waker: Waker) -> None:
        super().__init__(waker)
        self.limiter = limiter
        self.has_token = False
        self.dropped = False

    def start(self) -> None:
        self.limiter._enter(self)

    def grant(self) -> None:
        self.waker.deliver(self)  # Slot.complete then wakes the task on its loop

    def cancel(self) -> None:
        # Granted but not yet seen by the task, or still queued: either way the
        # limiter takes it back (a granted token goes to the next waiter).
        self.handle = None
        self.limiter._drop(self)


_limiters: weakref.WeakSet[Limiter] = weakref.WeakSet()


def _reset_limiters_after_fork() -> None:
    job = origin.job  # the call running on the forking thread, if it is a worker
    mine = job.limiter if job is not None and job.has_token else None
    for limiter in list(_limiters):
        limiter._after_fork_in_child(1 if limiter is mine else 0)


os.register_at_fork(after_in_child=_reset_limiters_after_fork)
