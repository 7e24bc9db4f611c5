"""Inside a program run by `bridge watch`: watch every event loop it starts.

`bridge watch` puts a generated `sitecustomize.py` on the child's PYTHONPATH
that calls `bootstrap()` before the program's own code runs. From then on
every asyncio loop (`BaseEventLoop.run_forever`, which `asyncio.run`,
`asyncio.Runner` and `run_until_complete` all go through), every uvloop loop
(`uvloop.Loop.run_forever`) and every `trio.run` is watched by a
`LoopWatchdog`, strict mode is on in warn-only mode, and the findings are
written as JSON to `$BRIDGE_WATCH_DIR/<pid>.json`: after each change (so a
killed program still leaves its report) and at exit.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import signal
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from types import FrameType, ModuleType
from typing import Any

from bridge import _strict as strict
from bridge._import_hooks import when_imported
from bridge.watchdog import BlockStatistics, LoopWatchdog

ENV_DIR = "BRIDGE_WATCH_DIR"
ENV_THRESHOLD = "BRIDGE_WATCH_THRESHOLD"
ENV_STRICT = "BRIDGE_WATCH_STRICT"

_statistics = BlockStatistics()
_threshold = 0.05
_out_dir = ""
_write_lock = threading.Lock()
_last_written: tuple[int, int] | None = None
_wakeup = threading.Event()


def _snapshot() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "threshold": _threshold,
        "lateness": _statistics.lateness.to_json(),
        "sites": _statistics.to_json(),
        "strict": [v.to_json() for v in strict.violations() if not _on_tool_thread(v.stack)],
    }


def write_report(force: bool = False) -> None:
    """Write this process's findings, atomically, if they changed since the last write."""
    global _last_written
    if not _out_dir:
        return
    with _write_lock:
        violations = strict.violations()
        state = (_statistics.count, sum(v.count for v in violations))
        if not force and state == _last_written:
            return
        path = os.path.join(_out_dir, f"{os.getpid()}.json")
        temporary = f"{path}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as out:
                json.dump(_snapshot(), out)
            os.replace(temporary, path)
        except OSError:  # the parent's directory is gone: nothing left to report to
            return
        _last_written = state


def _writer() -> None:
    # Strict-mode counts have no listener: poll them, cheaply, twice a second.
    while True:
        _wakeup.wait(0.5)
        _wakeup.clear()
        write_report()


_STDLIB = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
# Loops that serve bridge's test tools (the CQL and HTTP test servers), not the
# program. A Portal's loop is watched: it runs the program's coroutines (a
# Flask view's `syncify` calls land there), and a block there is the program's.
# An idle portal is never reported: the watchdog knows a loop waiting for I/O.
_TOOLS = os.path.join(os.path.dirname(os.path.realpath(__file__)), "testing") + os.sep


def _started_by_bridge_tool() -> bool:
    """Was this thread started by one of bridge's test tools (the CQL test server)?

    The thread's outermost code that is not the standard library's
    (`threading`, `runpy`) tells who runs it: the program's own module, a
    console script, or a tool's thread function.
    """
    files = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        files.append(frame.f_code.co_filename)
        frame = frame.f_back
    del frame
    return _outermost_is_tool(files)


def _outermost_is_tool(inner_first: Iterable[str]) -> bool:
    for filename in reversed(list(inner_first)):
        if filename.startswith("<"):
            continue
        real = _realpaths.get(filename)
        if real is None:
            real = _realpaths[filename] = os.path.realpath(filename)
        if real.startswith(_STDLIB):
            continue
        return real.startswith(_TOOLS)
    return False


_realpaths: dict[str, str] = {}  # a loop may be started many times (run_until_complete)


_FILE = re.compile(r'^\s*File "(.+?)", line \d+')


def _on_tool_thread(stack: list[str]) -> bool:
    """Was a strict-mode violation (its formatted stack) made on a bridge tool's loop?"""
    files = [m.group(1) for m in map(_FILE.match, stack) if m is not None]
    return _outermost_is_tool(reversed(files))


def _watch_asyncio_loops(owner: type) -> None:
    original: Callable[[Any], None] = owner.run_forever  # type: ignore[attr-defined]
    if getattr(original, "__bridge_watch__", False):
        return

    @functools.wraps(original)
    def run_forever(self: Any) -> None:
        if _started_by_bridge_tool():
            return original(self)
        with LoopWatchdog(_threshold, statistics=_statistics).attach(self):
            return original(self)

    run_forever.__bridge_watch__ = True  # type: ignore[attr-defined]
    owner.run_forever = run_forever  # type: ignore[attr-defined]


def _watch_trio(trio: ModuleType) -> None:
    original = trio.run
    if getattr(original, "__bridge_watch__", False):
        return

    @functools.wraps(original)
    def run(async_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if _started_by_bridge_tool():
            return original(async_fn, *args, **kwargs)

        @functools.wraps(async_fn)
        async def watched(*inner: Any) -> Any:
            async with LoopWatchdog(_threshold, statistics=_statistics):
                return await async_fn(*inner)

        return original(watched, *args, **kwargs)

    run.__bridge_watch__ = True  # type: ignore[attr-defined]
    setattr(trio, "run", run)  # noqa: B010


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM's default action skips atexit; exiting normally writes the report.
    raise SystemExit(128 + signum)


def _after_fork_in_child() -> None:
    global _statistics, _last_written
    _statistics = BlockStatistics()
    _statistics.add_listener(lambda _: _wakeup.set())
    _last_written = None
    strict.reset_violations()
    threading.Thread(target=_writer, name="bridge-watch-writer", daemon=True).start()


def bootstrap() -> None:
    """Hook loop creation, turn on warn-only strict mode, and report at exit."""
    global _threshold, _out_dir
    _out_dir = os.environ.get(ENV_DIR, "")
    _threshold = float(os.environ.get(ENV_THRESHOLD, "0.05"))
    if os.environ.get(ENV_STRICT, "1") != "0":
        strict.enable(warn_only=True)
    _statistics.add_listener(lambda _: _wakeup.set())
    when_imported("asyncio.base_events", lambda m: _watch_asyncio_loops(m.BaseEventLoop))
    when_imported("uvloop", lambda m: _watch_asyncio_loops(m.Loop))
    when_imported("trio", _watch_trio)
    threading.Thread(target=_writer, name="bridge-watch-writer", daemon=True).start()
    atexit.register(write_report, True)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate)
