"""pytest plugin: fail an async test that blocks its event loop, or leaves a coroutine unawaited.

Loaded through the `pytest11` entry point whenever bridge is installed. It
watches async tests run by anyio's plugin (asyncio, uvloop, trio) and by
pytest-asyncio (its `asyncio` marker, and every async test in auto mode).

- The timing check: each watched test's call phase runs under a
  `LoopWatchdog` (fixtures may start servers or block as they like). A loop
  blocked longer than `--bridge-block-threshold` seconds (ini
  `bridge_block_threshold`, default 0.05) fails the test with the blocking
  line and the stack from the test function inwards. `bridge_block_check`
  (`--bridge-block-check`) is `fail` (default), `report` (list the blocks at
  the end, fail nothing) or `off`.
- The deterministic check: with `bridge_strict = true` (`--bridge-strict`)
  each watched test's call phase runs under `bridge.strict()`, so a known
  blocking call made on the loop thread raises `BlockingCallError` on the
  first call, however short, on any machine. `@pytest.mark.allow_blocking`
  exempts a test from both checks.
- A "coroutine ... was never awaited" warning raised while a test runs fails
  that test (`gc.collect()` runs after async tests so that coroutines kept
  alive by reference cycles are found too); `@pytest.mark.allow_unawaited`
  exempts a test.
- The `strict` fixture turns `bridge.strict()` on for one test, and
  `BRIDGE_STRICT=1` turns it on for the whole session.

Why 0.05 s: a blocking call to a service on another machine (an HTTP API, a
database round trip) takes tens to hundreds of milliseconds, and the watchdog
reports every block longer than 1.25 x its threshold: at 0.05 s an 80 ms
`requests.get` on the loop always fails the test, while the loop's own
scheduling noise (well under 10 ms) never does.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import warnings
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bridge import _strict as strict_module
from bridge.watchdog import BlockReport, LoopWatchdog

DEFAULT_THRESHOLD = 0.05
_CHECKS = ("fail", "report", "off")
_UNAWAITED = r"coroutine .* was never awaited"
_blocked_key = pytest.StashKey[list[tuple[str, BlockReport]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridge", "bridge: find what blocks the event loop")
    group.addoption(
        "--bridge-block-threshold",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail an async test whose event loop was blocked longer than this "
        f"(default {DEFAULT_THRESHOLD}; 0 turns the timing check off)",
    )
    group.addoption(
        "--bridge-block-check",
        choices=_CHECKS,
        default=None,
        help="what a blocked loop does: fail the test (default), report it at the end, or off",
    )
    group.addoption(
        "--bridge-strict",
        action="store_true",
        default=None,
        help="run each async test under bridge.strict(): known blocking calls on the loop "
        "thread raise BlockingCallError (deterministic, no timing)",
    )
    parser.addini(
        "bridge_block_threshold",
        "fail an async test whose event loop was blocked longer than this many seconds",
        default=str(DEFAULT_THRESHOLD),
    )
    parser.addini(
        "bridge_block_check",
        "fail | report | off: what the timing check does with a blocked loop",
        default="fail",
    )
    parser.addini(
        "bridge_strict",
        "run each async test under bridge.strict()",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_blocking(reason): this async test may block its event loop "
        "(no watchdog failure, no strict mode)",
    )
    config.addinivalue_line(
        "markers",
        "allow_unawaited: a 'coroutine ... was never awaited' warning does not fail this test",
    )
    check = _check(config)
    if check not in _CHECKS:
        raise pytest.UsageError(
            f"bridge_block_check = {check!r}: expected one of {', '.join(_CHECKS)}"
        )
    _threshold(config)  # a bad value is a usage error now, not an error in every test
    config.stash[_blocked_key] = []
    strict_module.enable_from_env()


def _threshold(config: pytest.Config) -> float:
    value = config.getoption("--bridge-block-threshold")
    if value is None:
        try:
            value = float(config.getini("bridge_block_threshold"))
        except ValueError:
            raise pytest.UsageError(
                "bridge_block_threshold must be a number of seconds (0 turns the check off), "
                f"got {config.getini('bridge_block_threshold')!r}"
            ) from None
    return float(value)


def _check(config: pytest.Config) -> str:
    value = config.getoption("--bridge-block-check")
    if value is None:
        value = str(config.getini("bridge_block_check")).strip().lower()
    return str(value)


def _strict_on(config: pytest.Config) -> bool:
    value = config.getoption("--bridge-strict")
    if value is None:
        value = config.getini("bridge_strict")
    return bool(value)


def _is_watched(item: pytest.Item) -> bool:
    """An async test run on an event loop by anyio's plugin or by pytest-asyncio."""
    if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(item.obj):
        return False
    if hasattr(item.obj, "hypothesis"):  # hypothesis drives the coroutine itself
        return False
    if item.get_closest_marker("allow_blocking") is not None:
        return False
    return "anyio_backend" in item.fixturenames or item.get_closest_marker("asyncio") is not None


def _test_frames_start(report: BlockReport, item: pytest.Item) -> int:
    """Index of the test function's frame: the frames before it are pytest's and the loop's."""
    test_file = os.path.realpath(str(item.path))
    for index, frame in enumerate(report.stack):
        if os.path.realpath(frame.filename) == test_file:
            return index
    return 0


def _describe(item: pytest.Item, reports: list[BlockReport], threshold: float) -> str:
    worst = max(reports, key=lambda r: r.duration)
    lines = [
        f"the event loop was blocked {len(reports)} time(s) past the "
        f"{threshold} s threshold (--bridge-block-threshold); worst: {worst.duration:.3f} s "
        f"at {worst.site}",
        "",
    ]
    for report in reports:
        lines.append(report.format(hide_outer=_test_frames_start(report, item)))
        lines.append("")
    lines.append(
        "Move the blocking call off the loop (await bridge.to_thread(...)), or mark the test "
        "@pytest.mark.allow_blocking if blocking is what it tests."
    )
    return "\n".join(lines)


def _watch(item: pytest.Function, stack: ExitStack) -> list[BlockReport]:
    """Swap the test function for one that runs under the watchdog (and strict mode)."""
    config = item.config
    reports: list[BlockReport] = []
    threshold = _threshold(config)
    timed = threshold > 0 and _check(config) != "off"
    strict = _strict_on(config)
    if not (timed or strict):
        return reports
    original = item.obj

    @functools.wraps(original)
    async def watched(*args: Any, **kwargs: Any) -> Any:
        with ExitStack() as modes:
            if strict:
                modes.enter_context(strict_module.strict())
            if not timed:
                return await original(*args, **kwargs)
            async with LoopWatchdog(threshold, on_block=reports.append):
                return await original(*args, **kwargs)

    item.obj = watched

    def restore() -> None:
        item.obj = original

    stack.callback(restore)
    return reports


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with ExitStack() as stack:
        reports: list[BlockReport] = []
        if isinstance(item, pytest.Function) and _is_watched(item):
            reports = _watch(item, stack)
        result = yield from _unawaited_checked(item)
    if reports:
        threshold = _threshold(item.config)
        text = _describe(item, reports, threshold)
        item.add_report_section("call", "bridge", text)
        if _check(item.config) == "fail":
            pytest.fail(text, pytrace=False)
        worst = max(reports, key=lambda r: r.duration)
        item.config.stash[_blocked_key].append((item.nodeid, worst))
    return result


def _unawaited_checked(item: pytest.Item) -> Generator[None, object, object]:
    """Run the test; fail it if it left a coroutine never awaited."""
    if item.get_closest_marker("allow_unawaited") is not None:
        return (yield)
    is_async = isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj)
    failure: BaseException | None = None
    result: object = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=_UNAWAITED, category=RuntimeWarning)
        try:
            result = yield
        except BaseException as exc:  # re-raised below, after the warnings are handed back
            failure = exc
        if is_async:
            gc.collect()
    unawaited = []
    for message in caught:
        if issubclass(message.category, RuntimeWarning) and "was never awaited" in str(
            message.message
        ):
            unawaited.append(message)
        # Hand every warning back to pytest's own capture (summary, -W filters).
        warnings.warn_explicit(
            message.message,
            message.category,
            message.filename,
            message.lineno,
            source=message.source,
        )
    if failure is not None:
        raise failure
    if unawaited:
        names = "; ".join(sorted({str(m.message) for m in unawaited}))
        pytest.fail(
            f"{names}: a coroutine was created and never awaited during this test, so its code "
            "never ran. Add `await`, or start it as a task; mark the test "
            "@pytest.mark.allow_unawaited if that is what it tests.",
            pytrace=False,
        )
    return result


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    blocked = config.stash.get(_blocked_key, [])
    if not blocked:
        return
    terminalreporter.section("bridge: event loops blocked (bridge_block_check = report)")
    for nodeid, worst in blocked:
        where = f"in library code at {worst.site}" if worst.site.library else f"at {worst.site}"
        terminalreporter.write_line(f"{nodeid}: {worst.duration:.3f} s {where}")


@pytest.fixture(name="strict")
def strict_fixture() -> Iterator[strict_module.strict]:
    """Strict mode for one test: known blocking calls on the loop thread raise BlockingCallError."""
    with strict_module.strict() as mode:
        yield mode
