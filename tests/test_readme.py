"""Every Python block in README.md runs as written, pasted into a file.

Blocks that need a server start bridge's own local test servers
(`bridge.testing.httpserver`, `bridge.testing.cqlserver`), so they run on any
machine; interpreter sessions (`>>>`) run as doctests; the watchdog's log shown
in the README is compared with a real run of the program above it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[str, str, str]]:
    """(id, language, code) of every fenced block, with the heading it sits under."""
    found = []
    for match in _FENCE.finditer(README):
        heading = re.findall(r"^#+ (.+)$", README[: match.start()], re.M)[-1]
        slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")[:40]
        found.append((f"{slug}-{len(found)}", match.group(1), match.group(2)))
    return found


BLOCKS = _blocks()
PYTHON = [pytest.param(code, id=name) for name, lang, code in BLOCKS if lang == "python"]
WATCHDOG_SNIPPET = "bridge.run(handler, watchdog=0.05)"


def run_file(tmp_path: Path, name: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # `examples.*` imports, as from a checkout
    env.pop("BRIDGE_STRICT", None)
    return subprocess.run(
        [sys.executable, *args, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(PYTHON) >= 8
    assert any(WATCHDOG_SNIPPET in code for _, _, code in BLOCKS)
    assert "../shared" not in README  # the README stands alone


@pytest.mark.parametrize("code", PYTHON)
def test_python_block_runs_as_written(code: str, tmp_path: Path) -> None:
    if code.lstrip().startswith(">>>"):
        result = run_file(tmp_path, "session.txt", code, "-m", "doctest")
    else:
        result = run_file(tmp_path, "app.py", code)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def test_the_watchdog_log_in_the_readme_is_what_the_program_logs(tmp_path: Path) -> None:
    index = next(i for i, (_, _, code) in enumerate(BLOCKS) if WATCHDOG_SNIPPET in code)
    shown = BLOCKS[index + 1][2].splitlines()  # the log block right after the program
    assert shown[0].startswith("WARNING bridge.watchdog: ")
    result = run_file(tmp_path, "app.py", BLOCKS[index][2])
    assert result.returncode == 0, result.stderr
    real = result.stderr.replace(str(tmp_path / "app.py"), "app.py").splitlines()
    start = real.index(shown[0])  # the first line, word for word
    head = shown[: shown.index("  ...")]
    assert real[start : start + len(head)] == head
    tail = shown[shown.index("  ...") + 1 :]
    end = real.index(tail[-1], start)
    assert real[end - len(tail) + 1 : end + 1] == tail
