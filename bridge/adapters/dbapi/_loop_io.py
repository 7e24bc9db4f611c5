"""What the loop transport needs from the running backend: wait on a socket, start a task.

asyncio and uvloop have reader and writer callbacks; trio has
`wait_readable`. A wait registers the socket for one readiness and removes it
again, so nothing stays registered between statements: a pooled connection
can be used from whichever loop acquires it next. Background tasks (the
recovery of a connection whose caller was cancelled) are plain asyncio tasks,
or trio system tasks: they must not belong to the task that gave up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.lowlevel import current_loop

log = logging.getLogger("bridge.adapters.dbapi")

_background: set[asyncio.Task[None]] = set()  # strong references: asyncio keeps only weak ones


def _ready(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled, or a second readiness before the reader was removed
        future.set_result(None)


class LoopIO:
    """Socket waits and background tasks on one running loop."""

    loop: object = None

    async def readable(self, fd: int) -> None:
        raise NotImplementedError

    async def writable(self, fd: int) -> None:
        raise NotImplementedError

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError


class AsyncioIO(LoopIO):
    """asyncio and uvloop: one reader (or writer) callback per wait."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop = loop

    async def readable(self, fd: int) -> None:
        loop = self._loop
        future = loop.create_future()
        loop.add_reader(fd, _ready, future)
        try:
            await future
        finally:
            loop.remove_reader(fd)

    async def writable(self, fd: int) -> None:
        loop = self._loop
        future = loop.create_future()
        loop.add_writer(fd, _ready, future)
        try:
            await future
        finally:
            loop.remove_writer(fd)

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        task = self._loop.create_task(_logged(fn))
        _background.add(task)
        task.add_done_callback(_background.discard)


class TrioIO(LoopIO):
    """trio: `wait_readable` / `wait_writable`, and system tasks."""

    def __init__(self, token: object) -> None:
        import trio

        self.loop = token
        self.readable = trio.lowlevel.wait_readable  # type: ignore[method-assign]
        self.writable = trio.lowlevel.wait_writable  # type: ignore[method-assign]
        self._spawn = trio.lowlevel.spawn_system_task

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._spawn(_logged, fn, name="bridge-dbapi-recovery")


async def _logged(fn: Callable[[], Awaitable[None]]) -> None:
    # An error escaping a trio system task would crash the whole run; in an
    # asyncio task it would be "never retrieved". Recovery handles its own.
    try:
        await fn()
    except Exception:
        log.exception("bridge.adapters.dbapi: a connection's recovery failed")


def loop_io(last: LoopIO | None) -> LoopIO:
    """The running loop's `LoopIO`: `last` if it is this loop's, else a new one."""
    key: Any = current_loop()
    if last is not None and last.loop is key:
        return last
    if isinstance(key, asyncio.AbstractEventLoop):
        return AsyncioIO(key)
    return TrioIO(key)
