"""strict(): each known blocking call raises on a loop thread, and only there."""

# These tests make blocking calls on the loop thread on purpose.
# ruff: noqa: ASYNC210, ASYNC251

from __future__ import annotations

import concurrent.futures
import logging
import queue
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import requests
import urllib3

import bridge._strict as strict_module
from bridge import BlockingCallError, strict
from bridge.testing.httpserver import HTTPTestServer

# These tests turn strict mode on and off themselves, and block the loop on purpose.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.allow_blocking(reason="tests strict mode itself, which they switch on and off"),
]

THIS_FILE = str(Path(__file__).resolve())


@pytest.fixture(scope="module")
def http_server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield sock
    finally:
        sock.close()


@dataclass
class Resources:
    http: HTTPTestServer
    listener: socket.socket
    cleanups: list[Callable[[], None]]


# A case makes, inside strict mode, a call that blocks and the action that
# would unblock it from another thread.
Setup = Callable[[Resources], tuple[Callable[[], object], Callable[[], None]]]


def _noop() -> None:
    pass


def sleep_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    return (lambda: time.sleep(0.01)), _noop


def requests_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    return (lambda: requests.get(r.http.url("/echo"), timeout=30)), _noop


def urllib3_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    pool = urllib3.PoolManager()
    r.cleanups.append(pool.clear)
    return (lambda: pool.request("GET", r.http.url("/echo"), timeout=30)), _noop


def connect_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    sock = socket.socket()
    r.cleanups.append(sock.close)
    return (lambda: sock.connect(r.listener.getsockname())), _noop


def accept_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    client = socket.socket()
    r.cleanups.append(client.close)

    def accept() -> None:
        conn, _ = r.listener.accept()
        conn.close()

    return accept, (lambda: client.connect(r.listener.getsockname()))


def recv_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    a, b = socket.socketpair()
    r.cleanups += [a.close, b.close]
    return (lambda: a.recv(1)), (lambda: b.sendall(b"x"))


def sendall_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    a, b = socket.socketpair()
    r.cleanups += [a.close, b.close]
    return (lambda: a.sendall(b"x")), _noop


def getaddrinfo_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    return (lambda: socket.getaddrinfo("localhost", 80)), _noop


def sqlite_connection_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    r.cleanups.append(conn.close)
    return (lambda: conn.execute("select 1").fetchall()), _noop


def sqlite_cursor_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    r.cleanups.append(conn.close)
    cursor = conn.cursor()
    return (lambda: cursor.execute("select 1").fetchall()), _noop


def subprocess_run_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    return (lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)), _noop


def popen_wait_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    stdin = proc.stdin

    def finish() -> None:
        if not stdin.closed:
            stdin.close()
        proc.wait(timeout=60)

    r.cleanups.append(finish)
    return proc.wait, stdin.close


def queue_get_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    q: queue.Queue[int] = queue.Queue()
    return q.get, (lambda: q.put(1))


def event_wait_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    event = threading.Event()
    return event.wait, event.set


def future_result_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    return future.result, (lambda: future.set_result(1))


def lock_acquire_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    lock = threading.Lock()  # made while strict mode is on
    lock.acquire()
    return lock.acquire, lock.release


def response_future_case(r: Resources) -> tuple[Callable[[], object], Callable[[], None]]:
    cluster_module = pytest.importorskip("cassandra.cluster")
    from cassandra.policies import RoundRobinPolicy

    class StandIn:
        """Just enough of a Session for ResponseFuture's constructor (no server)."""

        def __getattr__(self, name: str) -> Any:
            return None

    session = StandIn()
    session.cluster = StandIn()
    session.cluster._default_load_balancing_policy = RoundRobinPolicy()
    future = cluster_module.ResponseFuture(session, None, None, None)
    return future.result, (lambda: future._set_final_result([]))


CASES: dict[str, tuple[str, Setup]] = {
    "time.sleep": ("time.sleep", sleep_case),
    "requests": ("requests.Session.send", requests_case),
    "urllib3": ("urllib3.HTTPConnectionPool.urlopen", urllib3_case),
    "socket.connect": ("socket.socket.connect", connect_case),
    "socket.accept": ("socket.socket.accept", accept_case),
    "socket.recv": ("socket.socket.recv", recv_case),
    "socket.sendall": ("socket.socket.sendall", sendall_case),
    "getaddrinfo": ("socket.getaddrinfo", getaddrinfo_case),
    "sqlite3.Connection": ("sqlite3.Connection.execute", sqlite_connection_case),
    "sqlite3.Cursor": ("sqlite3.Cursor.execute", sqlite_cursor_case),
    "subprocess.run": ("subprocess.run", subprocess_run_case),
    "Popen.wait": ("subprocess.Popen.wait", popen_wait_case),
    "Queue.get": ("queue.Queue.get", queue_get_case),
    "Event.wait": ("threading.Event.wait", event_wait_case),
    "Future.result": ("concurrent.futures.Future.result", future_result_case),
    "Lock.acquire": ("threading.Lock.acquire", lock_acquire_case),
    "ResponseFuture.result": ("cassandra.cluster.ResponseFuture.result", response_future_case),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, Setup]:
    return CASES[request.param]


@pytest.fixture
def resources(http_server: HTTPTestServer, listener: socket.socket) -> Iterator[Resources]:
    r = Resources(http_server, listener, [])
    try:
        yield r
    finally:
        for cleanup in reversed(r.cleanups):
            cleanup()


async def test_blocking_call_on_the_loop_thread_raises(
    case: tuple[str, Setup], resources: Resources
) -> None:
    name, setup = case
    try:
        with strict():
            call, release = setup(resources)
            with pytest.raises(BlockingCallError) as info:
                call()  # the call under test
    finally:
        release()
    message = str(info.value)
    assert message.startswith(f"{name}() blocks the event loop")
    # Names the caller's line (the lambda or helper in this file) and a fix.
    assert f"{THIS_FILE}:" in message
    assert "Fix:" in message
    assert f"strict(allow=[{name!r}])" in message


async def test_the_same_call_in_a_worker_thread_is_allowed(
    case: tuple[str, Setup], resources: Resources
) -> None:
    _, setup = case
    errors: list[BaseException] = []

    def worker(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    with strict():
        call, release = setup(resources)
        thread = threading.Thread(target=worker, args=(call,))
        thread.start()
        # Unblock the worker (no-op for calls that finish by themselves), from
        # a thread of its own: the loop thread is under strict mode too.
        await anyio.to_thread.run_sync(release)
        await anyio.to_thread.run_sync(thread.join, 60)
    assert not thread.is_alive()
    assert errors == []


async def test_calls_that_would_not_wait_are_not_reported() -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)
    event = threading.Event()
    event.set()
    future: concurrent.futures.Future[int] = concurrent.futures.Future()
    future.set_result(2)
    with strict():
        lock = threading.Lock()
        assert lock.acquire()  # free: takes it without waiting
        lock.release()
        with lock:  # a critical section: not reported
            pass
        assert q.get() == 1
        assert event.wait()
        assert future.result() == 2
        time.sleep(0)
        sock = socket.socket()
        sock.setblocking(False)  # the loops' own sockets look like this
        try:
            sock.connect_ex(("127.0.0.1", 9))
        finally:
            sock.close()
        assert socket.getaddrinfo("127.0.0.1", 80)


async def test_the_event_loops_own_machinery_keeps_working(http_server: HTTPTestServer) -> None:
    with strict():
        async with await anyio.connect_tcp("127.0.0.1", http_server.port) as stream:
            await stream.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            async for chunk in stream:
                reply += chunk
        assert reply.startswith(b"HTTP/1.")
        assert await anyio.to_thread.run_sync(lambda: 40 + 2) == 42
        result = await anyio.run_process([sys.executable, "-c", "print('hi')"])
        assert result.stdout.strip() == b"hi"
        thread = threading.Thread(target=_noop)
        thread.start()  # threading waits for the thread to start: not reported
        await anyio.to_thread.run_sync(thread.join)


async def test_strict_off_costs_nothing_but_the_patch_stays() -> None:
    with strict():
        pass
    assert getattr(time.sleep, "__bridge_strict__", False)
    time.sleep(0.001)  # strict mode is off: allowed
    assert not strict_module.is_enabled()


async def test_allow_by_call_name_and_by_prefix() -> None:
    with strict(allow=["time.sleep"]):
        time.sleep(0.001)
        with pytest.raises(BlockingCallError, match=re.escape("queue.Queue.get")):
            queue.Queue().get()
    with strict(allow=["socket"]):  # a prefix allows every socket call
        assert socket.getaddrinfo("localhost", 80)
        with pytest.raises(BlockingCallError, match=re.escape("time.sleep")):
            time.sleep(0.001)


def sleep_from_this_module() -> None:
    time.sleep(0.001)


async def test_allow_by_caller_module() -> None:
    with strict(allow=[__name__]):
        sleep_from_this_module()
    with strict(allow=["some.other.module"]):
        with pytest.raises(BlockingCallError):
            sleep_from_this_module()


async def test_an_allowed_call_does_not_report_the_calls_it_makes(
    http_server: HTTPTestServer,
) -> None:
    with strict(allow=["requests"]):
        assert requests.get(http_server.url("/echo"), timeout=30).status_code == 200


async def test_warn_only_logs_each_site_once_and_counts_every_call(
    http_server: HTTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    strict_module.reset_violations()
    with caplog.at_level(logging.WARNING, logger="bridge.strict"), strict(warn_only=True):
        for _ in range(3):
            requests.get(http_server.url("/echo"), timeout=30)  # warned site
    found = strict_module.violations()
    # The sockets under requests are not reported again.
    assert [v.call for v in found] == ["requests.Session.send"]
    assert found[0].count == 3
    assert found[0].site.filename == THIS_FILE
    assert found[0].site.line.endswith("# warned site")
    logged = [r for r in caplog.records if r.name == "bridge.strict"]
    assert len(logged) == 1
    assert "Stack (most recent call last)" in logged[0].getMessage()
    strict_module.reset_violations()


async def test_strict_as_a_decorator_on_async_and_sync_functions() -> None:
    @strict()
    async def handler() -> None:
        time.sleep(0.001)

    @strict()
    def sync_helper() -> None:
        time.sleep(0.001)

    with pytest.raises(BlockingCallError):
        await handler()
    with pytest.raises(BlockingCallError):
        sync_helper()
    assert not strict_module.is_enabled()


def test_no_event_loop_no_error() -> None:
    with strict():
        time.sleep(0.001)
        conn = sqlite3.connect(":memory:")
        assert conn.execute("select 1").fetchall() == [(1,)]
        conn.close()


async def test_sqlite3_connections_with_a_custom_factory_are_checked() -> None:
    class MyConnection(sqlite3.Connection):
        pass

    with strict():
        conn = sqlite3.connect(":memory:", factory=MyConnection)
        try:
            assert isinstance(conn, MyConnection)
            with pytest.raises(BlockingCallError, match=re.escape("sqlite3.Connection.execute")):
                conn.execute("select 1")
        finally:
            conn.close()


def test_enable_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict_module, "_env_enabled", None)
    monkeypatch.delenv("BRIDGE_STRICT", raising=False)
    assert strict_module.enable_from_env() is False
    monkeypatch.setenv("BRIDGE_STRICT", "sometimes")
    with pytest.raises(ValueError, match="BRIDGE_STRICT"):
        strict_module.enable_from_env()
    monkeypatch.setenv("BRIDGE_STRICT", "warn")
    monkeypatch.setenv("BRIDGE_STRICT_ALLOW", "time.sleep, socket")
    try:
        assert strict_module.enable_from_env() is True
        assert strict_module.is_enabled()
        mode = strict_module._env_enabled
        assert mode is not None
        assert mode.warn_only
        assert mode.allow == ("time.sleep", "socket")
        assert strict_module.enable_from_env() is True  # idempotent
    finally:
        if strict_module._env_enabled is not None:
            strict_module._env_enabled.__exit__(None, None, None)
    assert not strict_module.is_enabled()


# -- cassandra-driver against the project's CQL server ----------------------------------------


@pytest.fixture(scope="module")
def cql_session() -> Iterator[Any]:
    pytest.importorskip("cassandra")
    from cassandra.cluster import Cluster

    from bridge.testing.cqlserver import CQLServer

    with CQLServer.start_in_thread() as server:
        cluster = Cluster(server.contact_points, port=server.port)
        try:
            yield cluster.connect()
        finally:
            cluster.shutdown()


async def test_cassandra_session_calls_raise_on_the_loop_thread(cql_session: Any) -> None:
    query = "SELECT release_version FROM system.local"
    with strict():
        with pytest.raises(BlockingCallError, match=re.escape("Session.execute()")):
            cql_session.execute(query)
        with pytest.raises(BlockingCallError, match=re.escape("Session.prepare()")):
            cql_session.prepare(query)
        # In a worker thread all of them are fine.
        rows = await anyio.to_thread.run_sync(lambda: list(cql_session.execute(query)))
        assert len(rows) == 1


async def test_cassandra_cluster_connect_raises_on_the_loop_thread(cql_session: Any) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster(
        [host.endpoint.address for host in cql_session.cluster.metadata.all_hosts()],
        port=cql_session.cluster.port,
    )
    try:
        with strict():
            with pytest.raises(BlockingCallError, match=re.escape("Cluster.connect()")):
                cluster.connect()
    finally:
        await anyio.to_thread.run_sync(cluster.shutdown)
