"""The one place this adapter reaches into bridge's private core.

Everything here is what `bridge.lowlevel` (the adapter kit) will export: a
worker pool sized to the connection pool, running a job on a given executor,
and starting a job that nobody awaits. When `bridge.lowlevel` is in main,
these imports become one `from bridge.lowlevel import ...` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge._job import Executor, Job
from bridge._pool import WorkerPool
from bridge._waker import current_waker
from bridge.threads import _run_job

__all__ = ["Executor", "WorkerPool", "run_job", "spawn_job"]


async def run_job(
    fn: Callable[..., Any], args: tuple[Any, ...], executor: Executor, api: str
) -> Any:
    """Run `fn(*args)` on `executor` and await its outcome (cancellable like `to_thread`)."""
    return await _run_job(fn, args, {}, None, executor, api)


def spawn_job(fn: Callable[[], None], executor: Executor, api: str) -> None:
    """Start `fn()` on `executor` from the loop; nobody waits for it and it is never dropped.

    `fn` must handle its own errors: there is no caller to report them to.
    """
    job = Job(fn, (), {}, current_waker(api), executor, None)
    job.cleanup = True
    job.start()
