"""bridge: blocking, thread-based drivers from asyncio, uvloop and trio, never blocking the loop."""

from bridge._exceptions import (
    BlockingCallError,
    BridgeError,
    ClosedError,
    DeadlockError,
    NoEventLoopError,
)
from bridge._pool import PoolStatistics, default_pool
from bridge.limiter import Limiter, LimiterStatistics
from bridge.runner import run
from bridge.threads import DedicatedThread, asyncify, to_thread

__version__ = "0.1.0"

__all__ = [
    "BlockingCallError",
    "BridgeError",
    "ClosedError",
    "DeadlockError",
    "DedicatedThread",
    "Limiter",
    "LimiterStatistics",
    "NoEventLoopError",
    "PoolStatistics",
    "asyncify",
    "default_pool",
    "run",
    "to_thread",
]
