"""Every name the Cassandra adapter takes from bridge's core, imported in this one place.

The adapter is meant to use only the public API and `bridge.lowlevel` (the
adapter kit). Until `bridge.lowlevel` exists, the kit's names come from the
private modules below: switching is an edit of this file alone.
"""

from __future__ import annotations

import math

import anyio

from bridge._waker import Completion, Slot, Waker, current_waker

__all__ = ["Completion", "Slot", "Waker", "current_waker", "time_left"]


def time_left() -> float:
    """Seconds until the calling task's effective deadline (anyio/trio cancel scopes); inf if none.

    asyncio's own `asyncio.timeout()` keeps its deadline where no library can
    read it, so under it this says inf and the driver's own timeout applies.
    """
    deadline = anyio.current_effective_deadline()
    if deadline == math.inf:
        return math.inf
    return deadline - anyio.current_time()
