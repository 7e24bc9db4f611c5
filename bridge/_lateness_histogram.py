"""A loop's lateness as a mergeable histogram: percentiles without keeping every sample.

The watchdog adds one value per ping (how long the loop took to run it) and
one per blocked episode; `bridge watch` sums the histograms of every process
it ran and prints percentiles. Buckets grow by 25% from 10 µs, so a
percentile is known to within a quarter of its value, in a few dozen
counters, whatever the run's length.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping

_SMALLEST = 1e-5
_GROWTH = 1.25
_BUCKETS = 90  # up to ~5 * 10**3 s; anything longer lands in the last bucket


def _bucket(seconds: float) -> int:
    if seconds <= _SMALLEST:
        return 0
    return min(_BUCKETS - 1, math.ceil(math.log(seconds / _SMALLEST, _GROWTH)))


def upper_bound(bucket: int) -> float:
    """The largest value bucket `bucket` holds."""
    return float(_SMALLEST * _GROWTH**bucket)


class LatenessHistogram:
    """Counts of lateness values per bucket, and the largest value; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        bucket = _bucket(seconds)
        with self._lock:
            self._counts[bucket] = self._counts.get(bucket, 0) + 1
            self.count += 1
            if seconds > self.max:
                self.max = seconds

    def merge(self, data: Mapping[str, object]) -> None:
        """Add another histogram's `to_json()` (another process's, say)."""
        counts = data.get("counts", {})
        assert isinstance(counts, dict)
        with self._lock:
            for bucket, count in counts.items():
                self._counts[int(bucket)] = self._counts.get(int(bucket), 0) + int(count)
                self.count += int(count)
            self.max = max(self.max, float(data.get("max", 0.0)))  # type: ignore[arg-type]

    def percentile(self, p: float) -> float:
        """The value at or below which `p`% of values lie (a bucket's upper bound; at most max)."""
        with self._lock:
            if not self.count:
                return 0.0
            rank = max(1, math.ceil(p / 100 * self.count))
            seen = 0
            for bucket in sorted(self._counts):
                seen += self._counts[bucket]
                if seen >= rank:
                    return min(upper_bound(bucket), self.max)
            return self.max

    def to_json(self) -> dict[str, object]:
        with self._lock:
            return {"counts": {str(b): c for b, c in self._counts.items()}, "max": self.max}

    def report(self) -> dict[str, object]:
        """`to_json()` plus the count and the percentiles a reader wants, in seconds."""
        return {
            **self.to_json(),
            "count": self.count,
            **{f"p{p}": self.percentile(p) for p in (50, 90, 99)},
        }
