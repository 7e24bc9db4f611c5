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
            "*event loop was blocked 1 time(s) past the 0.1 s threshold*",
            "*test_blocking.py:7 in legacy_call()*",
            "*time.sleep(0.3)  # the blocking line*",
        ]
    )
    assert "trio event loop" in result.stdout.str()
    assert "uvloop event loop" in result.stdout.str()


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
    project.runpytest().assert_outcomes(passed=3)


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
    result = project.runpytest("-W", "default")
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
    project.runpytest().assert_outcomes(passed=6)


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
    project.runpytest_subprocess().assert_outcomes(passed=3)
