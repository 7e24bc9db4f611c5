"""`LoopWatchdog`: says which line blocks the event loop, while it is blocked.

asyncio's debug mode logs a slow callback after it has finished and cannot
say where inside it the time went. A watchdog thread can: it pings the loop
(`call_soon_threadsafe` on asyncio and uvloop, `TrioToken.run_sync_soon` on
trio) and, when a ping stays unanswered for `threshold` seconds, takes the
loop thread's stack with `sys._current_frames()` while the loop is still
stuck, so the report shows the very line that blocks, e.g. `requests.get(...)`.

One ping is in flight at a time and pings are spaced a quarter of the
threshold apart, so a healthy loop pays a few microseconds a few dozen times a
second. A block is never reported below `threshold`; any block longer than
`1.25 * threshold` always is.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType, FrameType, TracebackType
from typing import Any, TypeVar

from bridge import _metrics
from bridge._callsite import CallSite, extract_stack, user_site
from bridge._lateness_histogram import LatenessHistogram

__all__ = [
    "BlockReport",
    "BlockStatistics",
    "LoopWatchdog",
    "SiteStatistics",
    "install",
]

T = TypeVar("T")

logger = logging.getLogger("bridge.watchdog")

#: Environment variable `install()` reads when `run()` is given no watchdog:
#: a threshold in seconds (`BRIDGE_WATCHDOG=0.05`), or `1` for the default.
ENV_VAR = "BRIDGE_WATCHDOG"


@dataclass
class BlockReport:
    """One episode of a blocked loop: where it blocked, the full stack, for how long.

    Delivered (to `on_block` or the log) while the loop is still blocked, so
    `duration` is then only a lower bound and `ended` is False; the watchdog
    updates both in place once the loop runs again.
    """

    site: CallSite
    stack: traceback.StackSummary
    thread_name: str
    backend: str
    threshold: float
    duration: float
    ended: bool = False

    def format(self, *, hide_outer: int = 0) -> str:
        """The report as the watchdog logs it: the user's line first, then the stack.

        `hide_outer` leaves out that many outermost frames (a test runner's,
        say), so the stack starts where the reader's code does.
        """
        state = f"for {self.duration:.3f} s" if self.ended else f"for more than {self.threshold} s"
        where = f"in library code at {self.site}" if self.site.library else f"at {self.site}"
        lines = [
            f"{self.backend} event loop on thread {self.thread_name!r} blocked {state} {where}",
        ]
        if self.site.line:
            lines.append(f"    {self.site.line}")
        if self.site.library:
            lines.append("    (no line of your code is on the loop thread's stack)")
        lines.append("Stack of the loop thread (most recent call last):")
        hidden = min(max(hide_outer, 0), max(len(self.stack) - 1, 0))
        if hidden:
            lines.append(f"  ... {hidden} outer frames (test runner, event loop) not shown")
        shown = traceback.StackSummary.from_list(list(self.stack)[hidden:])
        lines.append("".join(shown.format()).rstrip("\n"))
        lines.append(
            "Move the blocking call off the loop: await bridge.to_thread(fn, ...), "
            "or use an async client."
        )
        return "\n".join(lines)


@dataclass
class SiteStatistics:
    """How often one call site blocked the loop, for how long in total and at worst."""

    site: CallSite
    count: int = 0
    total: float = 0.0
    worst: float = 0.0
    stack: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            **self.site.to_json(),
            "count": self.count,
            "total": self.total,
            "worst": self.worst,
            "stack": self.stack,
        }


class BlockStatistics:
    """Blocked time per call site; thread-safe, shareable between several watchdogs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sites: dict[CallSite, SiteStatistics] = {}
        self._listeners: list[Callable[[BlockStatistics], None]] = []
        _metrics.track(_metrics.block_statistics, self)
        #: How long the loop took to answer each ping (blocked episodes included).
        self.lateness = LatenessHistogram()

    def record(self, report: BlockReport) -> None:
        """Add one finished episode."""
        with self._lock:
            entry = self._sites.get(report.site)
            if entry is None:
                entry = self._sites[report.site] = SiteStatistics(
                    report.site, stack=report.stack.format()
                )
            entry.count += 1
            entry.total += report.duration
            entry.worst = max(entry.worst, report.duration)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(self)

    def add_listener(self, listener: Callable[[BlockStatistics], None]) -> None:
        """Call `listener(self)` after each recorded episode (on the watchdog thread)."""
        with self._lock:
            self._listeners.append(listener)

    def sites(self) -> list[SiteStatistics]:
        """Call sites ranked by total blocked time, worst first (copies)."""
        with self._lock:
            entries = [
                SiteStatistics(e.site, e.count, e.total, e.worst, list(e.stack))
                for e in self._sites.values()
            ]
        return sorted(entries, key=lambda e: (e.total, e.worst), reverse=True)

    @property
    def count(self) -> int:
        """Blocking episodes recorded, all sites together."""
        with self._lock:
            return sum(e.count for e in self._sites.values())

    def to_json(self) -> list[dict[str, object]]:
        return [entry.to_json() for entry in self.sites()]

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


class _Target:
    """How to ping one running loop from another thread."""

    backend = "asyncio"

    def post(self, callback: Callable[[], None]) -> bool:
        raise NotImplementedError

    def is_running(self) -> bool:
        return True


class _AsyncioTarget(_Target):
    def __init__(self, loop: Any) -> None:
        self.loop = loop
        module = type(loop).__module__
        self.backend = "uvloop" if module.startswith("uvloop") else "asyncio"

    def post(self, callback: Callable[[], None]) -> bool:
        try:
            self.loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop was closed
            return False
        return True

    def is_running(self) -> bool:
        return bool(self.loop.is_running())


class _TrioTarget(_Target):
    backend = "trio"

    def __init__(self, token: Any) -> None:
        self.token = token

    def post(self, callback: Callable[[], None]) -> bool:
        import trio

        try:
            self.token.run_sync_soon(callback)
        except trio.RunFinishedError:
            return False
        return True


def _current_target() -> _Target:
    import sniffio

    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        return _TrioTarget(trio.lowlevel.current_trio_token())
    if library == "asyncio":
        import asyncio

        return _AsyncioTarget(asyncio.get_running_loop())
    raise RuntimeError(f"LoopWatchdog supports asyncio, uvloop and trio, not {library!r}")


class LoopWatchdog:
    """Watch an event loop and report the stack of whatever blocks it past `threshold` seconds.

    Use it inside the loop::

        async with LoopWatchdog(0.05):
            await serve()

    or attach it from sync code to an asyncio loop you run yourself::

        with LoopWatchdog(0.05).attach(loop):
            loop.run_until_complete(serve())

    Each blocking episode is reported once, while the loop is blocked: to
    `on_block(report)` (called on the watchdog thread; keep it short) or, by
    default, as a warning on the `bridge.watchdog` logger. `statistics` keeps
    count, total and worst blocked time per call site; pass one
    `BlockStatistics` to several watchdogs to pool them.
    """

    def __init__(
        self,
        threshold: float = 0.05,
        *,
        on_block: Callable[[BlockReport], object] | None = None,
        statistics: BlockStatistics | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
            0 < threshold < math.inf
        ):
            raise ValueError(
                f"LoopWatchdog(threshold=...) must be a positive, finite number of seconds "
                f"(how long the loop may be blocked before it is reported), got {threshold!r}"
            )
        self.threshold = float(threshold)
        self.on_block = on_block
        self.statistics = statistics if statistics is not None else BlockStatistics()
        #: The latest reports (up to 1000), oldest first.
        self.reports: deque[BlockReport] = deque(maxlen=1000)
        self._interval = self.threshold / 4
        self._target: _Target | None = None
        self._loop_thread: int | None = None
        self._loop_thread_name = ""
        self._loop_codes: frozenset[CodeType] = frozenset()
        self._thread: threading.Thread | None = None
        self._answered = threading.Event()
        self._answered_at = 0.0
        self._stop = threading.Event()
        self._stopping = False
        self._stopped_at = 0.0

    # -- starting and stopping ---------------------------------------------------------------

    async def __aenter__(self) -> LoopWatchdog:
        self._start(_current_target(), threading.get_ident())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextmanager
    def attach(self, loop: Any) -> Iterator[LoopWatchdog]:
        """Watch an asyncio or uvloop loop for the duration of a `with` block.

        The loop may be started inside the block, on this thread or another;
        time the loop spends not running is not counted as blocked.
        """
        self._start(_AsyncioTarget(loop), threading.get_ident())
        try:
            yield self
        finally:
            self.stop()

    def _start(self, target: _Target, loop_thread: int) -> None:
        if self._thread is not None:
            raise RuntimeError("this LoopWatchdog is already watching a loop; make a new one")
        self._target = target
        # A guess until the loop answers a ping (a loop may run on another thread).
        self._loop_thread = loop_thread
        self._loop_thread_name = threading.current_thread().name
        self._thread = threading.Thread(
            target=self._watch, name=f"bridge-watchdog-{target.backend}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; an episode still open ends now. Idempotent."""
        thread = self._thread
        if thread is None or self._stopping:
            return
        self._stopped_at = time.monotonic()
        self._stopping = True
        self._stop.set()
        self._answered.set()
        if thread is not threading.current_thread():
            # Bounded: the thread only has to wake up, unless `on_block` hangs.
            thread.join(1.0)

    # -- the watchdog thread -------------------------------------------------------------------

    def _beat(self) -> None:
        """Runs on the loop: the loop is alive."""
        thread = threading.get_ident()
        if thread != self._loop_thread or not self._loop_codes:
            self._loop_thread = thread
            self._loop_thread_name = threading.current_thread().name
            self._loop_codes = _dispatch_codes(sys._getframe(1))
        self._answered_at = time.monotonic()
        self._answered.set()

    def _watch(self) -> None:
        target = self._target
        assert target is not None
        while not self._stopping:
            self._answered.clear()
            sent = time.monotonic()
            if not target.post(self._beat):
                return
            if self._answered.wait(self.threshold) or self._stopping:
                self._late(sent)
            elif target.is_running():
                self._episode(sent, target.backend)
                self._late(sent)  # blocked, or starved of the CPU or the GIL: late either way
            else:
                self._await_start(target)
            self._stop.wait(self._interval)

    def _late(self, sent: float) -> None:
        """The loop answered the ping sent at `sent`: that delay is one lateness sample."""
        if self._answered_at > sent:
            self.statistics.lateness.add(self._answered_at - sent)

    def _await_start(self, target: _Target) -> None:
        """The loop is not running (not started, or between runs): not blocked. Wait for it.

        If it starts and still does not answer within `threshold`, its first
        callbacks block it: that is an episode like any other.
        """
        running_since: float | None = None
        while not self._answered.wait(self._interval) and not self._stopping:
            if not target.is_running():
                running_since = None
            elif running_since is None:
                running_since = time.monotonic()
            elif time.monotonic() - running_since > self.threshold:
                self._episode(running_since, target.backend)
                return

    def _episode(self, sent: float, backend: str) -> None:
        while True:
            frame = sys._current_frames().get(self._loop_thread or 0)
            if frame is None:
                self._answered.wait()
                return
            if not _waiting_for_events(frame, self._loop_codes):
                break
            # The loop sits in its own wait for I/O with our ping ready: nothing
            # blocks it, its thread is starved of CPU or of the GIL by other
            # threads. Not a block; look again until it answers.
            del frame
            if self._answered.wait(self._interval) or self._stopping:
                return
        stack = extract_stack(frame)
        # The site is looked for only above the frames that run the loop: the
        # program's `asyncio.run(main())` line is under every callback, and is
        # not what blocks when a library's callback does.
        above = min(_frames_above_loop(frame, self._loop_codes), len(stack))
        del frame
        report = BlockReport(
            site=user_site(stack[len(stack) - above :]),
            stack=stack,
            thread_name=self._loop_thread_name,
            backend=backend,
            threshold=self.threshold,
            duration=time.monotonic() - sent,
        )
        self.reports.append(report)
        self._deliver(report)
        self._answered.wait()
        end = self._answered_at if self._answered_at > sent else self._stopped_at
        report.duration = max(end - sent, report.duration)
        report.ended = True
        self.statistics.record(report)
        if self.on_block is None:
            logger.info(
                "event loop ran again after being blocked for %.3f s at %s",
                report.duration,
                report.site,
            )

    def _deliver(self, report: BlockReport) -> None:
        if self.on_block is None:
            logger.warning("%s", report.format())
            return
        try:
            self.on_block(report)
        except Exception:
            logger.exception("LoopWatchdog on_block callback %r raised", self.on_block)


# Where an idle loop waits for I/O: asyncio's selector, trio's I/O manager, and
# the queue a trio guest run's host waits on between ticks (anyio's test runner).
# These count only directly on top of the frames that run the loop (strict
# mode's wrapper of `queue.Queue.get` included).
_WAIT_FILES = (
    f"{os.sep}selectors.py",
    f"{os.sep}queue.py",
    f"{os.sep}threading.py",
    f"{os.sep}bridge{os.sep}_strict.py",
    f"{os.sep}_io_epoll.py",
    f"{os.sep}_io_kqueue.py",
    f"{os.sep}_io_windows.py",
)


def _dispatch_codes(caller: FrameType | None) -> frozenset[CodeType]:
    """The code of the frames that run the loop itself, seen from a callback's caller.

    asyncio's `Handle._run` (which runs one callback) is left out: a stack
    with it in runs a callback, which may be what blocks.
    """
    codes = set()
    frame = caller
    while frame is not None:
        code = frame.f_code
        if not (code.co_name == "_run" and code.co_filename.endswith(f"asyncio{os.sep}events.py")):
            codes.add(code)
        frame = frame.f_back
    return frozenset(codes)


def _frames_above_loop(frame: FrameType, loop_codes: frozenset[CodeType]) -> int:
    """How many frames, innermost first, run on top of the loop's own frames (all if unknown)."""
    count = 0
    inner: FrameType | None = frame
    while inner is not None and inner.f_code not in loop_codes:
        count += 1
        inner = inner.f_back
    return count


def _waiting_for_events(frame: FrameType, loop_codes: frozenset[CodeType]) -> bool:
    """Is the loop thread in the loop's own wait for I/O, running no callback?

    True when the innermost frames are the selector's (or, on uvloop, whose
    wait is C code, none) and every frame under them runs the loop itself.
    """
    if not loop_codes:
        return False
    inner: FrameType | None = frame
    while inner is not None and inner.f_code not in loop_codes:
        if not inner.f_code.co_filename.endswith(_WAIT_FILES):
            return False
        inner = inner.f_back
    return inner is not None


def _from_setting(setting: LoopWatchdog | float | bool | None) -> LoopWatchdog | None:
    if setting is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if not env or env.lower() in ("0", "false", "no", "off"):
            return None
        if env.lower() in ("1", "true", "yes", "on"):
            return LoopWatchdog()
        try:
            return LoopWatchdog(float(env))
        except ValueError:
            raise ValueError(
                f"{ENV_VAR}={env!r}: expected a threshold in seconds (e.g. 0.05) or 1"
            ) from None
    if setting is False:
        return None
    if setting is True:
        return LoopWatchdog()
    if isinstance(setting, LoopWatchdog):
        return setting
    if isinstance(setting, int | float):
        return LoopWatchdog(float(setting))
    raise TypeError(
        f"watchdog= takes a LoopWatchdog, a threshold in seconds, True or None, got {setting!r}"
    )


def install(
    watchdog: LoopWatchdog | float | bool | None,
    main: Callable[..., Awaitable[T]],
) -> Callable[..., Awaitable[T]]:
    """Wrap a program's async `main` so that `watchdog` watches the loop it runs on.

    `bridge.run(main, watchdog=...)` calls this. `watchdog` may be a
    `LoopWatchdog`, a threshold in seconds, True (default threshold), False
    (off), or None: then the `BRIDGE_WATCHDOG` environment variable decides.
    Returns `main` itself when there is nothing to watch.
    """
    chosen = _from_setting(watchdog)
    if chosen is None:
        return main

    @functools.wraps(main)
    async def watched(*args: Any) -> T:
        async with chosen:
            return await main(*args)

    return watched
