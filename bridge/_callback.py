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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bridge._waker import Waker, current_waker

if TYPE_CHECKING:
    from bridge.limiter import Limiter

T = TypeVar("T")


class Callback(Generic[T]):
    """The completion handle a driver calls: `set_result` or `set_exception`, from any thread."""

    __slots__ = (
        "_begun",
        "_claim",
        "_limiter",
        "_on_cancel",
        "_start",
        "dropped",
        "error",
        "handle",
        "has_token",
        "result",
        "waker",
    )

    def __init__(
        self,
        waker: Waker,
        start: Callable[[Callback[T]], object],
        on_cancel: Callable[[], object] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.waker = waker
        self.handle: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._start = start
        self._on_cancel = on_cancel
        self._limiter = limiter
        self.has_token = False  # holds one of the limiter's tokens (the limiter sets it)
        self.dropped = False  # cancelled while queued for a token
        # One-element lists popped by the first outcome, and by whichever of
        # "the request starts" / "the task gives up first" comes first: `list.pop`
        # is atomic (under the GIL, and per-object locked on free-threaded builds).
        self._claim = [True]
        self._begun = [True]

    def set_result(self, value: T) -> None:
        """Complete the waiting task with `value`; safe from any thread, first outcome wins."""
        try:
            self._claim.pop()
        except IndexError:
            return
        self.result = value
        self._settled()

    def set_exception(self, error: BaseException) -> None:
        """Complete the waiting task with `error` raised; safe from any thread."""
        try:
            self._claim.pop()
        except IndexError:
            return
        self.error = error
        self._settled()

    def _settled(self) -> None:
        if self.has_token:
            self.has_token = False
            assert self._limiter is not None
            self._limiter._release()  # the request has really ended: its token goes on
        self.waker.deliver(self)

    # -- the Parked protocol, driven by Waker.wait ----------------------------

    def start(self) -> None:
        if self._limiter is None:
            self.grant()
        else:
            self._limiter._enter(self)  # grant() now, or when a token comes back

    def grant(self) -> None:
        """Start the request (on the loop, or on the thread that returned a token)."""
        try:
            self._begun.pop()
        except IndexError:  # the task gave up while queued; the limiter took its token back
            return
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

    def cancel(self) -> None:
        self.handle = None  # a late outcome is dropped
        try:
            self._begun.pop()
        except IndexError:  # started: stop it if we can; its token returns with its outcome
            on_cancel, self._on_cancel = self._on_cancel, None
            if on_cancel is not None:
                on_cancel()
            return
        self._start = None  # type: ignore[assignment]
        if self._limiter is not None:
            self._limiter._drop(self)  # never started: its place (or token) goes on


async def wait_for_callback(
    start: Callable[[Callback[T]], object],
    *,
    on_cancel: Callable[[], object] | None = None,
    limiter: Limiter | None = None,
    what: str = "wait_for_callback()",
) -> T:
    """Call `start(callback)`, then park until the callback is completed; return its result.

    `start` hands `callback.set_result` / `callback.set_exception` to the
    driver; they may fire at once on this thread or later on any other. With
    a `limiter`, `start` runs once a token is free (on the loop, or on the
    thread that gave a token back) and the token is held until the outcome
    arrives, even if the task gave up first. If the task is cancelled, a
    request not yet started never starts; a started one gets `on_cancel()`
    (stop it there if the driver can) and its late outcome is dropped.
    """
    waker = current_waker(what)
    return await waker.wait(Callback(waker, start, on_cancel, limiter))  # type: ignore[no-any-return]
