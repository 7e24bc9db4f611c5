"""bridge.adapters.cassandra: the real driver against the in-memory CQL server, real sockets.

Every test that takes the `session` (or `cluster`) fixture runs with both
transports: "loop" (the test's event loop reads and writes the driver's
sockets) and "thread" (the driver's libev reactor thread).
"""

from __future__ import annotations

import datetime
import decimal
import gc
import logging
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("cassandra")

from cassandra import (
    InvalidRequest,
    OperationTimedOut,
    ReadFailure,
    ReadTimeout,
    Unavailable,
    WriteFailure,
    WriteTimeout,
)
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.io.asyncioreactor import AsyncioConnection
from cassandra.io.libevreactor import LibevConnection
from cassandra.protocol import (
    OverloadedErrorMessage,
    ServerError,
    SyntaxException,
)
from cassandra.query import SimpleStatement
from cassandra.util import Date, Time

import bridge
from bridge.adapters.cassandra import (
    AsyncCluster,
    AsyncResultSet,
    AsyncSession,
    MorePagesError,
    default_max_in_flight,
)
from bridge.adapters.cassandra._transport import LoopConnection
from bridge.testing.cqlserver import CQLServer, ServerThread
from tests.support import eventually
from tests.testing.conftest import HostEvents

from .conftest import make_cluster

pytestmark = pytest.mark.anyio

KS = "adapter"
WAIT = 60.0  # bound for driver-side reactions (host events); never what a test measures


@pytest.fixture(scope="module")
def sync_session(cql_server: ServerThread) -> Iterator[Session]:
    """One driver session for the module; each test wraps it in its own AsyncSession."""
    cluster = make_cluster(cql_server)
    session = cluster.connect()
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KS} "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.set_keyspace(KS)
    session.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v text)")
    session.execute("CREATE TABLE IF NOT EXISTS paged (p int, c int, v text, PRIMARY KEY (p, c))")
    insert = session.prepare("INSERT INTO paged (p, c, v) VALUES (?, ?, ?)")
    for c in range(95):
        session.execute(insert, [1, c, f"v{c}"])
    try:
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture(params=["loop", "thread"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def cluster(
    cql_server: ServerThread, sync_session: Session, transport: str
) -> AsyncIterator[AsyncCluster]:
    """An AsyncCluster on this test's loop, with the transport under test."""
    async with AsyncCluster(
        cql_server.contact_points,
        port=cql_server.port,
        transport=transport,  # type: ignore[arg-type]
    ) as cluster:
        yield cluster


@pytest.fixture
async def session(cluster: AsyncCluster) -> AsyncSession:
    return await cluster.connect(KS)


@pytest.fixture(autouse=True)
def no_faults(cql_server: ServerThread) -> Iterator[None]:
    yield
    cql_server.clear_faults()


# -- cluster, session, shutdown ---------------------------------------------------


async def test_async_cluster_connects_runs_queries_and_shuts_down(
    cql_server: ServerThread, sync_session: Session, transport: str
) -> None:
    async with AsyncCluster(
        cql_server.contact_points,
        port=cql_server.port,
        transport=transport,  # type: ignore[arg-type]
    ) as cluster:
        session = await cluster.connect(KS)
        assert cluster.transport == transport
        assert isinstance(cluster.cluster, Cluster)
        assert isinstance(session.session, Session)
        assert session.keyspace == KS
        row = (await session.execute("SELECT release_version FROM system.local")).one()
        assert row.release_version.startswith("4.")
    assert cluster.cluster.is_shutdown
    with pytest.raises(bridge.ClosedError, match="connect again"):
        await session.execute("SELECT release_version FROM system.local")


async def test_session_after_shutdown_raises_a_clear_error(
    cql_server: ServerThread, transport: str
) -> None:
    cluster = AsyncCluster(
        cql_server.contact_points,
        port=cql_server.port,
        transport=transport,  # type: ignore[arg-type]
    )
    session = await cluster.connect()
    await session.shutdown()
    assert session.is_shutdown
    for use in (
        lambda: session.execute("SELECT * FROM system.local"),
        lambda: session.prepare("SELECT * FROM system.local"),
        lambda: session.set_keyspace(KS),
        lambda: session.execute_concurrent([("SELECT * FROM system.local", None)]),
    ):
        with pytest.raises(bridge.ClosedError, match="was shut down"):
            await use()
    with pytest.raises(bridge.ClosedError):
        session.stream("SELECT * FROM system.local")
    await cluster.shutdown()
    with pytest.raises(bridge.ClosedError, match="new AsyncCluster"):
        await cluster.connect()


async def test_a_sync_session_shut_down_elsewhere_is_reported_as_closed(
    cql_server: ServerThread,
) -> None:
    cluster = make_cluster(cql_server)
    try:
        session = AsyncSession(await bridge.to_thread(cluster.connect))
        await bridge.to_thread(session.session.shutdown)
        with pytest.raises(bridge.ClosedError):
            await session.execute("SELECT * FROM system.local")
    finally:
        await bridge.to_thread(cluster.shutdown)


async def test_wrapping_needs_a_driver_session() -> None:
    with pytest.raises(TypeError, match="AsyncCluster"):
        AsyncSession(object())  # type: ignore[arg-type]


# -- queries ----------------------------------------------------------------------

TYPES: dict[str, tuple[str, Any]] = {
    "a": ("ascii", "plain ascii"),
    "b": ("bigint", -(2**62)),
    "bl": ("blob", b"\x00\xffbytes"),
    "bo": ("boolean", True),
    "d": ("date", Date(datetime.date(2024, 2, 29))),
    "dc": ("decimal", decimal.Decimal("-12345.678900")),
    "db": ("double", 3.141592653589793),
    "fl": ("float", 1.5),
    "i4": ("inet", "192.168.1.20"),
    "n": ("int", -(2**31)),
    "si": ("smallint", -32768),
    "t": ("text", "héllo wörld ✓"),
    "tm": ("time", Time(datetime.time(13, 14, 15, 123456))),
    "ts": ("timestamp", datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)),
    "tu": ("timeuuid", uuid.UUID("d2177dd0-eaa2-11de-a572-001b779c76e3")),
    "ti": ("tinyint", 127),
    "u": ("uuid", uuid.UUID("00000000-0000-4000-8000-000000000001")),
    "vc": ("varchar", "varchar text"),
    "vi": ("varint", 2**100 + 1),
    "li": ("list<int>", [3, 1, 2]),
    "st": ("set<text>", {"b", "a"}),
    "mp": ("map<text, int>", {"x": 1, "y": -2}),
}


async def test_every_type_round_trips_prepared_and_simple(session: AsyncSession) -> None:
    cols = ", ".join(f"{name} {cql}" for name, (cql, _) in TYPES.items())
    await session.execute(f"CREATE TABLE IF NOT EXISTS all_types (k int PRIMARY KEY, {cols})")
    names = ", ".join(TYPES)
    values = [v for _, v in TYPES.values()]
    insert = await session.prepare(
        f"INSERT INTO all_types (k, {names}) VALUES (?, {', '.join('?' * len(TYPES))})"
    )
    await session.execute(insert, [1, *values])
    await session.execute(
        f"INSERT INTO all_types (k, {names}) VALUES (%s, {', '.join(['%s'] * len(TYPES))})",
        [2, *values],
    )
    select = await session.prepare("SELECT * FROM all_types WHERE k = ?")
    for k in (1, 2):
        row = (await session.execute(select, [k])).one()
        for name, (cql, value) in TYPES.items():
            got = getattr(row, name)
            if cql.startswith(("set", "map")):
                got = type(value)(got)
            assert got == value, (name, got, value)


async def test_insert_update_select_delete(session: AsyncSession) -> None:
    await session.execute("INSERT INTO kv (k, v) VALUES (%s, %s)", [10, "ten"])
    assert (await session.execute("SELECT v FROM kv WHERE k = 10")).one().v == "ten"
    await session.execute("UPDATE kv SET v = %s WHERE k = %s", ["TEN", 10])
    result = await session.execute("SELECT v FROM kv WHERE k = 10")
    assert [r.v for r in result] == ["TEN"]
    await session.execute("DELETE FROM kv WHERE k = 10")
    result = await session.execute("SELECT v FROM kv WHERE k = 10")
    assert result.one() is None
    assert not result and len(result) == 0 and not result.has_more_pages


async def test_lightweight_transactions_report_was_applied(session: AsyncSession) -> None:
    await session.execute("DELETE FROM kv WHERE k = 11")
    first = await session.execute("INSERT INTO kv (k, v) VALUES (11, 'a') IF NOT EXISTS")
    second = await session.execute("INSERT INTO kv (k, v) VALUES (11, 'b') IF NOT EXISTS")
    assert (first.was_applied, second.was_applied) == (True, False)


async def test_a_result_holds_its_own_page_and_fetches_the_rest_on_request(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.clear_activity()
    query = SimpleStatement("SELECT c FROM paged WHERE p = 1", fetch_size=10)
    result = await session.execute(query)
    assert isinstance(result, AsyncResultSet)
    assert [r.c for r in result.current_rows] == list(range(10))  # no request made
    assert [r.c for r in result.current_rows] == list(range(10))
    assert result.has_more_pages and result.paging_state is not None
    assert len(cql_server.activity(contains="FROM paged")) == 1
    second = await result.next_page()
    assert [r.c for r in second.current_rows] == list(range(10, 20))
    assert [r.c for r in await result.all()] == list(range(95))
    # A page can be resumed from its paging state, as the driver allows.
    resumed = await session.execute(query, paging_state=second.paging_state)
    assert resumed.one().c == 20


async def test_sync_iteration_of_a_result_with_more_pages_raises_instead_of_stopping_early(
    session: AsyncSession,
) -> None:
    # The trap of porting `for row in session.execute(q)`: without the error,
    # `for row in await session.execute(q)` would see 10 of the 95 rows.
    result = await session.execute(
        SimpleStatement("SELECT c FROM paged WHERE p = 1", fetch_size=10)
    )
    with pytest.raises(MorePagesError, match=r"async for row in result"):
        for _ in result:
            pass
    with pytest.raises(MorePagesError, match=r"await result\.all"):
        len(result)
    assert len(await result.all()) == 95
    # A result that is all there is iterates and counts as before.
    whole = await session.execute("SELECT c FROM paged WHERE p = 1")
    assert not whole.has_more_pages
    assert [r.c for r in whole] == list(range(95)) and len(whole) == 95


async def test_the_last_page_has_no_next_page(session: AsyncSession) -> None:
    result = await session.execute("SELECT v FROM kv WHERE k = 1")
    with pytest.raises(LookupError, match="has_more_pages"):
        await result.next_page()


async def test_prepare_and_set_keyspace_run_off_the_loop(
    cql_server: ServerThread, session: AsyncSession
) -> None:
    prepared = await session.prepare("SELECT v FROM kv WHERE k = ?")
    assert (await session.execute(prepared, [999])).one() is None
    cluster = make_cluster(cql_server)
    try:
        other = AsyncSession(await bridge.to_thread(cluster.connect))
        await other.set_keyspace(KS)
        assert other.keyspace == KS
    finally:
        await bridge.to_thread(cluster.shutdown)


# -- streaming --------------------------------------------------------------------


async def test_stream_reads_every_row_of_every_page(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.clear_activity()
    async with session.stream("SELECT c, v FROM paged WHERE p = %s", [1], fetch_size=7) as rows:
        got = [(r.c, r.v) async for r in rows]
    assert got == [(c, f"v{c}") for c in range(95)]
    requests = cql_server.activity(contains="FROM paged")
    assert len(requests) == 14  # ceil(95 / 7)
    assert {r.page_size for r in requests} == {7}


@pytest.mark.parametrize("prefetch", [0, 1, 3])
async def test_pages_read_ahead_never_run_more_than_prefetch_ahead_of_the_consumer(
    session: AsyncSession, cql_server: ServerThread, prefetch: int
) -> None:
    prepared = await session.prepare("SELECT c FROM paged WHERE p = ?")
    cql_server.clear_activity()

    def requested() -> int:
        return len(cql_server.activity(opcode="EXECUTE", contains="FROM paged"))

    total = 10  # 95 rows in pages of 10
    seen = []
    async with session.pages(prepared, [1], fetch_size=10, prefetch=prefetch) as pages:
        async for page in pages:
            seen.extend(r.c for r in page)
            consumed = pages.delivered
            expected = min(total, consumed + prefetch)
            # Let the read-ahead happen (state of other threads: poll), then
            # check it went exactly as far as allowed and no further.
            await eventually(lambda e=expected: requested() >= e)  # type: ignore[misc]
            assert requested() == expected
            assert pages.requested == expected
            assert pages.buffered <= prefetch
    assert seen == list(range(95))


async def test_a_page_stream_dropped_by_break_is_freed_and_closed_without_the_gc(
    session: AsyncSession,
) -> None:
    gc.disable()  # only reference counting may end the stream
    try:
        pages = session.pages("SELECT c FROM paged WHERE p = 1", fetch_size=5, prefetch=2)
        stream = weakref.ref(pages)
        buffer = pages._buffer
        async for _ in pages:
            break
        del pages  # what leaving a function after `break` does
        assert stream() is None  # no cycle holds it: a request in flight holds the producer only
        assert buffer is not None and buffer.closed  # and __del__ closed it
        await eventually(lambda: session.statistics().in_flight == 0)
    finally:
        gc.enable()


async def test_stopping_a_stream_early_stops_fetching(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.clear_activity()
    async with session.stream("SELECT c FROM paged WHERE p = 1", fetch_size=5, prefetch=2) as rows:
        async for row in rows:
            if row.c == 12:  # on the third page
                break
    pages = rows.pages
    await eventually(lambda: session.statistics().in_flight == 0)
    assert pages.requested <= 3 + 2
    assert len(cql_server.activity(contains="FROM paged")) == pages.requested
    assert [r async for r in rows] == []  # closed: nothing more, no fetch


async def test_a_failing_page_raises_the_drivers_error_to_the_consumer(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    rows = session.stream("SELECT c FROM paged WHERE p = 1", fetch_size=50, prefetch=0)
    first = await rows.__anext__()
    assert first.c == 0
    cql_server.prime("SELECT c FROM paged", error="read_failure", times=1)
    with pytest.raises(ReadFailure):
        async for _ in rows:
            pass


# -- faults: the driver's own exceptions --------------------------------------------


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("read_timeout", ReadTimeout),
        ("write_timeout", WriteTimeout),
        ("invalid", InvalidRequest),
        ("syntax_error", SyntaxException),
        ("read_failure", ReadFailure),
        ("write_failure", WriteFailure),
    ],
)
async def test_each_injected_fault_raises_the_drivers_exception(
    session: AsyncSession, cql_server: ServerThread, kind: str, exc_type: type[BaseException]
) -> None:
    cql_server.prime("SELECT v FROM kv", error=kind)  # type: ignore[arg-type]
    with pytest.raises(exc_type):
        await session.execute("SELECT v FROM kv WHERE k = 1")
    assert session.statistics().in_flight == 0


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("unavailable", Unavailable),
        ("overloaded", OverloadedErrorMessage),
        ("server_error", ServerError),
    ],
)
async def test_errors_the_retry_policy_retries_end_in_no_host_available(
    session: AsyncSession, cql_server: ServerThread, kind: str, exc_type: type[BaseException]
) -> None:
    # The default retry policy moves on to the next host; with one node there is none.
    cql_server.prime("SELECT v FROM kv", error=kind)  # type: ignore[arg-type]
    with pytest.raises(NoHostAvailable) as info:
        await session.execute("SELECT v FROM kv WHERE k = 1")
    assert [type(e) for e in info.value.errors.values()] == [exc_type]


async def test_no_response_raises_operation_timed_out(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.prime("SELECT v FROM kv", no_response=True, times=1)
    with pytest.raises(OperationTimedOut):
        await session.execute("SELECT v FROM kv WHERE k = 1", timeout=0.2)
    assert session.statistics().in_flight == 0


async def test_errors_raised_while_sending_come_back_and_free_the_slot(
    session: AsyncSession,
) -> None:
    prepared = await session.prepare("SELECT v FROM kv WHERE k = ?")
    with pytest.raises(ValueError):
        await session.execute(prepared, [1, 2, 3])  # too many values: the driver refuses
    with pytest.raises(InvalidRequest):
        await session.execute("SELECT v FROM no_such_table")
    assert session.statistics().in_flight == 0


# -- concurrency ------------------------------------------------------------------


async def test_execute_concurrent_keeps_input_order_and_its_bound(session: AsyncSession) -> None:
    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    await session.execute_concurrent([(insert, (k, str(k))) for k in range(200)], concurrency=7)
    select = await session.prepare("SELECT v FROM kv WHERE k = ?")
    results = await session.execute_concurrent([(select, (k,)) for k in range(200)], concurrency=7)
    assert [(ok, r.one().v) for ok, r in results] == [(True, str(k)) for k in range(200)]
    stats = session.statistics()
    assert stats.peak == 7 and stats.in_flight == 0
    assert await session.execute_concurrent([]) == []


async def test_execute_concurrent_raises_the_first_error_or_collects_them(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    statements = [("SELECT v FROM kv WHERE k = %s", (k,)) for k in range(20)]
    cql_server.prime("WHERE k = 13", error="read_timeout")
    with pytest.raises(ReadTimeout):
        await session.execute_concurrent(statements, concurrency=4)
    results = await session.execute_concurrent(
        statements, concurrency=4, raise_on_first_error=False
    )
    assert [ok for ok, _ in results] == [k != 13 for k in range(20)]
    assert isinstance(results[13].result_or_exc, ReadTimeout)
    await eventually(lambda: session.statistics().in_flight == 0)


class SmallPoolConnection(LibevConnection):  # type: ignore[misc]
    """The default reactor with only 64 request ids per connection: a small pool."""

    max_in_flight = 64


@pytest.fixture
async def small_pool(
    cql_server: ServerThread, sync_session: Session, transport: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncSession]:
    """A session whose connections have only 64 request ids: a small pool."""
    if transport == "loop":
        monkeypatch.setattr(LoopConnection, "max_in_flight", 64)
        options: dict[str, Any] = {"transport": "loop"}
    else:
        options = {"connection_class": SmallPoolConnection}
    async with AsyncCluster(cql_server.contact_points, port=cql_server.port, **options) as cluster:
        yield await cluster.connect(KS)


async def test_the_bound_is_sized_from_the_pool(small_pool: AsyncSession) -> None:
    # 63 request ids per connection (v4), half of them for this session.
    assert default_max_in_flight(small_pool.session.cluster) == 31
    assert small_pool.limiter.tokens == 31


@pytest.mark.allow_blocking  # proven without a timing threshold, see the first comment
async def test_twenty_thousand_concurrent_executes_on_a_small_pool_never_block_the_loop(
    small_pool: AsyncSession,
) -> None:
    # "Never blocks" is proven by what ran, not by how long anything took:
    # the only wait on the way into the driver is the pool's condition (a full
    # connection), counted here, and strict mode makes every other known
    # blocking call on the loop thread raise.
    session = small_pool
    prepared = await session.prepare("SELECT v FROM kv WHERE k = ?")
    loop_thread = threading.get_ident()
    waits_on_loop = 0
    pools = list(session.session._pools.values())
    assert pools
    for pool in pools:
        condition = pool._stream_available_condition
        real_wait = condition.wait

        def counting_wait(timeout: float | None = None, real_wait: Any = real_wait) -> bool:
            nonlocal waits_on_loop
            if threading.get_ident() == loop_thread:
                waits_on_loop += 1
            return real_wait(timeout)  # type: ignore[no-any-return]

        condition.wait = counting_wait
    heartbeats = 0
    done = anyio.Event()
    ok = 0

    async def heartbeat() -> None:
        nonlocal heartbeats
        while not done.is_set():
            await anyio.sleep(0.001)
            heartbeats += 1

    async def one(k: int) -> None:
        nonlocal ok
        await session.execute(prepared, (k % 50,))
        ok += 1

    with bridge.strict():
        async with anyio.create_task_group() as outer:
            outer.start_soon(heartbeat)
            async with anyio.create_task_group() as tg:
                for k in range(20_000):
                    tg.start_soon(one, k)
                await eventually(lambda: session.statistics().waiting > 1000)
                beats_while_queued = heartbeats
            done.set()
    stats = session.statistics()
    assert ok == 20_000
    assert stats.peak == stats.max_in_flight == 31  # never more than the pool can take
    assert stats.in_flight == 0 and stats.waiting == 0
    assert waits_on_loop == 0  # the loop never waited for a stream id
    assert heartbeats > beats_while_queued  # the loop kept turning while requests queued


# -- cancellation -----------------------------------------------------------------


async def test_a_cancelled_execute_returns_at_once_and_frees_its_slot_when_the_driver_is_done(
    session: AsyncSession, cql_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    cql_server.prime("SELECT v FROM kv WHERE k = 77", no_response=True, times=1)
    async with anyio.create_task_group() as tg:  # cancelled by hand: no deadline to pass on
        tg.start_soon(lambda: session.execute("SELECT v FROM kv WHERE k = 77", timeout=2))
        await eventually(lambda: session.statistics().sent == 1)
        tg.cancel_scope.cancel()
    # The driver still has the request: its slot stays taken until the driver
    # gives up (OperationTimedOut, dropped: nobody is waiting for it).
    assert session.statistics().in_flight == 1
    await eventually(lambda: session.statistics().in_flight == 0)
    assert session.statistics().finished == session.statistics().sent == 1
    with caplog.at_level(logging.ERROR):
        assert (await session.execute("SELECT v FROM kv WHERE k = 1")) is not None
    assert "never retrieved" not in caplog.text


async def test_a_cancellation_storm_leaks_no_in_flight_slot(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    session = AsyncSession(session.session, max_in_flight=20)
    cql_server.prime("SELECT v FROM kv WHERE k = 5", delay=0.05)
    cql_server.clear_activity()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(session.execute, "SELECT v FROM kv WHERE k = 5")
            await eventually(lambda: session.statistics().in_flight == 20)
            scope.cancel()
    stats = session.statistics()
    assert stats.waiting == 0  # the queued ones were dropped at once, never sent
    await eventually(lambda: session.statistics().in_flight == 0)
    stats = session.statistics()
    assert stats.finished == stats.sent < 500
    await eventually(lambda: len(cql_server.activity(contains="WHERE k = 5")) == stats.sent)
    # The session still works, at full width.
    results = await session.execute_concurrent(
        [("SELECT v FROM kv WHERE k = %s", (k,)) for k in range(40)], concurrency=40
    )
    assert all(ok for ok, _ in results)


async def test_anyio_timeouts_cancel_execute(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    cql_server.prime("SELECT v FROM kv WHERE k = 78", delay=0.3, times=1)
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await session.execute("SELECT v FROM kv WHERE k = 78")
    await eventually(lambda: session.statistics().in_flight == 0)


@pytest.mark.allow_blocking(reason="holds the loop past the deadline, as a loaded machine does")
async def test_a_deadline_delivered_late_still_ends_the_call_with_timeout_error(
    session: AsyncSession, cql_server: ServerThread
) -> None:
    # The driver's timeout is the deadline (+ a little). Held past both, the loop
    # finds the driver's OperationTimedOut (the thread transport's reactor thread
    # delivered it meanwhile) before it runs the deadline's own cancellation: the
    # caller must still get the TimeoutError its fail_after promises.
    cql_server.prime("SELECT v FROM kv WHERE k = 79", delay=5.0, times=1)

    async def hold_the_loop() -> None:
        await anyio.sleep(0.1)
        time.sleep(0.5)  # noqa: ASYNC251 - the point: a loop held past the deadline

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_the_loop)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await session.execute("SELECT v FROM kv WHERE k = 79")
    await eventually(lambda: session.statistics().in_flight == 0)


# -- three nodes: failover --------------------------------------------------------


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[ServerThread]:
    with CQLServer.start_in_thread(nodes=3) as server:
        yield server


@pytest.fixture(scope="module")
def three_node_schema(three_nodes: ServerThread) -> None:
    cluster = make_cluster(three_nodes)
    session = cluster.connect()
    session.execute(
        "CREATE KEYSPACE IF NOT EXISTS three "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    session.execute("CREATE TABLE IF NOT EXISTS three.kv (k int PRIMARY KEY, v text)")
    session.execute("INSERT INTO three.kv (k, v) VALUES (1, 'one')")
    cluster.shutdown()


async def test_failover_when_a_node_stops(
    three_nodes: ServerThread, three_node_schema: None, transport: str
) -> None:
    events = HostEvents()
    cluster = AsyncCluster(
        three_nodes.contact_points,
        port=three_nodes.port,
        transport=transport,  # type: ignore[arg-type]
    )
    (await bridge.to_thread(lambda: cluster.cluster)).register_listener(events)
    async with cluster:
        session = await cluster.connect()
        await failover(three_nodes, session, events)


async def failover(three_nodes: ServerThread, session: AsyncSession, events: HostEvents) -> None:
    query = "SELECT v FROM three.kv WHERE k = 1"
    # Failover needs the other two nodes connected first: on a loaded machine the
    # driver may still be opening (or retrying) a node's pool when connect() returns.
    await eventually(lambda: len(session.session._pools) == 3, limit=WAIT)
    down = events.expect_down("127.0.0.2")
    await bridge.to_thread(three_nodes.stop_node, 1)
    try:
        three_nodes.clear_activity()
        results = await session.execute_concurrent([(query, None)] * 30, concurrency=10)
        assert all(ok and r.one().v == "one" for ok, r in results)
        assert {a.node for a in three_nodes.activity(contains=query)} <= {0, 1, 2}
        assert await bridge.to_thread(down.wait, WAIT)
        three_nodes.clear_activity()
        for _ in range(6):
            assert (await session.execute(query)).one().v == "one"
        assert {a.node for a in three_nodes.activity(contains=query)} == {0, 2}
    finally:
        up = events.expect_up("127.0.0.2")
        await bridge.to_thread(three_nodes.start_node, 1)
        assert await bridge.to_thread(up.wait, WAIT)


# -- the asyncio reactor ------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncio_reactor_cluster(cql_server: ServerThread, sync_session: Session) -> Iterator[Cluster]:
    cluster = make_cluster(cql_server, connection_class=AsyncioConnection)
    try:
        yield cluster
    finally:
        cluster.shutdown()


async def test_the_asyncio_reactor_works_the_same(
    asyncio_reactor_cluster: Cluster, cql_server: ServerThread
) -> None:
    session = AsyncSession(await bridge.to_thread(asyncio_reactor_cluster.connect, KS))
    callback_threads: set[str] = set()
    # Delayed, so that the callbacks are added before the answer arrives.
    cql_server.prime("SELECT v FROM kv WHERE k = 1", delay=0.1, times=1)
    rf = session.session.execute_async("SELECT v FROM kv WHERE k = 1")
    finished = threading.Event()
    rf.add_callbacks(
        lambda _: (callback_threads.add(threading.current_thread().name), finished.set()),
        lambda _: finished.set(),
    )
    assert await bridge.to_thread(finished.wait, WAIT)
    assert callback_threads == {"asyncio_thread"}  # the driver's own loop, in its own thread

    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    await session.execute_concurrent([(insert, (k, f"r{k}")) for k in range(300, 400)])
    rows = [r async for r in session.stream("SELECT v FROM paged WHERE p = 1", fetch_size=20)]
    assert len(rows) == 95
    result = await session.execute("SELECT v FROM kv WHERE k = 342")
    assert result.one().v == "r342"
    cql_server.prime("SELECT v FROM kv WHERE k = 343", error="read_timeout", times=1)
    with pytest.raises(ReadTimeout):
        await session.execute("SELECT v FROM kv WHERE k = 343")
    with anyio.move_on_after(0.01):
        cql_server.prime("SELECT v FROM kv WHERE k = 344", delay=0.2, times=1)
        await session.execute("SELECT v FROM kv WHERE k = 344")
    await eventually(lambda: session.statistics().in_flight == 0)
    await session.shutdown()


async def test_a_finished_request_is_freed_without_the_gc(session: AsyncSession) -> None:
    # The driver's request timer and the future hold each other, and so did the
    # future's callbacks and bridge's request: cycles that left every finished
    # request to the GC's full collections (25-35 ms pauses under load).
    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    gc.disable()
    try:
        for query, args in ((insert, (1, "one")), ("SELECT k, v FROM kv WHERE k = %s", (1,))):
            result = await session.execute(query, args)
            future = weakref.ref(result.response_future)
            del result
            # Freed once the loop step that woke us and the driver's thread (thread
            # transport) have let go of their frames; with the GC off, a cycle never is.
            await eventually(lambda: future() is None)  # noqa: B023 - awaited in this iteration
    finally:
        gc.enable()
