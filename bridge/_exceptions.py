"""The library's own failures. Drivers' exceptions pass through unchanged."""

from __future__ import annotations


class BridgeError(Exception):
    """Base class for errors raised by bridge itself."""


class DeadlockError(BridgeError, RuntimeError):
    """A sync->async call was made on a thread whose event loop would have to serve it."""


class BlockingCallError(BridgeError, RuntimeError):
    """A known blocking call was made on a thread that runs an event loop (strict mode)."""


class ClosedError(BridgeError, RuntimeError):
    """A bridge object (thread, portal, session) was used after it was closed."""


class NoEventLoopError(BridgeError, RuntimeError):
    """An awaitable API was called with no event loop running on this thread."""
