"""What the loop transport needs from the running backend: wait on a socket, start a task.

asyncio and uvloop have reader callbacks; trio has `wait_readable`. On
asyncio a connection's reader stays registered from one statement to the
next (`SocketWait`): adding and removing it around every wait cost 8 µs per
statement on asyncio, 5 on uvloop, a fifth to a third of the whole client
cost. A readiness that nobody waits for (a notice, the server hanging up)
removes it until the next wait, so the loop never spins on an idle socket.
The registration belongs to one loop: only that loop's thread removes it, and
a socket is closed only after that, because an asyncio selector that still
holds a closed descriptor fails when the number is reused.

Background tasks (the recovery of a connection whose caller was cancelled)
are plain asyncio tasks, or trio system tasks: they must not belong to the
task that gave up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.lowlevel import current_loop

log = logging.getLogger("bridge.adapters.dbapi")

_background: set[asyncio.Task[None]] = set()  # strong references: asyncio keeps only weak ones


def _ready(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled, or a second readiness before the reader was removed
        future.set_result(None)


class SocketWait:
    """One connection's socket, waited on by one loop."""

    loop: object = None
    watching = False  #: a reader is registered with the loop

    async def readable(self) -> None:
        raise NotImplementedError

    async def writable(self) -> None:
        raise NotImplementedError

    def detach(self, then: Callable[[], None] | None = None) -> None:
        """Stop watching, then call `then` (now, or on the loop's thread after the removal)."""
        if then is not None:
            then()


class LoopIO:
    """Socket waits and background tasks on one running loop."""

    loop: object = None

    def socket(self, fd: int) -> SocketWait:
        raise NotImplementedError

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError


class AsyncioSocketWait(SocketWait):
    """asyncio and uvloop: a reader that stays registered between waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = self._loop = loop
        self._fd = fd
        self._waiter: asyncio.Future[None] | None = None
        # `detach` may run on another loop's thread while this loop's thread removes the
        # reader (a readiness nobody waits for): it must not see `watching` False before
        # the removal is done, or it closes the socket under a registration. A lock, not
        # the GIL: only these rare paths take it, never a wait.
        self._unwatching = threading.Lock()

    async def readable(self) -> None:
        loop = self._loop
        if not self.watching:
            loop.add_reader(self._fd, self._on_readable)
            self.watching = True
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self._unwatch()  # nobody waits: stop until the next wait, or the loop spins
        elif not waiter.done():
            waiter.set_result(None)

    async def writable(self) -> None:
        # Rare (a statement larger than the socket's buffer): one writer per wait.
        loop, fd = self._loop, self._fd
        future = loop.create_future()
        loop.add_writer(fd, _ready, future)
        try:
            await future
        finally:
            loop.remove_writer(fd)

    def _unwatch(self) -> None:
        with self._unwatching:
            if self.watching:
                try:
                    self._loop.remove_reader(self._fd)
                except Exception:
                    pass  # the loop is closed: its selector went with it
                self.watching = False  # after the removal: see __init__

    def detach(self, then: Callable[[], None] | None = None) -> None:
        loop = self._loop
        with self._unwatching:
            watching = self.watching
        if watching and loop.is_running() and asyncio._get_running_loop() is not loop:
            # Another thread's loop owns the registration: remove it there, then go on.
            try:
                loop.call_soon_threadsafe(self._unwatch_then, then)
                return
            except RuntimeError:
                pass  # closed meanwhile: nothing is registered any more
        self._unwatch_then(then)

    def _unwatch_then(self, then: Callable[[], None] | None) -> None:
        self._unwatch()
        if then is not None:
            then()


class AsyncioIO(LoopIO):
    """asyncio and uvloop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = self._loop = loop

    def socket(self, fd: int) -> SocketWait:
        return AsyncioSocketWait(self._loop, fd)

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        task = self._loop.create_task(_logged(fn))
        _background.add(task)
        task.add_done_callback(_background.discard)


class TrioSocketWait(SocketWait):
    """trio: `wait_readable` / `wait_writable` per wait (trio keeps nothing registered)."""

    def __init__(self, token: object, fd: int) -> None:
        import trio

        self.loop = token
        self._fd = fd
        self._readable = trio.lowlevel.wait_readable
        self._writable = trio.lowlevel.wait_writable

    async def readable(self) -> None:
        await self._readable(self._fd)

    async def writable(self) -> None:
        await self._writable(self._fd)


class TrioIO(LoopIO):
    """trio: system tasks for the background."""

    def __init__(self, token: object) -> None:
        import trio

        self.loop = token
        self._spawn = trio.lowlevel.spawn_system_task

    def socket(self, fd: int) -> SocketWait:
        return TrioSocketWait(self.loop, fd)

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
