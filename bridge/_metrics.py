"""The instrumentation switch, and what instrumented code records into while it is on.

Off by default, and free when off: most figures are read at collection time
from the `statistics()` objects that exist anyway (see `_metrics_catalog`),
so nothing on the hot path changes. Only true distributions (loop lateness,
waker batch sizes, time waited for a limiter token, adapter call latency)
need a hook at the point of measurement, each a single `if _metrics.on:`
(one module attribute read) in front of the recording.

Recording costs a bisect, two increments and two comparisons under a lock
(~0.35 µs), not an exporter's record call (the OpenTelemetry SDK's
`Histogram.record` costs 5-6 µs): a `Distribution` keeps bucket counts, sums,
min and max per attribute set, which Prometheus reads at each scrape and
`bridge.metrics.opentelemetry_exporter` at each export (`read`). Only while an
OpenTelemetry provider takes bridge's histograms through its own SDK
instruments (exact replay, for Views and exemplars) does it also keep each
value (a list append) until they are handed to the SDK, off the hot path (see
`_metrics_otel`).

Live objects (limiters, worker pools, watchdog statistics, adapter
sessions) are tracked in weak sets, so being measured never keeps one alive.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

Key = tuple[Any, ...]

#: True while an exporter is enabled; hooks read it before recording anything.
#: Read without a lock (also on free-threaded builds): a stale read around a
#: switch only records, or misses, the values of that moment.
on = False

#: Bucket bounds in seconds for delays that should be near zero (lateness, token waits).
DELAY_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
#: Bucket bounds in seconds for driver calls (a CQL query, an HTTP request).
CALL_BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
)  # fmt: skip
#: Bucket bounds for counts of completions handed out by one waker drain.
BATCH_BOUNDS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)


#: Values a distribution keeps for OpenTelemetry before it asks for them to be handed over
#: at once (`flush_kept`): bounds the memory if the metrics thread falls behind.
KEEP_MAX = 50_000

#: Set while an OpenTelemetry exporter is on: starts handing every kept value over, soon,
#: on another thread (the caller may be a loop's).
flush_kept: Callable[[], None] | None = None


class Distribution:
    """A histogram kept in-process: bucket counts, per-bucket sums, min and max, per attribute set.

    Cumulative since `started_ns` (the last `reset`); `snapshot()` copies the
    buckets for Prometheus, `read()` everything for an OpenTelemetry export.
    While `keep_values` is set, each value is also kept, exactly, until
    `drain()`. Safe to record from any thread.
    """

    def __init__(
        self,
        name: str,
        unit: str,
        description: str,
        attributes: Sequence[str],
        bounds: Sequence[float],
    ) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.attributes = tuple(attributes)
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()
        # attribute values -> (counts per bucket (+inf last), sums per bucket,
        # [min, max] of the values since the last `_fold`)
        self._series: dict[Key, tuple[list[int], list[float], list[float]]] = {}
        # Min and max are folded out of the series at each read, into the totals since
        # `started_ns` and into each window: the hot path compares against one pair only,
        # however many delta exporters there are.
        self._extremes: dict[Key, list[float]] = {}
        self._windows: list[dict[Key, list[float]]] = []
        #: When the counts started (time.time_ns()): a cumulative export's start time.
        self.started_ns = time.time_ns()
        #: Keep each value for OpenTelemetry's exact replay (set by the metrics switch).
        self.keep_values = False
        self._kept: dict[Key, list[float]] = {}
        self._kept_count = 0

    def record(self, value: float, key: Key = ()) -> None:
        """Add one value; `key` holds the values of `attributes`, in order."""
        bucket = bisect_left(self.bounds, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                n = len(self.bounds) + 1
                series = self._series[key] = ([0] * n, [0.0] * n, [value, value])
            series[0][bucket] += 1
            series[1][bucket] += value
            extremes = series[2]
            if value < extremes[0]:
                extremes[0] = value
            if value > extremes[1]:
                extremes[1] = value
            if not self.keep_values:
                return
            kept = self._kept.get(key)
            if kept is None:
                kept = self._kept[key] = []
            kept.append(value)
            self._kept_count += 1
            full = self._kept_count >= KEEP_MAX
        flush = flush_kept
        if full and flush is not None:
            flush()  # the metrics thread fell behind

    def drain(self) -> dict[Key, list[float]]:
        """The values kept since the last drain, per attribute set, in recording order."""
        with self._lock:
            kept, self._kept, self._kept_count = self._kept, {}, 0
        return kept

    def snapshot(self) -> dict[Key, tuple[list[int], list[float]]]:
        """A copy of every series: counts and sums per bucket (the last bucket is +inf)."""
        with self._lock:
            return {key: (list(c), list(s)) for key, (c, s, _) in self._series.items()}

    def open_window(self) -> dict[Key, list[float]]:
        """Start tracking min and max for one delta exporter, from now; pass it to `read`."""
        with self._lock:
            self._fold()  # what came before belongs to the windows already open
            window: dict[Key, list[float]] = {}
            self._windows.append(window)
            return window

    def close_window(self, window: dict[Key, list[float]]) -> None:
        with self._lock:
            self._windows = [w for w in self._windows if w is not window]

    def read(
        self, window: dict[Key, list[float]] | None = None
    ) -> tuple[int, dict[Key, tuple[list[int], float, float, float]]]:
        """`started_ns`, and per series: counts per bucket, sum, min and max.

        All cumulative since `started_ns`, except min and max when `window` is
        given: those cover the values since that window's previous read (a
        series with none has min inf and max -inf), and the window starts again.
        """
        with self._lock:
            self._fold()
            extremes = self._extremes if window is None else window
            points = {}
            for key, (counts, sums, _) in self._series.items():
                lo, hi = extremes.get(key, _NO_EXTREMES)
                points[key] = (list(counts), math.fsum(sums), lo, hi)
            if window is not None:
                window.clear()
            return self.started_ns, points

    def _fold(self) -> None:
        """Under `_lock`: move each series' min and max since the last fold into the totals
        and into every open window."""
        for key, (_, _, pending) in self._series.items():
            lo, hi = pending
            if lo > hi:
                continue  # nothing recorded since the last fold
            for extremes in (self._extremes, *self._windows):
                seen = extremes.get(key)
                if seen is None:
                    extremes[key] = [lo, hi]
                else:
                    if lo < seen[0]:
                        seen[0] = lo
                    if hi > seen[1]:
                        seen[1] = hi
            pending[0], pending[1] = math.inf, -math.inf

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self._extremes.clear()
            for window in self._windows:
                window.clear()
            self.started_ns = time.time_ns()
            self._kept, self._kept_count = {}, 0


_NO_EXTREMES = (math.inf, -math.inf)


class Counter:
    """A monotonic count per attribute set, for events no `statistics()` keeps."""

    def __init__(self, name: str, unit: str, description: str, attributes: Sequence[str]) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.attributes = tuple(attributes)
        self._lock = threading.Lock()
        self._values: dict[tuple[Any, ...], float] = {}

    def add(self, amount: float = 1, key: tuple[Any, ...] = ()) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def snapshot(self) -> dict[tuple[Any, ...], float]:
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


# -- distributions the hooks record into --------------------------------------------------

loop_lateness = Distribution(
    "bridge.loop.lateness",
    "s",
    "How late the loop ran a probe task after its timer was due, 20 times a second: "
    "the delay every woken task, timer and result handed back to the loop sees",
    ("bridge.loop.backend", "thread.name"),
    DELAY_BOUNDS,
)
waker_batch = Distribution(
    "bridge.waker.batch.size",
    "{completion}",
    "Completions handed to the loop by one wake-up (many results, one wake-up)",
    (),
    BATCH_BOUNDS,
)
limiter_wait = Distribution(
    "bridge.limiter.wait.duration",
    "s",
    "Time a call that found no free token waited in the limiter's queue for one",
    ("bridge.limiter.name",),
    DELAY_BOUNDS,
)
http_duration = Distribution(
    "http.client.request.duration",
    "s",
    "Duration of HTTP requests sent by bridge.adapters.requests, in the worker thread",
    ("http.request.method", "server.address", "server.port", "bridge.http.status_class",
     "error.type"),
    CALL_BOUNDS,
)  # fmt: skip
db_duration = Distribution(
    "db.client.operation.duration",
    "s",
    "Duration of database calls: Cassandra requests (bridge.adapters.cassandra), per "
    "coordinator host; DB-API statements (bridge.adapters.dbapi), per SQL command",
    ("db.system.name", "db.operation.name", "server.address", "server.port", "error.type"),
    CALL_BOUNDS,
)
portal_calls = Counter(
    "bridge.portal.calls",
    "{call}",
    "Coroutine calls sent from sync code to a loop (syncify, Portal.call, Portal.submit)",
    (),
)

DISTRIBUTIONS: tuple[Distribution, ...] = (
    loop_lateness,
    waker_batch,
    limiter_wait,
    http_duration,
    db_duration,
)
COUNTERS: tuple[Counter, ...] = (portal_calls,)

# -- live objects read at collection time --------------------------------------------------

limiters: weakref.WeakSet[Any] = weakref.WeakSet()
pools: weakref.WeakSet[Any] = weakref.WeakSet()
block_statistics: weakref.WeakSet[Any] = weakref.WeakSet()
http_sessions: weakref.WeakSet[Any] = weakref.WeakSet()
cql_sessions: weakref.WeakSet[Any] = weakref.WeakSet()
db_pools: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()  # pool -> its name


def track(registry: weakref.WeakSet[Any], obj: object) -> None:
    """Remember `obj` for collection time (weakly); called once when it is made."""
    # WeakSet.add is not atomic; objects are made on many threads.
    with _track_lock:
        registry.add(obj)


def live(registry: weakref.WeakSet[Any]) -> list[Any]:
    with _track_lock:
        return list(registry)


def track_named(registry: weakref.WeakKeyDictionary[Any, str], obj: object, name: str) -> None:
    with _track_lock:
        registry[obj] = name


def live_named(registry: weakref.WeakKeyDictionary[Any, str]) -> list[tuple[Any, str]]:
    with _track_lock:
        return list(registry.items())


_track_lock = threading.Lock()


def status_class(status: int) -> str:
    """`200` -> `"2xx"`: few values, so a series per host stays small."""
    return f"{status // 100}xx"


def error_type(error: BaseException) -> str:
    """The exception's fully qualified class name, as OpenTelemetry's `error.type` wants."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
