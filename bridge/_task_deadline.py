"""The calling task's deadline, on the loop: what an adapter cuts a driver's timeout to.

An adapter that passes the time left to a driver (a request timeout, a socket
timeout) makes the driver's timeout and the cancel scope's deadline fall due
at about the same moment. On a late loop the driver's "timed out" can reach
the task first, and the caller would see the driver's error instead of the
`TimeoutError` its `fail_after` promises. `yield_to_deadline()` settles that
race in the deadline's favour.
"""

from __future__ import annotations

import math

import anyio
import sniffio

__all__ = ["time_left", "yield_to_deadline", "yield_to_passed_deadline"]

# Past the deadline by this much, this task's timer is due after the deadline's
# own (asyncio's heap and libuv order timers by due time, libuv ties by start
# order; trio expires deadlines before it wakes sleepers).
_BEHIND: float = 0.001


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


async def yield_to_deadline() -> None:
    """Wait until the calling task's deadline has been delivered, if it has one.

    Call it where a driver's timeout, cut to the time left, has just ended a
    call, then re-raise the driver's error: when the deadline has passed, its
    cancel scope cancels this wait and the caller sees its own `TimeoutError`;
    when there is no deadline (or a shield hides it) this returns, and the
    driver's error stands. A plain checkpoint is not enough: on asyncio a
    task woken before the deadline's timer runs passes `sleep(0)` untouched.
    """
    left = time_left()
    if left < math.inf:
        await anyio.sleep(max(left, 0.0) + _BEHIND)


async def yield_to_passed_deadline() -> None:
    """`yield_to_deadline()` only if the calling task's deadline has already passed.

    For a driver error that may be the deadline's echo (a timeout cut to it, a
    server's statement timeout) or may be a shorter timeout of the caller's own,
    which must stand: only when the deadline has passed is it the deadline's.
    """
    if time_left() <= 0:
        await yield_to_deadline()
