"""`run`: the program entry point, with uvloop when it is there."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import anyio

from bridge import _strict
from bridge import watchdog as _watchdog
from bridge.watchdog import LoopWatchdog

T = TypeVar("T")


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: Literal["asyncio", "trio"] = "asyncio",
    use_uvloop: bool | None = None,
    watchdog: LoopWatchdog | float | bool | None = None,
) -> T:
    """Run `main(*args)` in a new event loop and return its result.

    On asyncio, uvloop is used when it is installed unless `use_uvloop=False`;
    `use_uvloop=True` without uvloop installed is an error rather than a silent
    slowdown. `watchdog` reports what blocks the loop: a `LoopWatchdog`, a
    threshold in seconds, or True; with None, `BRIDGE_WATCHDOG=1` (or a
    threshold) in the environment turns it on, and `BRIDGE_STRICT=1` turns on
    strict mode for the whole program.
    """
    if inspect.iscoroutine(main):
        main.close()
        raise TypeError(
            "bridge.run() takes the async function itself, not a coroutine: "
            "write bridge.run(main), not bridge.run(main())"
        )
    if not callable(main):
        raise TypeError(f"bridge.run() needs an async function, got {main!r}")
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
    _strict.enable_from_env()
    main = _watchdog.install(watchdog, main)
    if backend == "asyncio":
        if use_uvloop is None:
            use_uvloop = _uvloop_available()
        elif use_uvloop and not _uvloop_available():
            raise RuntimeError(
                "use_uvloop=True but uvloop is not installed: pip install 'bridge[uvloop]', "
                "or pass use_uvloop=None to use it only when present"
            )
        return anyio.run(main, *args, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
    return anyio.run(main, *args, backend="trio")
