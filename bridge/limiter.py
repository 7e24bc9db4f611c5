"""Limiter: caps how many calls use one resource at once.

A limiter is a gate in front of the threads, not a lock the task holds: a
call that finds no token is queued *as a job*, and the thread that returns a
token starts the next queued job itself. The awaiting task parks once, on its
job's completion, however long the queue; and a token is returned only when
the thread's work has really ended, even if the task that asked for it was
cancelled long before.

Tokens are handed over in FIFO order and never barged: a released token goes
to the oldest waiter, so no caller starves. A grant runs on whichever thread
released the token (a worker, a driver's reactor), possibly before `_enter`
has even returned on the loop: an entry's `grant()` must be safe from any
thread, as `Job.grant` (a submit) and `Waker.deliver` are.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from bridge import _metrics
from bridge._waker import Slot, Waker, current_waker


@dataclass(frozen=True)
class LimiterStatistics:
    """How a limiter is used right now, and since it was made."""

    tokens: int  #: the bound
    running: int  #: tokens held now (calls running, or granted and about to)
    waiting: int  #: calls queued for a token
    peak: int  #: the most tokens ever held at once
    total: int  #: tokens granted since creation


class _Entry(Protocol):
    """A claim on a token: a job to start, or a task to wake."""

    has_token: bool
    dropped: bool

    def grant(self) -> None: ...


class Limiter:
    """Caps concurrent use of a resource at `tokens`; pass it as `limiter=` anywhere.

    >>> limiter = Limiter(10, name="db")
    >>> limiter.statistics().running
    0
    """

    def __init__(self, tokens: int, *, name: str | None = None) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise TypeError(f"Limiter(tokens) needs an int, got {tokens!r}")
        if tokens < 1:
            raise ValueError(
                f"Limiter({tokens}) would never let a call run. Pass tokens >= 1 "
                "(the number of calls allowed at once), or pass limiter=None for no limit."
            )
        self.name = name
        self._tokens = tokens
        self._available = tokens
        self._lock = threading.Lock()
        self._waiters: deque[_Entry] = deque()
        self._waiting = 0
        self._peak = 0
        self._total = 0
        self._queued_at: dict[_Entry, float] = {}  # while metrics are on: when each waiter queued
        _metrics.track(_metrics.limiters, self)

    @property
    def tokens(self) -> int:
        return self._tokens

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
            )

    # -- the gate; called by jobs and by `acquire` -------------------------

    def _enter(self, entry: _Entry) -> None:
        """Grant a token now, or queue `entry` for the next one released."""
        with self._lock:
            if self._available and not self._waiters:
                self._available -= 1
                self._take(entry)
            else:
                self._waiters.append(entry)
                self._waiting += 1
                if _metrics.on:
                    self._queued_at[entry] = time.perf_counter()
                return
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
            _metrics.limiter_wait.record(time.perf_counter() - queued_at, (self.name or "",))

    def _release(self) -> None:
        """A token comes back; it goes straight to the oldest live waiter."""
        with self._lock:
            while self._waiters:
                entry = self._waiters.popleft()
                if entry.dropped:
                    continue
                self._waiting -= 1
                self._take(entry)
                break
            else:
                self._available += 1
                return
        entry.grant()

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
