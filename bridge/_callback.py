"""Park a task until a callback, fired on any thread, hands it an outcome.

This is how a driver with its own completion callbacks (cassandra's
`ResponseFuture.add_callbacks`, a C client's `on_done`, a
`concurrent.futures.Future`) is awaited without a thread: the callback stores
the outcome and queues the waiting task's wake-up on its loop's waker, so many
callbacks finishing at once cost one loop wake-up.

The first outcome wins; later ones (a driver calling both its callback and its
errback, or calling back after the task gave up) are dropped, never reported
as unretrieved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bridge._waker import Waker, current_waker

T = TypeVar("T")


class Callback(Generic[T]):
    """The completion handle a driver calls: `set_result` or `set_exception`, from any thread."""

    __slots__ = ("_claim", "_on_cancel", "_start", "error", "handle", "result", "waker")

    def __init__(
        self,
        waker: Waker,
        start: Callable[[Callback[T]], object],
        on_cancel: Callable[[], object] | None = None,
    ) -> None:
        self.waker = waker
        self.handle: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._start = start
        self._on_cancel = on_cancel
        # One-element list popped by the first outcome: `list.pop` is atomic
        # (under the GIL, and per-object locked on free-threaded builds).
        self._claim = [True]

    def set_result(self, value: T) -> None:
        """Complete the waiting task with `value`; safe from any thread, first outcome wins."""
        try:
            self._claim.pop()
        except IndexError:
            return
        self.result = value
        self.waker.deliver(self)

    def set_exception(self, error: BaseException) -> None:
        """Complete the waiting task with `error` raised; safe from any thread."""
        try:
            self._claim.pop()
        except IndexError:
            return
        self.error = error
        self.waker.deliver(self)

    # -- the Parked protocol, driven by Waker.wait ----------------------------

    def start(self) -> None:
        start, self._start = self._start, None  # type: ignore[assignment]
        try:
            start(self)
        except BaseException as exc:  # the driver refused the request: that is the outcome
            self.set_exception(exc)

    def complete(self) -> None:
        handle = self.handle
        if handle is not None:
            self.handle = None
            error, self.error = self.error, None  # no cycle through the traceback's frames
            result, self.result = self.result, None
            self.waker.finish(handle, result, error)

    def fail(self, error: BaseException) -> None:
        """The waker could not deliver the outcome: the task gets `error` instead."""
        handle = self.handle
        if handle is not None:
            self.handle = None
            self.waker.finish(handle, None, error)

    def cancel(self) -> None:
        self.handle = None  # a late outcome is dropped
        on_cancel, self._on_cancel = self._on_cancel, None
        if on_cancel is not None:
            on_cancel()


async def wait_for_callback(
    start: Callable[[Callback[T]], object],
    *,
    on_cancel: Callable[[], object] | None = None,
    what: str = "wait_for_callback()",
) -> T:
    """Call `start(callback)` on the loop, then park until the callback is completed.

    `start` hands `callback.set_result` / `callback.set_exception` to the
    driver; they may fire at once on this thread or later on any other. If the
    task is cancelled first, `on_cancel()` runs on the loop (stop the request
    there if the driver can) and a late outcome is dropped.
    """
    waker = current_waker(what)
    return await waker.wait(Callback(waker, start, on_cancel))  # type: ignore[no-any-return]
