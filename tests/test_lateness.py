"""The lateness probe: it runs only for adaptive limiters, and its samples move their tokens.

Directions only, never times: how fast tokens move depends on the machine.
"""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from bridge import Limiter, asyncify
from bridge._adaptive import START
from bridge._waker import current_waker
from tests.support import eventually

pytestmark = pytest.mark.anyio


def burn() -> int:
    """About a millisecond of pure-Python bytecode: holds the GIL the whole time."""
    total = 0
    for i in range(20_000):
        total += i * i % 7
    return total


async def test_the_probe_runs_only_while_an_adaptive_limiter_has_calls() -> None:
    lateness = current_waker().lateness
    await eventually(lambda: not lateness.running)  # an earlier test's probe on this loop
    gate = threading.Event()
    fixed_limiter = Limiter(4)
    fixed = asyncify(gate.wait, limiter=fixed_limiter)
    adaptive_limiter = Limiter.adaptive(max=8)
    adaptive = asyncify(gate.wait, limiter=adaptive_limiter)
    control = adaptive_limiter._control
    assert control is not None
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(fixed, 30)
        await eventually(lambda: fixed_limiter.statistics().running == 4)
        assert not lateness.running  # a plain limiter starts no probe

        for _ in range(4):
            tg.start_soon(adaptive, 30)
        await eventually(lambda: control.samples >= 3)  # calls running: the probe samples
        assert lateness.running
        gate.set()
    await eventually(lambda: not lateness.running)  # idle: the probe stops itself
    stopped_at = control.samples
    await anyio.sleep(0.05)
    assert control.samples == stopped_at

    gate.clear()
    async with anyio.create_task_group() as tg:  # the next call starts it again
        tg.start_soon(adaptive, 30)
        await eventually(lambda: control.samples > stopped_at)
        gate.set()


async def test_gil_pressure_gets_a_lane_or_fewer_tokens_and_waiting_calls_undo_it() -> None:
    limiter = Limiter.adaptive(max=64, min=1, target_lateness=0.005)
    control = limiter._control
    assert control is not None
    burning = asyncify(burn, limiter=limiter)
    napping = asyncify(time.sleep, limiter=limiter)
    assert limiter.tokens == min(64, START)
    phase = "burn"

    async def caller() -> None:
        while phase != "done":
            if phase == "burn":
                await burning()
            else:
                await napping(0.002)

    async with anyio.create_task_group() as tg:
        for _ in range(64):
            tg.start_soon(caller)
        # Threads running bytecode hold the GIL: the loop's timers run late, and the
        # controller answers: the calls go to one thread (the lane), or tokens fall.
        await eventually(lambda: control.lane or limiter.tokens < START, limit=120)
        phase = "sleep"
        low = limiter.tokens
        # Threads that only wait use no CPU: lateness, if any, is not theirs, tokens
        # rise (and a lane closes: alone on its thread, each call only waits).
        await eventually(lambda: limiter.tokens > low and not control.lane, limit=120)
        phase = "done"
    assert control.cuts >= 1 or control.lane_opened >= 1
