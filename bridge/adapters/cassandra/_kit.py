"""Every name the Cassandra adapter takes from bridge's core, imported in this one place.

The adapter uses the public API and `bridge.lowlevel` (the adapter kit): its
`_Request` is a limiter entry of its own (one token per request, returned when
the driver calls back), because a response decoded on the loop thread wakes
its task directly instead of through the waker. `time_left` reads the calling
task's deadline, which becomes the driver's request timeout.
"""

from __future__ import annotations

from bridge.lowlevel import (
    Completion,
    Slot,
    Waker,
    current_waker,
    limiter_drop,
    limiter_enter,
    limiter_release,
    time_left,
    yield_to_passed_deadline,
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
    "yield_to_passed_deadline",
]
