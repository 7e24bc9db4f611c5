"""Shared test tools: waiting on state that has no event of its own."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def eventually(predicate: Callable[[], bool], *, limit: float = 30.0) -> None:
    """Wait until `predicate()` holds, checking at each loop turn; fail after a generous timeout.

    For state changed by other threads (limiter statistics, pool counters) that
    offers nothing to await. The timeout only bounds a hang; it is never the
    thing a test measures.
    """
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the state lives in other threads
            await anyio.sleep(0.001)
