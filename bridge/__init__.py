"""bridge: blocking, thread-based drivers from asyncio, uvloop and trio, never blocking the loop."""

from bridge._exceptions import (
    BlockingCallError,
    BridgeError,
    ClosedError,
    DeadlockError,
    NoEventLoopError,
)
from bridge._pool import PoolStatistics, WorkerPool, blocking, default_pool
from bridge._strict import strict
from bridge.deadline import check_cancelled, current_deadline
from bridge.futures import to_future, wrap_future
from bridge.iterate import AsyncIterator, iterate
from bridge.limiter import Limiter, LimiterStatistics
from bridge.portal import Portal, run_on_loop, shared_portal, syncify
from bridge.proxy import AsyncProxy, unwrap, wrap
from bridge.runner import run
from bridge.threads import DedicatedThread, asyncify, to_thread
from bridge.watchdog import BlockReport, BlockStatistics, LoopWatchdog

__version__ = "0.1.0"

__all__ = [
    "AsyncIterator",
    "AsyncProxy",
    "BlockReport",
    "BlockStatistics",
    "BlockingCallError",
    "BridgeError",
    "ClosedError",
    "DeadlockError",
    "DedicatedThread",
    "Limiter",
    "LimiterStatistics",
    "LoopWatchdog",
    "NoEventLoopError",
    "PoolStatistics",
    "Portal",
    "WorkerPool",
    "asyncify",
    "blocking",
    "check_cancelled",
    "current_deadline",
    "default_pool",
    "iterate",
    "run",
    "run_on_loop",
    "shared_portal",
    "strict",
    "syncify",
    "to_future",
    "to_thread",
    "unwrap",
    "wrap",
    "wrap_future",
]
