"""The loop transport: the event loop reads and writes the driver's sockets.

The real driver against the in-memory CQL server over real sockets, on
asyncio, uvloop and trio. Behaviour shared with the thread transport is in
test_cassandra.py (parametrised over both); this file holds what only a
loop-owned connection has: where callbacks run, calls from foreign threads,
deadlines, the loop's end, restarts, several clusters and several loops.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("cassandra")

from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionShutdown

import bridge
from bridge.adapters.cassandra import AsyncCluster, AsyncSession
from bridge.adapters.cassandra import _transport as transport_module
from bridge.adapters.cassandra._transport import LoopConnection
from bridge.testing.cqlserver import CQLServer, ServerThread
from tests.support import eventually

from .conftest import make_keyspace

pytestmark = pytest.mark.anyio

KS = "transport"


@pytest.fixture(scope="module")
def keyspace(cql_server: ServerThread) -> None:
    make_keyspace(cql_server, KS, "CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")


@pytest.fixture(autouse=True)
def no_faults(cql_server: ServerThread) -> Iterator[None]:
    yield
    cql_server.clear_faults()


def loop_cluster(server: ServerThread, **kwargs: Any) -> AsyncCluster:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AsyncCluster(server.contact_points, port=server.port, transport="loop", **kwargs)


@pytest.fixture
async def cluster_and_session(
    cql_server: ServerThread, keyspace: None
) -> AsyncIterator[tuple[AsyncCluster, AsyncSession]]:
    async with loop_cluster(cql_server) as cluster:
        yield cluster, await cluster.connect(KS)


@pytest.fixture
def session(cluster_and_session: tuple[AsyncCluster, AsyncSession]) -> AsyncSession:
    return cluster_and_session[1]


def connections(session: AsyncSession) -> list[LoopConnection]:
    return [pool._connection for pool in session.session._pools.values() if pool._connection]


async def test_responses_are_decoded_on_the_loop_thread(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    assert all(isinstance(conn, LoopConnection) for conn in connections(session))
    callback_threads: set[int] = set()
    cql_server.prime("SELECT v FROM transport.kv WHERE k = 1", delay=0.05, times=1)
    future = session.session.execute_async("SELECT v FROM transport.kv WHERE k = 1")
    done = anyio.Event()
    future.add_callbacks(
        lambda _: (callback_threads.add(threading.get_ident()), done.set()),
        lambda _: done.set(),
    )
    await done.wait()  # set on the loop thread itself: no thread-safe wake-up needed
    assert callback_threads == {threading.get_ident()}


async def test_sync_code_on_other_threads_shares_the_loops_connections(
    session: AsyncSession,
) -> None:
    # Writes and timers from foreign threads reach the loop (one wake-up per batch).
    def from_a_thread(k: int) -> str:
        s = session.session
        s.execute("INSERT INTO transport.kv (k, v) VALUES (%s, %s)", (k, f"t{k}"))
        return s.execute("SELECT v FROM transport.kv WHERE k = %s", (k,)).one().v  # type: ignore[no-any-return]

    results: list[str] = []

    async def one(k: int) -> None:
        results.append(await bridge.to_thread(from_a_thread, k))

    async with anyio.create_task_group() as tg:
        for k in range(20):
            tg.start_soon(one, k)
    assert sorted(results) == sorted(f"t{k}" for k in range(20))


async def test_a_deadline_becomes_the_drivers_timeout_and_frees_the_slot(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    # The node answers in 5 s; the caller gives up after 0.2 s. The driver must
    # give the stream id and the in-flight slot back then, not after 5 or 10 s.
    cql_server.prime("SELECT v FROM transport.kv WHERE k = 5", delay=5.0, times=1)
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.2):
            await session.execute("SELECT v FROM transport.kv WHERE k = 5")
    await eventually(lambda: session.statistics().in_flight == 0)
    # Freed by the driver's OperationTimedOut path, not by the answer: the
    # stream id is orphaned (the server may still answer on it).
    assert sum(len(conn.orphaned_request_ids) for conn in connections(session)) == 1
    assert session.statistics().finished == 1


async def test_a_shorter_timeout_of_the_callers_own_is_kept(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.prime("SELECT v FROM transport.kv WHERE k = 6", no_response=True, times=1)
    with anyio.fail_after(30):
        with pytest.raises(OperationTimedOut):
            await session.execute("SELECT v FROM transport.kv WHERE k = 6", timeout=0.1)
    assert session.statistics().in_flight == 0


async def test_shutdown_from_the_loop_closes_every_socket(
    cql_server: ServerThread, keyspace: None
) -> None:
    cluster = loop_cluster(cql_server)
    session = await cluster.connect(KS)
    conns = connections(session)
    assert conns
    await cluster.shutdown()
    assert all(conn.is_closed and conn._socket.fileno() == -1 for conn in conns)
    assert cluster.cluster.is_shutdown


async def test_several_clusters_share_one_loop(cql_server: ServerThread, keyspace: None) -> None:
    async with loop_cluster(cql_server) as one, loop_cluster(cql_server) as two:
        s1, s2 = await one.connect(KS), await two.connect(KS)
        await s1.execute("INSERT INTO transport.kv (k, v) VALUES (40, 'one')")
        await s2.execute("INSERT INTO transport.kv (k, v) VALUES (41, 'two')")
        rows = await s1.execute("SELECT v FROM transport.kv WHERE k = 41")
        assert rows.one().v == "two"
        assert (await s2.execute("SELECT v FROM transport.kv WHERE k = 40")).one().v == "one"


@pytest.fixture
def restartable() -> Iterator[ServerThread]:
    with CQLServer.start_in_thread() as server:
        yield server


async def test_connections_come_back_after_a_server_restart(restartable: ServerThread) -> None:
    async with loop_cluster(restartable, idle_heartbeat_interval=0) as cluster:
        session = await cluster.connect()
        await session.execute("SELECT release_version FROM system.local")
        await bridge.to_thread(restartable.stop_node, 0)
        with pytest.raises(NoHostAvailable):
            await session.execute("SELECT release_version FROM system.local")
        await bridge.to_thread(restartable.start_node, 0)

        async def works() -> bool:
            try:
                await session.execute("SELECT release_version FROM system.local")
            except NoHostAvailable:
                return False
            return True

        with anyio.fail_after(60):  # bounds a hang; the reconnection delay is the driver's
            while not await works():  # noqa: ASYNC110 - reconnection is the driver's, no event
                await anyio.sleep(0.05)
        assert all(isinstance(c, LoopConnection) for c in connections(session))


# -- the loop's end and several loops: plain threads, each running its own loop ----------


def run_in_thread(fn: Any) -> Any:
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the test
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_loop_that_ends_with_connections_open_fails_what_waits_and_leaks_nothing(
    cql_server: ServerThread, keyspace: None, backend: str
) -> None:
    cql_server.prime("SELECT v FROM transport.kv WHERE k = 9", no_response=True)
    cql_server.clear_activity()
    state: dict[str, Any] = {}

    async def main() -> None:
        cluster = loop_cluster(cql_server)
        session = await cluster.connect(KS)
        state["cluster"] = cluster
        state["connections"] = connections(session)
        # A sync caller on another thread waits for an answer that never comes...
        state["future"] = session.session.execute_async(
            "SELECT v FROM transport.kv WHERE k = 9", timeout=None
        )
        await eventually(lambda: len(cql_server.activity(contains="WHERE k = 9")) == 1)
        # ...and the loop ends without shutting the cluster down.

    def run() -> None:
        if backend == "trio":
            anyio.run(main, backend="trio")
        else:
            anyio.run(main, backend="asyncio", backend_options={"use_uvloop": backend == "uvloop"})

    run_in_thread(run)
    # Failed with a message that says why (the driver wraps it: its retry found no other host).
    with pytest.raises((NoHostAvailable, ConnectionShutdown), match="event loop that owned"):
        state["future"].result()
    assert all(conn._socket.fileno() == -1 for conn in state["connections"])
    cluster = state["cluster"].cluster
    for thread in threading.enumerate():
        if thread.name == "bridge-cassandra-shutdown":
            thread.join(60)
    assert cluster.is_shutdown


def test_clusters_on_two_loops_in_two_threads(cql_server: ServerThread, keyspace: None) -> None:
    async def use(k: int) -> str:
        async with loop_cluster(cql_server) as cluster:
            session = await cluster.connect(KS)
            await session.execute_concurrent(
                [
                    ("INSERT INTO transport.kv (k, v) VALUES (%s, %s)", (k + i, str(i)))
                    for i in range(50)
                ]
            )
            rows = await session.execute("SELECT v FROM transport.kv WHERE k = %s", (k + 49,))
            return rows.one().v  # type: ignore[no-any-return]

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(use(100)))),
        threading.Thread(target=lambda: results.append(anyio.run(use, 200, backend="trio"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == ["49", "49"]


async def test_a_cluster_bound_to_one_loop_refuses_another(
    cql_server: ServerThread, keyspace: None
) -> None:
    cluster = loop_cluster(cql_server)
    try:
        await cluster.connect(KS)

        async def connect_elsewhere() -> None:
            await cluster.connect(KS)

        with pytest.raises(RuntimeError, match="one AsyncCluster per loop"):
            await bridge.to_thread(asyncio.run, connect_elsewhere())
    finally:
        await cluster.shutdown()


async def test_bad_transport_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="transport must be"):
        AsyncCluster(transport="libev")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        AsyncCluster(transport="loop", connection_class=LoopConnection)
    assert AsyncCluster(connection_class=LoopConnection).transport == "thread"


# -- TLS: a TLS-terminating proxy in front of the CQL server -------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (apt-get install openssl) to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_proxy(cql_server: ServerThread, tls_files: tuple[str, str]) -> Iterator[int]:
    """127.0.0.1:<port> speaking TLS, forwarding the plain bytes to the CQL server."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    ready: list[int] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", cql_server.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        ready.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(60)
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(60)
    loop.close()


@pytest.mark.parametrize("transport", ["loop", "thread"])
async def test_tls_connections_work_on_both_transports(
    tls_proxy: int, tls_files: tuple[str, str], keyspace: None, transport: str
) -> None:
    cert, _ = tls_files
    context = ssl.create_default_context(cafile=cert)
    async with AsyncCluster(
        ["127.0.0.1"],
        port=tls_proxy,
        ssl_context=context,
        transport=transport,  # type: ignore[arg-type]
    ) as cluster:
        session = await cluster.connect(KS)
        assert all(isinstance(c._socket, ssl.SSLSocket) for c in connections(session))
        insert = await session.prepare("INSERT INTO transport.kv (k, v) VALUES (?, ?)")
        big = "x" * 100_000  # several TLS records each way
        await session.execute_concurrent([(insert, (k, big)) for k in range(300, 340)])
        rows = await session.execute("SELECT k, v FROM transport.kv WHERE k = %s", (339,))
        assert rows.one().v == big


@pytest.mark.allow_blocking  # the loop is held on purpose, so that the thread's calls pile up
async def test_calls_from_another_thread_reach_the_loop_with_one_wake_up_per_batch(
    cluster_and_session: tuple[AsyncCluster, AsyncSession],
) -> None:
    cluster, session = cluster_and_session
    reactor = cluster._reactor
    assert reactor is not None
    batches: list[int] = []
    complete = reactor.complete

    def counting_complete() -> None:
        batches.append(len(reactor._calls))
        complete()

    reactor.complete = counting_complete  # type: ignore[method-assign]
    futures: list[Any] = []

    def fifty_requests() -> None:  # writes and request timers, from a foreign thread
        futures.extend(
            session.session.execute_async("SELECT v FROM transport.kv WHERE k = 1")
            for _ in range(50)
        )

    thread = threading.Thread(target=fifty_requests)
    thread.start()
    thread.join()  # on the loop thread: nothing runs on the loop meanwhile
    for future in futures:
        await bridge.wrap_future(future)
    # The first wake-up carried the whole batch: one flush of the fifty requests
    # and one arming of their timers, not fifty of each (a third call only if a
    # driver heartbeat on the control connection happened to land meanwhile).
    assert batches[0] in (2, 3)


# -- protocol v5 segments on the loop (and v4's bare frames beside them) -------------


@pytest.mark.parametrize("budget", [0.0, 10.0])
@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.allow_blocking  # the loop is held on purpose, so that the answers pile up
async def test_a_burst_of_answers_is_decoded_a_slice_at_a_time(
    cql_server: ServerThread,
    keyspace: None,
    protocol: int,
    budget: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fifty answers read off the socket at once (under v5, packed by the server
    # into one or a few segments) must not be decoded in one loop turn: with no
    # time budget at all, every slice decodes exactly one frame; with time to
    # spare, a slice stops at FRAMES_PER_SLICE (each frame wakes a task).
    monkeypatch.setattr(transport_module, "MIN_BUDGET", budget)
    monkeypatch.setattr(transport_module, "MAX_BUDGET", budget)
    async with loop_cluster(cql_server, protocol_version=protocol) as cluster:
        session = await cluster.connect(KS)
        (conn,) = connections(session)
        assert conn.protocol_version == protocol
        assert (conn._segments is not None) == (protocol == 5)
        conn._budget = budget
        frames_per_slice: list[int] = []
        decoded = [0]
        process, decode_slice = conn.process_msg, conn._decode_slice

        def counting_process(*args: Any) -> Any:
            decoded[0] += 1
            return process(*args)

        def counting_slice(start: float) -> None:
            before = decoded[0]
            decode_slice(start)
            frames_per_slice.append(decoded[0] - before)

        conn.process_msg = counting_process
        conn._decode_slice = counting_slice
        query = "INSERT INTO transport.kv (k, v) VALUES (1, 'burst')"
        # The answers come half a second after the requests, all at once...
        cql_server.prime(query, delay=0.5, times=50)
        futures = [session.session.execute_async(query) for _ in range(50)]
        await eventually(lambda: not conn._out and not conn._flush_pending)  # sent
        # ...while the loop is held until all fifty (13 bytes each, at least) wait in the socket.
        wait_until_buffered(conn, 50 * 13)
        for future in futures:
            await bridge.wrap_future(future)
    most = 1 if budget == 0.0 else transport_module.FRAMES_PER_SLICE
    assert sum(frames_per_slice) >= 50
    assert max(frames_per_slice) == most
    assert len([n for n in frames_per_slice if n]) >= 50 // most


def wait_until_buffered(conn: LoopConnection, size: int) -> None:
    import select
    import socket
    import time

    sock = conn._socket
    give_up = time.monotonic() + 30  # a bound on the wait, not an assertion on time
    while time.monotonic() < give_up:
        select.select([sock], [], [], 1.0)
        try:
            if len(sock.recv(65536, socket.MSG_PEEK)) >= size:
                return
        except BlockingIOError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"the server's answers never reached {size} bytes in the socket")


async def test_v5_requests_of_one_loop_turn_travel_in_one_segment(
    cql_server: ServerThread, keyspace: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed: list[int] = []
    pack = transport_module.pack

    def counting_pack(frames: list[bytes]) -> bytes:
        packed.append(len(frames))
        return pack(frames)

    monkeypatch.setattr(transport_module, "pack", counting_pack)
    async with loop_cluster(cql_server, protocol_version=5) as cluster:
        session = await cluster.connect(KS)
        packed.clear()
        futures = [
            session.session.execute_async("SELECT v FROM transport.kv WHERE k = 1")
            for _ in range(50)
        ]  # queued in this loop turn: one flush, one segment (50 small frames fit in 128 KiB)
        for future in futures:
            await bridge.wrap_future(future)
    assert packed[0] == 50


@pytest.mark.parametrize("protocol", [4, 5])
async def test_values_over_the_segment_limit_cross_both_ways(
    cql_server: ServerThread, keyspace: None, protocol: int
) -> None:
    # Over 128 KiB a v5 frame is cut across segments that are not self-contained.
    big = "".join(chr(0x41 + i % 26) for i in range(300_000))
    async with loop_cluster(cql_server, protocol_version=protocol) as cluster:
        session = await cluster.connect(KS)
        insert = await session.prepare("INSERT INTO transport.kv (k, v) VALUES (?, ?)")
        await session.execute_concurrent([(insert, (k, big)) for k in range(400, 405)])
        rows = await session.execute("SELECT k, v FROM transport.kv WHERE k IN (400, 404)")
        assert [(row.k, row.v) for row in rows] == [(400, big), (404, big)]
