"""The watchdog's lateness histogram, and `bridge watch` printing its percentiles."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bridge._lateness_histogram import LatenessHistogram
from bridge.testing.httpserver import HTTPTestServer
from tests.test_watch_cli import APP, watch


@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=1, max_size=300))
def test_percentiles_are_within_a_quarter_of_the_exact_value(values: list[float]) -> None:
    histogram = LatenessHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for p in (50, 90, 99, 100):
        exact = ordered[max(1, -(-p * len(values) // 100)) - 1]
        estimate = histogram.percentile(p)
        assert exact <= estimate * 1.0000001
        assert estimate <= max(exact, 1e-5) * 1.25 * 1.0000001
    assert histogram.max == max(values)
    assert histogram.count == len(values)


def test_histograms_of_several_processes_merge() -> None:
    first, second = LatenessHistogram(), LatenessHistogram()
    for _ in range(99):
        first.add(0.001)
    second.add(0.5)
    merged = LatenessHistogram()
    merged.merge(json.loads(json.dumps(first.to_json())))
    merged.merge(json.loads(json.dumps(second.to_json())))
    assert merged.count == 100
    assert merged.percentile(50) <= 0.00125
    assert merged.percentile(100) == merged.max == 0.5


def test_bridge_watch_prints_lateness_percentiles(tmp_path: Path) -> None:
    app = tmp_path / "service.py"
    app.write_text(APP)
    report = tmp_path / "report.json"
    with HTTPTestServer() as server:
        result = watch(str(app), server.url("/sleep?ms=200"), "asyncio", report=report,
                       cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = next(s for s in result.stderr.splitlines() if s.startswith("loop lateness ("))
    assert "watchdog pings): p50 " in line and ", p99 " in line
    lateness = json.loads(report.read_text())["lateness"]
    # The loop was blocked past the threshold (0.05 s): that episode is a sample.
    assert lateness["count"] >= 1
    assert lateness["max"] >= 0.05
    assert lateness["p50"] <= lateness["p90"] <= lateness["p99"] <= lateness["max"]
