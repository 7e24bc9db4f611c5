"""Every name the Cassandra adapter takes from bridge's core, imported in this one place.

The adapter uses the public API and `bridge.lowlevel` (the adapter kit): its
`_Request` is a limiter entry of its own (one token per request, returned when
the driver calls back), because a response decoded on the loop thread wakes
its task directly instead of through the waker. `time_left` reads the calling
task's deadline through anyio/trio's public API.
"""

from __future__ import annotations

import math

import anyio
import sniffio

from bridge.lowlevel import (
    Completion,
    Slot,
    Waker,
    current_waker,
    limiter_drop,
    limiter_enter,
    limiter_release,
)

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
