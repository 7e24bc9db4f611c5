"""LoopWatchdog: names the user's line that blocks the loop, while it blocks, on every backend."""

# These tests block their loops on purpose: that is what the watchdog must see.
# ruff: noqa: ASYNC251

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import requests

import bridge
from bridge import to_thread
from bridge._callsite import user_site
from bridge.testing.httpserver import HTTPTestServer
from bridge.watchdog import (
    BlockReport,
    BlockStatistics,
    LoopWatchdog,
    _waiting_for_events,
    install,
)
from tests.support import eventually

pytestmark = pytest.mark.anyio

THIS_FILE = str(Path(__file__).resolve())


def line_of(marker: str) -> int:
    """The line number in this file that carries `# <marker>`."""
    for number, line in enumerate(Path(__file__).read_text().splitlines(), 1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r}")


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


# -- the SEED scenario: a handler that still calls requests.get ---------------------------------


def fetch_profile(url: str) -> str:
    """A helper that hides the blocking call, as real code does."""
    return requests.get(url, timeout=30).text  # seed: blocking requests.get


async def handle_request(url: str) -> str:
    return fetch_profile(url)


@pytest.mark.allow_blocking
async def test_report_names_the_requests_get_line_while_the_loop_is_blocked(
    http_server: HTTPTestServer,
) -> None:
    reports: list[BlockReport] = []
    async with LoopWatchdog(0.05, on_block=reports.append) as watchdog:
        await handle_request(http_server.url("/sleep?ms=200"))
    assert len(reports) == 1
    report = reports[0]
    assert (report.site.filename, report.site.lineno) == (
        THIS_FILE,
        line_of("seed: blocking requests.get"),
    )
    assert report.site.function == "fetch_profile"
    assert "requests.get" in report.site.line
    # The full stack goes down into the library that actually waits.
    assert any("requests" in frame.filename for frame in report.stack)
    assert report.stack[-1].filename != THIS_FILE
    assert report.ended
    [site] = watchdog.statistics.sites()
    assert site.site == report.site
    assert site.count == 1
    assert site.total == site.worst == report.duration


@pytest.mark.allow_blocking
async def test_report_is_delivered_while_the_loop_is_still_blocked() -> None:
    # The loop thread waits on an event that only on_block sets: the wait can
    # only end if the report arrives while the loop is stuck in it.
    released = threading.Event()

    def on_block(report: BlockReport) -> None:
        assert not report.ended
        released.set()

    async with LoopWatchdog(0.05, on_block=on_block) as watchdog:
        unblocked = released.wait(timeout=60)  # waits for the report
    assert unblocked
    [report] = watchdog.reports
    assert report.site.lineno == line_of("waits for the report")
    assert report.ended


@pytest.mark.allow_blocking
async def test_one_report_per_episode_and_statistics_per_site() -> None:
    def block() -> None:
        time.sleep(0.2)  # site A

    reports: list[BlockReport] = []
    async with LoopWatchdog(0.05, on_block=reports.append) as watchdog:
        for episodes in (1, 2):
            block()
            # The loop must answer a ping between two blocks, or they are one episode.
            await eventually(lambda: watchdog.statistics.count == episodes)  # noqa: B023
        time.sleep(0.2)  # site B
    assert [r.site.lineno for r in reports] == [line_of("site A")] * 2 + [line_of("site B")]
    assert all(r.ended for r in reports)
    sites = {s.site.lineno: s for s in watchdog.statistics.sites()}
    assert sites[line_of("site A")].count == 2
    assert sites[line_of("site A")].total >= sites[line_of("site A")].worst
    assert sites[line_of("site B")].count == 1
    assert watchdog.statistics.count == 3
    # Ranked by total blocked time (how long each block measured depends on the
    # machine's load, so the order is checked against the totals themselves).
    totals = [s.total for s in watchdog.statistics.sites()]
    assert totals == sorted(totals, reverse=True)


async def test_a_loop_that_waits_is_not_blocked() -> None:
    reports: list[BlockReport] = []
    async with LoopWatchdog(1.0, on_block=reports.append):
        with anyio.move_on_after(0.3):
            await anyio.sleep_forever()
        for _ in range(100):
            await anyio.lowlevel.checkpoint()
    assert reports == []


@pytest.mark.allow_blocking
async def test_default_report_is_a_logged_warning_with_the_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="bridge.watchdog"):
        async with LoopWatchdog(0.05) as watchdog:
            time.sleep(0.2)  # logged
    assert watchdog.statistics.count == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"{THIS_FILE}:{line_of('logged')}" in text
    assert "Stack of the loop thread" in text
    assert "bridge.to_thread" in text


@pytest.mark.allow_blocking
async def test_on_block_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(report: BlockReport) -> None:
        raise ValueError("callback bug")

    async with LoopWatchdog(0.05, on_block=broken) as watchdog:
        time.sleep(0.2)
    assert watchdog.statistics.count == 1
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.allow_blocking
async def test_statistics_can_be_shared_between_watchdogs() -> None:
    shared = BlockStatistics()
    for _ in range(2):
        async with LoopWatchdog(0.05, on_block=lambda r: None, statistics=shared):
            time.sleep(0.2)  # shared site
    [site] = shared.sites()
    assert site.count == 2
    assert site.site.lineno == line_of("shared site")
    assert shared.to_json()[0]["count"] == 2


@pytest.mark.allow_blocking
async def test_install_wraps_main_for_bridge_run() -> None:
    watchdog = LoopWatchdog(0.05, on_block=lambda r: None)

    async def main(x: int) -> int:
        time.sleep(0.2)  # under run
        return x + 1

    watched = install(watchdog, main)
    assert watched is not main
    assert await watched(1) == 2
    [site] = watchdog.statistics.sites()
    assert site.site.lineno == line_of("under run")


def test_install_is_a_no_op_without_a_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        pass

    monkeypatch.delenv("BRIDGE_WATCHDOG", raising=False)
    assert install(None, main) is main
    assert install(False, main) is main
    monkeypatch.setenv("BRIDGE_WATCHDOG", "0.02")
    assert install(None, main) is not main
    monkeypatch.setenv("BRIDGE_WATCHDOG", "soon")
    with pytest.raises(ValueError, match="BRIDGE_WATCHDOG"):
        install(None, main)
    with pytest.raises(TypeError, match="watchdog="):
        install("fast", main)  # type: ignore[arg-type]


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopWatchdog(0)


def test_a_watchdog_watches_one_loop_only() -> None:
    loop = asyncio.new_event_loop()
    try:
        watchdog = LoopWatchdog(0.05)
        with watchdog.attach(loop), pytest.raises(RuntimeError, match="make a new one"):
            with watchdog.attach(loop):
                pass
    finally:
        loop.close()


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
@pytest.mark.allow_blocking
def test_attach_watches_a_loop_run_from_sync_code(use_uvloop: bool) -> None:
    if use_uvloop:
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def first_step_blocks() -> None:
        time.sleep(0.2)  # first callback
        await eventually(lambda: bool(reports) and reports[0].ended)
        time.sleep(0.2)  # later callback

    reports: list[BlockReport] = []
    try:
        with LoopWatchdog(0.05, on_block=reports.append).attach(loop):
            loop.run_until_complete(first_step_blocks())
    finally:
        loop.close()
    assert [r.site.lineno for r in reports] == [
        line_of("first callback"),
        line_of("later callback"),
    ]
    assert reports[0].backend == ("uvloop" if use_uvloop else "asyncio")


def test_attach_does_not_count_time_the_loop_is_not_running() -> None:
    loop = asyncio.new_event_loop()
    reports: list[BlockReport] = []
    try:
        with LoopWatchdog(0.05, on_block=reports.append).attach(loop):
            loop.run_until_complete(asyncio.sleep(0))
            time.sleep(0.2)  # the loop is stopped, not blocked
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert reports == []


@pytest.mark.allow_blocking(reason="blocks its loop on purpose, to sample it")
async def test_a_loop_waiting_for_io_is_told_from_a_blocked_one() -> None:
    # A loop whose thread is starved (other threads hold the CPU or the GIL)
    # sits in its own wait for I/O with the watchdog's ping ready: not a block.
    loop_thread = threading.get_ident()
    async with LoopWatchdog(30) as watchdog:
        await eventually(lambda: bool(watchdog._loop_codes))

        def idle() -> bool:
            frame = sys._current_frames()[loop_thread]
            return _waiting_for_events(frame, watchdog._loop_codes)

        def until_idle_is_seen() -> bool:
            for _ in range(30_000):  # the loop reaches its wait as soon as it hands this off
                if idle():
                    return True
                time.sleep(0.001)
            return False

        assert await to_thread(until_idle_is_seen)

        blocking, sampled = threading.Event(), []

        def sampler() -> None:
            blocking.wait(30)
            sampled.append(idle())
            blocking.clear()

        threading.Thread(target=sampler).start()
        blocking.set()
        while blocking.is_set():  # the loop is blocked here, in this test's code
            pass
        assert sampled == [False]


def test_a_stack_with_no_user_frame_is_marked_library() -> None:
    stack = traceback.StackSummary.from_list(
        [(threading.__file__, 1000, "run", "self._target()"), (time.__name__, 1, "f", "")]
    )
    site = user_site(traceback.StackSummary.from_list([stack[0]]))
    assert site.library and site.filename == threading.__file__
    mine = user_site(
        traceback.StackSummary.from_list([(THIS_FILE, 7, "handler", "legacy()"), stack[0]])
    )
    assert not mine.library and (mine.filename, mine.lineno) == (THIS_FILE, 7)


LIBRARY_CALLBACK = """\
import asyncio, time
from bridge.watchdog import LoopWatchdog

reports = []

async def main():
    async with LoopWatchdog(0.05, on_block=reports.append) as watchdog:
        await asyncio.sleep(0)  # the loop has answered a ping: the watchdog knows its frames
        while not watchdog._loop_codes:
            await asyncio.sleep(0.01)
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)  # a library callback blocks
        while not reports or not reports[0].ended:
            await asyncio.sleep(0.01)

asyncio.run(main())  # under every callback, but not what blocks
site = reports[0].site
print(site.library, site.filename.endswith("events.py"), site.function)
"""


def test_a_library_callback_is_not_blamed_on_the_programs_entry_line(tmp_path: Path) -> None:
    script = tmp_path / "entry.py"
    script.write_text(LIBRARY_CALLBACK)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "_run"]


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0, -1, "0.1", True])
def test_a_bad_threshold_is_refused_with_the_fix(bad: object) -> None:
    with pytest.raises(ValueError, match="positive, finite number of seconds"):
        bridge.LoopWatchdog(bad)  # type: ignore[arg-type]
