"""examples/popular_words.py: the post's function done right, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "popular_words.py"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_counts_words_while_the_loop_keeps_beating(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--words", "20000", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "most popular words in 20,000 words: {" in done.stdout
    assert "the loop kept running" in done.stdout
    assert _worst_lateness_ms(done.stdout) < 250  # the fetch alone blocks for 300 ms


def test_naive_version_stalls_the_loop() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--words", "20000", "--naive"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "the loop stood still" in done.stdout
    assert _worst_lateness_ms(done.stdout) >= 250  # it measured the 300 ms it blocked


def _worst_lateness_ms(output: str) -> float:
    return float(output.split("worst lateness ")[1].split(" ms")[0])
