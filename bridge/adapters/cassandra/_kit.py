"""Every name the Cassandra adapter takes from bridge's core, imported in this one place.

The adapter uses the public API and `bridge.lowlevel` (the adapter kit). Two
things it needs are not in the kit yet, and stay here so that switching is an
edit of this file alone:

- a limiter entry of its own (`_Request`: one token per request, granted
  on the loop, returned when the driver calls back) -- the kit's
  `wait_for_callback` takes a limiter but always completes through the waker,
  while a response decoded on the loop thread should wake its task directly;
- the time left before the calling task's deadline (`time_left`).
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import sniffio

from bridge.limiter import Limiter
from bridge.lowlevel import Completion, Slot, Waker, current_waker

__all__ = [
    "Completion",
    "Slot",
    "Waker",
    "current_waker",
    "limiter_drop",
    "limiter_enter",
    "limiter_release",
    "time_left",
]


def limiter_enter(limiter: Limiter, entry: Any) -> None:
    """Queue `entry` for a token: `entry.grant()` runs now if one is free, else when one returns."""
    limiter._enter(entry)


def limiter_release(limiter: Limiter) -> None:
    """Return a token taken by `limiter_enter` (from any thread)."""
    limiter._release()


def limiter_drop(limiter: Limiter, entry: Any) -> None:
    """`entry` gave up before it was granted: its place in the queue (or its token) goes on."""
    limiter._drop(entry)


def time_left() -> float:
    """Seconds until the calling task's effective deadline (anyio/trio cancel scopes); inf if none.

    asyncio's own `asyncio.timeout()` keeps its deadline where no library can
    read it, so under it this says inf and the driver's own timeout applies.
    """
    if sniffio.thread_local.name == "trio":  # trio's own calls: no backend lookup
        import trio

        deadline = trio.current_effective_deadline()
        return deadline if deadline == math.inf else deadline - trio.current_time()
    deadline = anyio.current_effective_deadline()
    if deadline == math.inf:
        return math.inf
    return deadline - anyio.current_time()
