"""bridge.adapters.requests against a real HTTP server on 127.0.0.1 (never a mock)."""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import anyio
import pytest
import requests

import bridge
from bridge.adapters.requests import DEFAULT_TIMEOUT, AsyncSession
from bridge.testing.httpserver import HTTPTestServer, unused_port
from tests.support import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


def a_worker_is_reading_a_socket() -> bool:
    """True while a session thread is inside a blocking socket read (not merely handed a job)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if not thread.name.startswith("bridge-requests") or thread.ident not in frames:
            continue
        frame: FrameType | None = frames[thread.ident]
        while frame is not None:
            if frame.f_code.co_name == "readinto" and frame.f_code.co_filename == socket.__file__:
                return True
            frame = frame.f_back
    return False


def threads_idle(session: AsyncSession) -> bool:
    stats = session.thread_statistics()
    return stats.idle == stats.threads and session.limiter.statistics().running == 0


# -- the requests API ---------------------------------------------------------


async def test_methods_and_arguments_round_trip(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            response = await getattr(session, method.lower())(
                server.url("/echo/x"), params={"a": "1"}, headers={"X-Test": method}
            )
            echo = response.json()
            assert (echo["method"], echo["path"]) == (method, "/echo/x")
            assert echo["query"] == {"a": ["1"]}
            assert echo["headers"]["X-Test"] == method

        head = await session.head(server.url("/echo"))
        assert head.status_code == 200 and head.content == b""

        sent = await session.post(server.url("/echo"), json={"n": [1, 2]})
        assert sent.json()["json"] == {"n": [1, 2]}

        form = await session.post(server.url("/echo"), data={"name": "ada"})
        assert form.json()["form"] == {"name": ["ada"]}

        raw = await session.put(server.url("/echo"), data=b"\x00\xffbytes")
        assert base64.b64decode(raw.json()["body"]) == b"\x00\xffbytes"

        upload = await session.post(
            server.url("/echo"), data={"kind": "notes"}, files={"doc": ("a.txt", b"hello")}
        )
        echo = upload.json()
        assert echo["files"] == {"doc": {"filename": "a.txt", "content": "hello"}}
        assert echo["form"] == {"kind": ["notes"]}

        generated = await session.post(server.url("/echo"), data=iter([b"chunk", b"ed"]))
        assert base64.b64decode(generated.json()["body"]) == b"chunked"


async def test_request_with_explicit_method(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        response = await session.request("PATCH", server.url("/echo"), data="x")
        assert isinstance(response, requests.Response)
        assert response.json()["method"] == "PATCH"


async def test_redirects_are_followed_or_not_as_asked(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        followed = await session.get(server.url("/redirect?to=/echo/landed"))
        assert followed.json()["path"] == "/echo/landed"
        assert [r.status_code for r in followed.history] == [302]

        stopped = await session.get(server.url("/redirect?to=/echo"), allow_redirects=False)
        assert stopped.status_code == 302 and stopped.headers["Location"] == "/echo"


async def test_cookies_persist_across_calls(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        await session.get(server.url("/cookies/set?flavour=oat"))
        assert session.session.cookies.get("flavour") == "oat"
        echo = (await session.get(server.url("/echo"))).json()
        assert echo["headers"]["Cookie"] == "flavour=oat"


async def test_auth_per_call_and_per_session(server: HTTPTestServer) -> None:
    url = server.url("/basic-auth/ada/secret")
    async with AsyncSession() as session:
        assert (await session.get(url)).status_code == 401
        assert (await session.get(url, auth=("ada", "secret"))).json()["authenticated"]
    async with AsyncSession(auth=("ada", "secret")) as session:
        assert (await session.get(url)).json()["user"] == "ada"


async def test_session_options_set_the_session(server: HTTPTestServer) -> None:
    async with AsyncSession(headers={"X-Team": "core"}, params={"v": "2"}) as session:
        assert str(session.session.headers["User-Agent"]).startswith("python-requests")
        echo = (await session.get(server.url("/echo"))).json()
        assert echo["headers"]["X-Team"] == "core"
        assert echo["query"] == {"v": ["2"]}


def test_unknown_session_option_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) jsn.*headers.*verify"):
        AsyncSession(jsn={"a": 1})


async def test_stream_argument_points_to_session_stream(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        with pytest.raises(TypeError, match=r"session\.stream"):
            await session.get(server.url("/echo"), stream=True)  # type: ignore[call-arg]


# -- errors -------------------------------------------------------------------


async def test_requests_exceptions_come_through_unchanged(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        with pytest.raises(requests.ConnectionError):
            await session.get(f"http://127.0.0.1:{unused_port()}/")
        response = await session.get(server.url("/status/404"))
        with pytest.raises(requests.HTTPError):
            response.raise_for_status()
        with pytest.raises(requests.exceptions.MissingSchema):
            await session.get("no-scheme")


async def test_closed_session_says_to_create_a_new_one(server: HTTPTestServer) -> None:
    session = AsyncSession()
    await session.get(server.url("/echo"))
    await session.close()
    await session.close()  # idempotent
    assert session.closed
    with pytest.raises(bridge.ClosedError, match="Create a new AsyncSession"):
        await session.get(server.url("/echo"))
    with pytest.raises(bridge.ClosedError):
        async with session.stream("GET", server.url("/echo")):
            pass


# -- timeouts -----------------------------------------------------------------


def test_default_timeout_is_set_and_none_must_be_explicit() -> None:
    assert AsyncSession().timeout == DEFAULT_TIMEOUT
    assert AsyncSession(timeout=None).timeout is None
    assert AsyncSession(timeout=3).timeout == 3


async def test_session_default_timeout_fires(server: HTTPTestServer) -> None:
    async with AsyncSession(timeout=(5, 0.2)) as session:
        with pytest.raises(requests.Timeout):
            await session.get(server.url("/hang"))
        await eventually(lambda: threads_idle(session))


async def test_per_call_timeout_overrides_the_default(server: HTTPTestServer) -> None:
    async with AsyncSession(timeout=(5, 300)) as session:
        with pytest.raises(requests.ReadTimeout):
            await session.get(server.url("/hang"), timeout=0.2)


# -- limits ---------------------------------------------------------------------


async def test_limiter_caps_requests_in_flight(server: HTTPTestServer) -> None:
    limiter = bridge.Limiter(4)
    async with AsyncSession(limiter=limiter) as session, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(session.get, server.url("/gate"))
        await eventually(lambda: server.active >= 4 and limiter.statistics().waiting == 8)
        server.gate.set()
    assert server.peak == 4
    assert server.paths["/gate"] == 12


async def test_per_host_caps_one_host(server: HTTPTestServer) -> None:
    async with AsyncSession(limiter=bridge.Limiter(10), per_host=2) as session:
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(session.get, server.url("/gate"))
            await eventually(lambda: server.active >= 2)
            server.gate.set()
        assert server.peak == 2
        assert threads_idle(session)


async def test_two_thousand_requests_with_a_hundred_in_flight(server: HTTPTestServer) -> None:
    async with AsyncSession(limiter=bridge.Limiter(100)) as session:
        statuses: list[int] = []

        async def worker(n: int) -> None:
            for _ in range(20):
                response = await session.get(server.url("/sleep?ms=2"))
                statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for n in range(100):
                tg.start_soon(worker, n)
        stats = session.thread_statistics()
    assert statuses == [200] * 2000
    assert stats.threads <= 100
    # The pool holds as many connections as the limiter allows calls, so none is
    # opened only to be discarded: every connection is reused.
    assert server.connections <= 100


# -- cancellation -----------------------------------------------------------------


async def test_cancelled_request_frees_its_thread_and_closes_the_socket(
    server: HTTPTestServer,
) -> None:
    # Read timeout far beyond the test's own limit: only the cancellation can end it.
    async with AsyncSession(limiter=bridge.Limiter(4), timeout=(5, 600)) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.get, server.url("/hang"))
            await eventually(lambda: server.hanging == 1)
            tg.cancel_scope.cancel()
        await eventually(lambda: server.eofs == 1)  # the server saw the socket shut down
        await eventually(lambda: threads_idle(session))

        # The cut connection is not reused: the next call opens a new one.
        assert (await session.get(server.url("/echo"))).status_code == 200
        assert server.connections == 2


async def test_cancelled_reused_connection_is_cut(server: HTTPTestServer) -> None:
    async with AsyncSession(limiter=bridge.Limiter(1), timeout=(5, 600)) as session:
        await session.get(server.url("/echo"))  # leaves one pooled connection
        with anyio.CancelScope() as scope:

            async def cancel_when_hanging() -> None:
                await eventually(lambda: server.hanging == 1)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_hanging)
                await session.get(server.url("/hang"))
        assert scope.cancelled_caught
        assert server.connections == 1  # the hanging request used the pooled connection
        await eventually(lambda: server.eofs == 1)
        await eventually(lambda: threads_idle(session))


async def test_cancelled_before_start_never_runs(server: HTTPTestServer) -> None:
    limiter = bridge.Limiter(1)
    async with AsyncSession(limiter=limiter) as session, anyio.create_task_group() as tg:
        tg.start_soon(session.get, server.url("/gate"))
        await eventually(lambda: server.active == 1)
        with anyio.CancelScope() as queued:
            tg.start_soon(cancel_after_queued, queued, limiter)
            await session.get(server.url("/echo"))
        assert queued.cancelled_caught
        server.gate.set()
    await eventually(lambda: limiter.statistics().running == 0)
    assert server.paths["/echo"] == 0
    assert limiter.statistics().waiting == 0


async def cancel_after_queued(scope: anyio.CancelScope, limiter: bridge.Limiter) -> None:
    await eventually(lambda: limiter.statistics().waiting == 1)
    scope.cancel()


async def test_cancelled_per_host_wait_returns_no_token(server: HTTPTestServer) -> None:
    async with AsyncSession(per_host=1) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.get, server.url("/gate"))
            await eventually(lambda: server.active == 1)
            with anyio.move_on_after(0.05):
                await session.get(server.url("/echo"))  # waits for the host's only token
            server.gate.set()
        # The host token is free again: one more call goes through.
        assert (await session.get(server.url("/echo"))).status_code == 200
        assert server.paths["/echo"] == 1


# -- streaming ----------------------------------------------------------------------


async def test_stream_of_fifty_megabytes_keeps_one_chunk_ahead(server: HTTPTestServer) -> None:
    size, chunk_size = 50 * 1024 * 1024, 64 * 1024
    produced = consumed = most_ahead = received = 0
    async with AsyncSession() as session:
        async with session.stream("GET", server.url(f"/stream?size={size}")) as response:
            assert response.status_code == 200
            assert response.headers["Transfer-Encoding"] == "chunked"
            real_iter_content = response.response.iter_content

            def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
                nonlocal produced
                for chunk in real_iter_content(*args, **kwargs):
                    produced += 1
                    yield chunk

            def ahead_of(n: int) -> Callable[[], bool]:
                return lambda: produced > n

            response.response.iter_content = counting  # type: ignore[method-assign]
            async for chunk in response.aiter_content(chunk_size):
                consumed += 1
                received += len(chunk)
                if consumed % 50 == 1:
                    # Give the read-ahead every chance to run further than it may.
                    await eventually(ahead_of(consumed))
                most_ahead = max(most_ahead, produced - consumed)
        assert response.closed
    assert received == size
    assert most_ahead == 1


async def test_stream_lines(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        async with session.stream("GET", server.url("/lines?n=5000")) as response:
            lines = [line async for line in response.aiter_lines(chunk_size=1000)]
    assert lines == [b"line %d" % i for i in range(5000)]


async def test_streamed_body_read_whole_with_aread(server: HTTPTestServer) -> None:
    async with AsyncSession() as session:
        async with session.stream("POST", server.url("/echo"), json={"k": 1}) as response:
            with pytest.raises(RuntimeError, match="aiter_content"):
                response.json()
            await response.aread()
            assert response.json()["json"] == {"k": 1}
            with pytest.raises(requests.exceptions.StreamConsumedError):
                await response.aread()


async def test_leaving_a_stream_early_cuts_its_connection(server: HTTPTestServer) -> None:
    async with AsyncSession(limiter=bridge.Limiter(2)) as session:
        async with session.stream("GET", server.url("/stream?size=104857600")) as response:
            async for _ in response.aiter_content():
                break
        assert response.closed
        await eventually(lambda: threads_idle(session))
        assert server.stream_bytes_sent < 104857600
        assert (await session.get(server.url("/echo"))).status_code == 200
        assert server.connections == 2


async def test_cancelled_stream_read_frees_its_thread(server: HTTPTestServer) -> None:
    async with AsyncSession(limiter=bridge.Limiter(2), timeout=(5, 600)) as session:
        chunks: list[bytes] = []
        with anyio.CancelScope() as scope:
            async with session.stream("GET", server.url("/stream-hang")) as response:
                async for chunk in response.aiter_content(chunk_size=None):
                    chunks.append(chunk)
                    # Cancel once the read-ahead thread is blocked on the rest of the body.
                    await eventually(a_worker_is_reading_a_socket)
                    scope.cancel()
        assert scope.cancelled_caught
        assert chunks == [b"hello"]
        await eventually(lambda: server.eofs == 1)
        await eventually(lambda: threads_idle(session))


# -- deadlines ------------------------------------------------------------------


class SendRecorder:
    """Wraps a session's `requests.Session.send` to see, in the thread, what it was given and
    how it ended: the real send still runs over the real socket."""

    def __init__(self, session: AsyncSession) -> None:
        self.timeouts: list[Any] = []
        self.errors: list[BaseException] = []
        self.ended = threading.Event()
        self._send = session.session.send
        session.session.send = self  # type: ignore[method-assign]

    def __call__(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.timeouts.append(kwargs.get("timeout"))
        try:
            return self._send(request, **kwargs)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.ended.set()


async def test_the_time_left_bounds_the_timeout_given_to_requests(server: HTTPTestServer) -> None:
    async with AsyncSession(timeout=(10, 60)) as session:
        sent = SendRecorder(session)
        with anyio.fail_after(30):
            await session.get(server.url("/echo"))
        await session.get(server.url("/echo"))  # no deadline: the session's own timeout
        with anyio.fail_after(300):
            await session.get(server.url("/echo"))  # a deadline longer than both: unchanged
    (connect, read), unbounded, longer = sent.timeouts
    assert 0 < connect <= 10 and 0 < read <= 30
    assert unbounded == (10, 60)
    assert longer == (10, 60)


async def test_a_deadline_ends_the_call_by_requests_own_timeout(server: HTTPTestServer) -> None:
    # The session would wait 600 s for an answer; the caller's deadline is 0.5 s. The
    # thread must end with requests' ReadTimeout (its socket timed out), not a cut socket.
    async with AsyncSession(limiter=bridge.Limiter(2), timeout=(5, 600)) as session:
        sent = SendRecorder(session)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):
                await session.get(server.url("/hang"))
        await bridge.to_thread(sent.ended.wait, 30)
        assert [type(e) for e in sent.errors] == [requests.exceptions.ReadTimeout]
        await eventually(lambda: threads_idle(session))
        assert (await session.get(server.url("/echo"))).status_code == 200


@pytest.mark.allow_blocking(reason="holds the loop past the deadline, as a loaded machine does")
async def test_a_deadline_delivered_late_still_ends_the_call_with_timeout_error(
    server: HTTPTestServer,
) -> None:
    # Held past the deadline, the loop finds requests' ReadTimeout (cut to the
    # deadline) before it runs the deadline's own cancellation.
    async with AsyncSession(limiter=bridge.Limiter(2), timeout=(5, 600)) as session:
        sent = SendRecorder(session)

        async def hold_the_loop() -> None:
            await anyio.sleep(0.15)
            # Blocks the loop until requests' own timeout has ended the call in its
            # thread, and a little longer, while the thread hands the error back.
            sent.ended.wait(30)
            time.sleep(0.05)  # noqa: ASYNC251 - the point: the loop is late

        async with anyio.create_task_group() as tg:
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.3):
                    tg.start_soon(hold_the_loop)
                    await session.get(server.url("/hang"))
        assert [type(e) for e in sent.errors] == [requests.exceptions.ReadTimeout]


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), float("inf"), (1, -1), (1, 2, 3), "10"])
def test_a_bad_timeout_is_refused_at_construction(bad: object) -> None:
    with pytest.raises(ValueError, match=r"timeout=\.\.\.\) must be seconds > 0"):
        AsyncSession(timeout=bad)  # type: ignore[arg-type]


def test_good_timeouts_are_accepted() -> None:
    for good in (5, 2.5, (3, 27), (None, 10), None):
        assert AsyncSession(timeout=good).timeout == good
