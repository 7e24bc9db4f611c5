"""bridge.run: the entry point picks the loop, and can watch it."""

from __future__ import annotations

import asyncio
import time

import pytest
import sniffio

import bridge
from bridge import BlockReport, LoopWatchdog


async def _which_loop() -> str:
    if sniffio.current_async_library() == "trio":
        return "trio"
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uses_uvloop_when_installed_unless_told_not_to() -> None:
    assert bridge.run(_which_loop) == "uvloop"
    assert bridge.run(_which_loop, use_uvloop=False) == "asyncio"
    assert bridge.run(_which_loop, backend="trio") == "trio"


def test_passes_arguments_and_returns_the_result() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert bridge.run(add, 2, 3) == 5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_watchdog_reports_the_line_that_blocks(backend: str) -> None:
    reports: list[BlockReport] = []

    async def main() -> None:
        time.sleep(0.5)  # noqa: ASYNC251 - the blocking call under test

    bridge.run(main, backend=backend, watchdog=LoopWatchdog(0.05, on_block=reports.append))  # type: ignore[arg-type]
    assert reports
    assert "time.sleep(0.5)" in reports[0].format()


def test_misuse_is_refused_with_the_fix() -> None:
    async def main() -> None:
        return None

    with pytest.raises(TypeError, match=r"bridge.run\(main\), not bridge.run\(main\(\)\)"):
        bridge.run(main())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        bridge.run(main, backend="curio")  # type: ignore[arg-type]
