"""pytest plugin: fail an async test that blocks its event loop, or leaves a coroutine unawaited.

Loaded through the `pytest11` entry point whenever bridge is installed.

- Each async test run by anyio's pytest plugin (asyncio, uvloop or trio) is
  watched by a `LoopWatchdog` during its call phase only: fixtures may start
  servers or block as they like. If the loop was blocked longer than
  `--bridge-block-threshold` seconds (ini `bridge_block_threshold`, default
  0.1; 0 turns the check off), the test fails with the blocking line and the
  loop thread's stack. `@pytest.mark.allow_blocking` exempts a test.
- A "coroutine ... was never awaited" warning raised while a test runs fails
  that test (`gc.collect()` runs after async tests so that coroutines kept
  alive by reference cycles are found too); `@pytest.mark.allow_unawaited`
  exempts a test.
- The `strict` fixture turns `bridge.strict()` on for one test, and
  `BRIDGE_STRICT=1` turns it on for the whole session.
"""

from __future__ import annotations

import functools
import gc
import inspect
import warnings
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from bridge import _strict as strict_module
from bridge.watchdog import BlockReport, LoopWatchdog

DEFAULT_THRESHOLD = 0.1
_UNAWAITED = r"coroutine .* was never awaited"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bridge", "bridge: find what blocks the event loop")
    group.addoption(
        "--bridge-block-threshold",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail an async test whose event loop was blocked longer than this "
        f"(default {DEFAULT_THRESHOLD}; 0 turns the check off)",
    )
    parser.addini(
        "bridge_block_threshold",
        "fail an async test whose event loop was blocked longer than this many seconds",
        default=str(DEFAULT_THRESHOLD),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_blocking: this async test may block its event loop (no LoopWatchdog failure)",
    )
    config.addinivalue_line(
        "markers",
        "allow_unawaited: a 'coroutine ... was never awaited' warning does not fail this test",
    )
    strict_module.enable_from_env()


def _threshold(config: pytest.Config) -> float:
    value = config.getoption("--bridge-block-threshold")
    if value is None:
        value = float(config.getini("bridge_block_threshold"))
    return float(value)


def _describe(reports: list[BlockReport], threshold: float) -> str:
    worst = max(reports, key=lambda r: r.duration)
    lines = [
        f"the event loop was blocked {len(reports)} time(s) past the "
        f"{threshold} s threshold (--bridge-block-threshold); worst: {worst.duration:.3f} s "
        f"at {worst.site}",
        "",
    ]
    for report in reports:
        lines.append(report.format())
        lines.append("")
    lines.append(
        "Move the blocking call off the loop (await bridge.to_thread(...)), or mark the test "
        "@pytest.mark.allow_blocking if blocking is what it tests."
    )
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    original = pyfuncitem.obj
    threshold = _threshold(pyfuncitem.config)
    if (
        threshold <= 0
        or not inspect.iscoroutinefunction(original)
        or "anyio_backend" not in pyfuncitem.funcargs
        or hasattr(original, "hypothesis")
        or pyfuncitem.get_closest_marker("allow_blocking") is not None
    ):
        return (yield)

    reports: list[BlockReport] = []

    @functools.wraps(original)
    async def watched(*args: Any, **kwargs: Any) -> Any:
        async with LoopWatchdog(threshold, on_block=reports.append):
            return await original(*args, **kwargs)

    pyfuncitem.obj = watched
    try:
        result = yield
    finally:
        pyfuncitem.obj = original
        if reports:
            pyfuncitem.add_report_section("call", "bridge", _describe(reports, threshold))
    if reports:
        pytest.fail(_describe(reports, threshold), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
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


@pytest.fixture(name="strict")
def strict_fixture() -> Iterator[strict_module.strict]:
    """Strict mode for one test: known blocking calls on the loop thread raise BlockingCallError."""
    with strict_module.strict() as mode:
        yield mode
