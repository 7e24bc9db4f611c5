"""`RuntimeHistory`: the loop's lateness and the worker threads over time, for the status page.

It reads the same Prometheus registry that `/metrics` serves (bridge's
metrics, enabled with `bridge.metrics.enable_prometheus(registry)`), every
`period` seconds, and keeps the last `keep` points. Lateness per point comes
from the growth of the `bridge_loop_lateness_seconds` histogram since the
previous point: how many probes ran, their mean, and the bucket the slowest
1% fell in.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio
from prometheus_client import CollectorRegistry

LATENESS = "bridge_loop_lateness_seconds"
THREADS = "bridge_pool_threads"
QUEUED = "bridge_pool_jobs_queued"


def _read(registry: CollectorRegistry) -> dict[str, Any]:
    """Lateness buckets (summed over loops) and thread counts by state, from one collection."""
    buckets: dict[float, float] = {}
    count = total = 0.0
    threads: dict[str, float] = {"busy": 0.0, "idle": 0.0, "blocked": 0.0}
    queued = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == f"{LATENESS}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{LATENESS}_count":
                count += sample.value
            elif sample.name == f"{LATENESS}_sum":
                total += sample.value
            elif sample.name == THREADS:
                state = sample.labels["bridge_pool_thread_state"]
                threads[state] = threads.get(state, 0.0) + sample.value
            elif sample.name == QUEUED:
                queued += sample.value
    return {"buckets": buckets, "count": count, "sum": total, "threads": threads, "queued": queued}


def _p99(before: dict[float, float], after: dict[float, float], count: float) -> float | None:
    """The upper bound of the bucket holding the 99th percentile of the new values."""
    if count <= 0:
        return None
    rank = 0.99 * count
    for bound in sorted(after):
        if after[bound] - before.get(bound, 0.0) >= rank:
            return bound
    return None


class RuntimeHistory:
    """Samples bridge's metrics from `registry` every `period` seconds while `run()` runs."""

    def __init__(
        self, registry: CollectorRegistry, *, period: float = 2.0, keep: int = 300
    ) -> None:
        self.registry = registry
        self.period = period
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self._last = _read(registry)

    def sample(self) -> dict[str, Any]:
        """Add one point: lateness since the previous one, threads now."""
        now = _read(self.registry)
        last, self._last = self._last, now
        probes = now["count"] - last["count"]
        p99 = _p99(last["buckets"], now["buckets"], probes)
        point = {
            "time": time.time(),
            "probes": int(probes),
            "lateness_mean_ms": (now["sum"] - last["sum"]) / probes * 1000 if probes else None,
            "lateness_p99_ms": None if p99 is None or p99 == float("inf") else p99 * 1000,
            "threads_busy": int(now["threads"]["busy"]),
            "threads_idle": int(now["threads"]["idle"]),
            "jobs_queued": int(now["queued"]),
        }
        self.points.append(point)
        return point

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.period)
            self.sample()

    def to_json(self) -> dict[str, Any]:
        return {"period": self.period, "points": list(self.points)}
