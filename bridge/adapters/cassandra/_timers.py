"""Request timers that do not keep finished requests alive.

The driver gives every request a timer whose callback is the request's future
(`ResponseFuture._on_timeout`), and the future holds the timer: a reference
cycle per request. Reference counting cannot free it, so every finished
request waits for the GC's full collection, which then frees some 35,000
objects at once: a 25-35 ms pause every 0.2 s at 15k requests/s, the whole of
the loop's p99 lateness with 120 busy tasks (bench/cassandra.py, measured with
`gc.callbacks`). Both transports break the cycle:

- the loop transport makes its timers itself: `ReleasingTimer` drops its
  callback when cancelled (the driver cancels it as the answer arrives);
- the thread transport keeps the driver's reactor, whose `create_timer` gets
  a `WeakCallback`: the timer holds the future weakly. A request in flight is
  held by its connection until it ends, so its timeout still fires.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from cassandra.connection import Timer  # type: ignore[import-untyped]

__all__ = ["ReleasingTimer", "WeakCallback", "weak_timers"]


class ReleasingTimer(Timer):  # type: ignore[misc]
    """The driver's timer, letting go of its callback when cancelled."""

    def cancel(self) -> None:
        self.canceled = True
        self.callback = None

    def finish(self, time_now: float) -> bool:
        callback = self.callback  # read once: `cancel` may run on another thread
        if self.canceled or callback is None:
            return True
        if time_now >= self.end:
            callback()
            return True
        return False


class WeakCallback:
    """Calls a bound method if its object is still alive; holds the object weakly."""

    __slots__ = ("_function", "_method")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._method: weakref.WeakMethod[Callable[[], None]] | None = None
        self._function: Callable[[], None] | None = None
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            self._method = weakref.WeakMethod(callback)
        else:
            self._function = callback  # a plain function holds no request

    def __call__(self) -> None:
        if self._function is not None:
            self._function()
            return
        assert self._method is not None
        method = self._method()
        if method is not None:
            method()


def weak_timers(connection_class: type[Any]) -> type[Any]:
    """`connection_class` whose `create_timer` holds the callback's object weakly."""
    create_timer = connection_class.create_timer

    def create_weak_timer(cls: type[Any], timeout: float, callback: Callable[[], None]) -> Any:
        return create_timer(timeout, WeakCallback(callback))

    return type(
        connection_class.__name__,
        (connection_class,),
        {"create_timer": classmethod(create_weak_timer), "__module__": __name__},
    )
