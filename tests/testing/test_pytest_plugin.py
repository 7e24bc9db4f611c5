"""The bridge pytest plugin: a test that blocks its loop fails with the blocking line."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BACKENDS = """
import pytest

@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request):
    return request.param
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(BACKENDS)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_the_plugin_is_registered_by_its_entry_point(project: pytest.Pytester) -> None:
    project.makepyfile("def test_nothing(): pass")
    result = project.runpytest("--trace-config")
    result.stdout.fnmatch_lines(["*bridge.testing.pytest_plugin*"])


def test_a_test_that_blocks_its_loop_fails_with_the_line(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_blocking="""
        import time
        import pytest

        pytestmark = pytest.mark.anyio

        def legacy_call():
            time.sleep(0.3)  # the blocking line

        async def test_blocks():
            legacy_call()
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*event loop was blocked 1 time(s) past the 0.05 s threshold*",
            "*test_blocking.py:7 in legacy_call()*",
            "*time.sleep(0.3)  # the blocking line*",
        ]
    )
    assert "trio event loop" in result.stdout.str()
    assert "uvloop event loop" in result.stdout.str()


def test_the_stack_starts_at_the_test_not_in_pytest(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_blocking="""
        import time
        import pytest

        @pytest.mark.anyio
        async def test_blocks():
            time.sleep(0.3)
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "Stack of the loop thread (most recent call last):",
            "*outer frames (test runner, event loop) not shown",
            '*File "*test_blocking.py", line 6, in test_blocks',
        ]
    )
    # The failure reports only: pytester's in-process run may add a warnings
    # summary about pytest's own modules (assertion rewriting of the already
    # imported bridge), which a real run does not have.
    failures = out[out.index("FAILURES") :].split("warnings summary")[0]
    assert "test_blocks" in failures
    assert "pluggy/" not in failures and "_pytest/" not in failures


def test_a_blocking_requests_get_fails_under_the_default_threshold(
    project: pytest.Pytester,
) -> None:
    from bridge.testing.httpserver import HTTPTestServer

    with HTTPTestServer() as server:
        project.makepyfile(
            test_http=f"""
            import pytest
            import requests

            @pytest.mark.anyio
            async def test_fetch():
                requests.get({server.url("/sleep?ms=150")!r}, timeout=30)
            """
        )
        result = project.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio")
        result.assert_outcomes(failed=3)
        result.stdout.fnmatch_lines(["*test_http.py:6 in test_fetch()*"])
        # Strict mode catches any blocking request, however short, with no timing at all.
        project.makepyfile(
            test_http=f"""
            import pytest
            import requests

            @pytest.mark.anyio
            async def test_fetch():
                requests.get({server.url("/sleep?ms=1")!r}, timeout=30)
            """
        )
        # (In a subprocess: a second in-process run would import requests afresh.)
        result = project.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "--bridge-strict",
            "--bridge-block-check=off",
        )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["*BlockingCallError: requests.Session.send() blocks the event loop*test_http.py:6*"]
    )


PYTEST_ASYNCIO = """
import time
import pytest

async def test_unmarked_blocks():
    time.sleep(0.3)

@pytest.mark.asyncio
async def test_marked_blocks():
    time.sleep(0.3)

@pytest.mark.asyncio
@pytest.mark.allow_blocking(reason="tests a blocking thing")
async def test_allowed():
    time.sleep(0.3)
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_asyncio_tests_are_watched(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(test_asyncio=PYTEST_ASYNCIO)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:anyio",
        "-o",
        f"asyncio_mode={mode}",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    out = result.stdout.str()
    blocked = "Failed: the event loop"
    assert f"FAILED test_asyncio.py::test_marked_blocks - {blocked}" in out
    assert (f"FAILED test_asyncio.py::test_unmarked_blocks - {blocked}" in out) == (mode == "auto")
    result.stdout.fnmatch_lines(["*test_asyncio.py:9 in test_marked_blocks()*"])
    assert "asyncio event loop" in out
    assert "FAILED test_asyncio.py::test_allowed" not in out


STRICT_TESTS = """
import time
import pytest
from bridge import BlockingCallError

@pytest.fixture
async def slow_fixture():
    time.sleep(0.001)  # fixtures are not under strict mode
    yield

@pytest.mark.anyio
async def test_anyio_short_sleep(slow_fixture):
    time.sleep(0.001)

@pytest.mark.asyncio
async def test_asyncio_short_sleep():
    time.sleep(0.001)

@pytest.mark.anyio
@pytest.mark.allow_blocking(reason="blocking is what this test does")
async def test_allowed():
    time.sleep(0.001)

def test_sync_code_may_block():
    time.sleep(0.001)
"""


def test_strict_ini_makes_any_blocking_call_fail_without_timing(project: pytest.Pytester) -> None:
    project.makepyfile(test_strict_ini=STRICT_TESTS)
    project.makeini(
        """
        [pytest]
        bridge_strict = true
        bridge_block_check = off
        asyncio_default_fixture_loop_scope = function
        """
    )
    result = project.runpytest("-p", "no:cacheprovider")
    # anyio: 3 backends; pytest-asyncio: 1 loop.
    result.assert_outcomes(failed=4, passed=4)
    result.stdout.fnmatch_lines(
        ["*BlockingCallError: time.sleep() blocks the event loop*test_strict_ini.py:12*"]
    )
    for name in (
        "test_anyio_short_sleep[asyncio]",
        "test_anyio_short_sleep[trio]",
        "test_asyncio_short_sleep",
    ):
        assert f"FAILED test_strict_ini.py::{name}" in result.stdout.str()
    # The same from the command line.
    project.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    project.runpytest("-p", "no:cacheprovider", "--bridge-strict").assert_outcomes(
        failed=4, passed=4
    )


def test_report_mode_lists_blocks_without_failing(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_report="""
        import time
        import pytest

        @pytest.mark.anyio
        async def test_blocks():
            time.sleep(0.3)
        """
    )
    result = project.runpytest("-p", "no:cacheprovider", "--bridge-block-check=report")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*bridge: event loops blocked (bridge_block_check = report)*",
            "test_report.py::test_blocks[[]asyncio[]]: * s at *test_report.py:6 in test_blocks()",
        ]
    )
    project.runpytest("-p", "no:cacheprovider", "--bridge-block-check=off").assert_outcomes(
        passed=3
    )


def test_a_bad_check_value_is_a_clear_error(project: pytest.Pytester) -> None:
    project.makepyfile("def test_nothing(): pass")
    project.makeini(
        "[pytest]\nbridge_block_check = maybe\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stderr.fnmatch_lines(
        ["*bridge_block_check = 'maybe': expected one of fail, report, off*"]
    )
    project.makeini(
        "[pytest]\nbridge_block_threshold = soon\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*bridge_block_threshold must be a number of seconds*'soon'*"])


def test_allow_blocking_marker_and_threshold_option(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_blocking="""
        import time
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.mark.allow_blocking
        async def test_allowed():
            time.sleep(0.3)

        async def test_under_a_high_threshold():
            time.sleep(0.3)
        """
    )
    project.runpytest("--bridge-block-threshold=5").assert_outcomes(passed=6)
    result = project.runpytest()
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(["*FAILED*test_under_a_high_threshold*"])
    project.runpytest("--bridge-block-threshold=0").assert_outcomes(passed=6)


def test_fixtures_may_block_only_the_test_call_is_watched(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_fixture="""
        import time
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture
        async def slow_server():
            time.sleep(0.3)  # starting a server in a fixture is fine
            yield "server"
            time.sleep(0.3)

        async def test_uses_it(slow_server):
            assert slow_server == "server"
        """
    )
    # Only the fixtures block: a loaded machine must not fail the trivial test body.
    project.runpytest("--bridge-block-threshold=0.25").assert_outcomes(passed=3)


def test_an_unawaited_coroutine_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_unawaited="""
        import pytest

        pytestmark = pytest.mark.anyio

        async def save():
            pass

        async def test_forgets_await():
            save()

        def test_sync_forgets_await():
            save()

        @pytest.mark.allow_unawaited
        async def test_allowed():
            save()
        """
    )
    result = project.runpytest("-W", "default", "--bridge-block-check=off")
    result.assert_outcomes(failed=4, passed=3)
    result.stdout.fnmatch_lines(["*coroutine 'save' was never awaited*"])


def test_strict_fixture_raises_on_the_loop_thread(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_strict="""
        import time
        import pytest
        from bridge import BlockingCallError

        pytestmark = pytest.mark.anyio

        async def test_sleep_raises(strict):
            with pytest.raises(BlockingCallError, match="time.sleep"):
                time.sleep(0.01)

        async def test_without_fixture_sleep_is_allowed():
            time.sleep(0.01)
        """
    )
    project.runpytest("--bridge-block-check=off").assert_outcomes(passed=6)


def test_bridge_strict_env_turns_strict_on_for_the_session(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(
        test_env="""
        import time
        import pytest
        from bridge import BlockingCallError

        pytestmark = pytest.mark.anyio

        async def test_sleep_raises():
            with pytest.raises(BlockingCallError):
                time.sleep(0.01)
        """
    )
    monkeypatch.setenv("BRIDGE_STRICT", "1")
    # In a subprocess: BRIDGE_STRICT turns strict mode on for the whole process.
    project.runpytest_subprocess("--bridge-block-check=off").assert_outcomes(passed=3)
