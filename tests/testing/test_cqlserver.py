"""The real cassandra-driver (default settings) against one in-memory node over real sockets."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import socket
import struct
import threading
import uuid
from typing import Any

import pytest
from cassandra import (
    InvalidRequest,
    OperationTimedOut,
    ReadFailure,
    ReadTimeout,
    WriteFailure,
    WriteTimeout,
)
from cassandra.cluster import NoHostAvailable, Session
from cassandra.connection import ConnectionShutdown
from cassandra.protocol import (
    OverloadedErrorMessage,
    ServerError,
    SyntaxException,
)
from cassandra.query import BatchStatement, BatchType, SimpleStatement
from cassandra.util import Date, Time

from bridge.testing.cqlserver import ServerThread
from bridge.testing.cqlserver import _frame as f

from .conftest import make_cluster

KS = "bridge_test"


@pytest.fixture(scope="module", autouse=True)
def keyspace(session: Session) -> str:
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KS} "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.set_keyspace(KS)
    return KS


@pytest.fixture(autouse=True)
def no_faults(cql_server: ServerThread) -> Any:
    yield
    cql_server.clear_faults()


def test_driver_connects_with_defaults_on_protocol_v5(session: Session) -> None:
    assert session.cluster.protocol_version == 5
    row = session.execute("SELECT release_version, partitioner FROM system.local").one()
    assert row.partitioner == "org.apache.cassandra.dht.Murmur3Partitioner"
    assert row.release_version.startswith("4.")


def test_protocol_versions_above_v5_are_refused_like_cassandra(cql_server: ServerThread) -> None:
    # What the driver sends first (DSE_V2 = 0x42): an OPTIONS frame in its
    # version; the refusal comes back in that version, as Cassandra sends it.
    with socket.create_connection((cql_server.contact_points[0], cql_server.port), timeout=30) as s:
        s.sendall(struct.pack(">BBhBi", 0x42, 0, 3, f.OPTIONS, 0))
        version, _flags, stream, opcode, length = f.HEADER.unpack(_recv_exact(s, 9))
        body = _recv_exact(s, length)
        assert s.recv(1) == b""  # and the connection is closed
    assert (version, stream, opcode) == (0x80 | 0x42, 3, f.ERROR)
    code, n = struct.unpack_from(">iH", body)
    assert code == f.PROTOCOL_ERROR
    message = body[6 : 6 + n].decode()
    assert message == (
        "Invalid or unsupported protocol version (66); supported versions are (4/v4, 5/v5)"
    )


def test_ddl_creates_and_drops_tables(session: Session) -> None:
    session.execute("CREATE TABLE ddl_t (k int PRIMARY KEY, v text)")
    session.execute("INSERT INTO ddl_t (k, v) VALUES (1, 'one')")
    assert session.execute("SELECT v FROM ddl_t WHERE k = 1").one().v == "one"
    session.execute("DROP TABLE ddl_t")
    with pytest.raises(InvalidRequest):
        session.execute("SELECT v FROM ddl_t WHERE k = 1")


def test_schema_changes_reach_cluster_metadata(session: Session) -> None:
    session.execute("CREATE TABLE meta_t (k int, c text, v bigint, PRIMARY KEY (k, c))")
    # The driver waits for schema agreement, then refreshes its metadata.
    table = session.cluster.metadata.keyspaces[KS].tables["meta_t"]
    assert [c.name for c in table.partition_key] == ["k"]
    assert [c.name for c in table.clustering_key] == ["c"]
    assert table.columns["v"].cql_type == "bigint"


TYPES = {
    "a": ("ascii", "plain ascii"),
    "b": ("bigint", -(2**62)),
    "bl": ("blob", b"\x00\xffbytes"),
    "bo": ("boolean", True),
    "d": ("date", Date(datetime.date(2024, 2, 29))),
    "dc": ("decimal", decimal.Decimal("-12345.678900")),
    "db": ("double", 3.141592653589793),
    "fl": ("float", 1.5),
    "i4": ("inet", "192.168.1.20"),
    "i6": ("inet", "2001:db8::1"),
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


@pytest.fixture(scope="module")
def types_table(session: Session) -> str:
    cols = ", ".join(f"{name} {cql}" for name, (cql, _) in TYPES.items())
    session.execute(f"CREATE TABLE IF NOT EXISTS all_types (k int PRIMARY KEY, {cols})")
    return "all_types"


def _check_types_row(row: Any) -> None:
    for name, (cql, value) in TYPES.items():
        got = getattr(row, name)
        if cql == "set<text>":
            assert set(got) == value, name
        elif cql == "map<text, int>":
            assert dict(got) == value, name
        elif cql == "date":
            assert got == value, name
        else:
            assert got == value, (name, got, value)


def test_every_type_round_trips_through_prepared_statements(
    session: Session, types_table: str
) -> None:
    names = list(TYPES)
    markers = ", ".join("?" * len(names))
    insert = session.prepare(
        f"INSERT INTO {types_table} (k, {', '.join(names)}) VALUES (?, {markers})"
    )
    session.execute(insert, [1, *[v for _, v in TYPES.values()]])
    select = session.prepare(f"SELECT * FROM {types_table} WHERE k = ?")
    _check_types_row(session.execute(select, [1]).one())


def test_every_type_round_trips_through_simple_statements(
    session: Session, types_table: str
) -> None:
    names = list(TYPES)
    # The driver renders each value as a CQL literal into the query text.
    markers = ", ".join(["%s"] * len(names))
    session.execute(
        f"INSERT INTO {types_table} (k, {', '.join(names)}) VALUES (%s, {markers})",
        [2, *[v for _, v in TYPES.values()]],
    )
    _check_types_row(session.execute(f"SELECT * FROM {types_table} WHERE k = %s", [2]).one())


def test_counters_count_through_prepared_and_simple_updates(session: Session) -> None:
    session.execute("CREATE TABLE IF NOT EXISTS hits (page text PRIMARY KEY, n counter)")
    bump = session.prepare("UPDATE hits SET n = n + ? WHERE page = ?")
    session.execute(bump, [5, "home"])
    session.execute("UPDATE hits SET n = n + %s WHERE page = %s", [-2, "home"])
    assert session.execute("SELECT n FROM hits WHERE page = 'home'").one().n == 3


def test_nulls_round_trip(session: Session, types_table: str) -> None:
    session.execute(f"INSERT INTO {types_table} (k, t, n) VALUES (3, null, null)")
    row = session.execute(f"SELECT t, n, li FROM {types_table} WHERE k = 3").one()
    assert (row.t, row.n, row.li) == (None, None, None)


@pytest.fixture(scope="module")
def paged_table(session: Session) -> str:
    session.execute("CREATE TABLE IF NOT EXISTS paged (p int, c int, v text, PRIMARY KEY (p, c))")
    insert = session.prepare("INSERT INTO paged (p, c, v) VALUES (?, ?, ?)")
    for c in range(105):
        session.execute(insert, [1, c, f"v{c}"])
    for c in range(20):
        session.execute(insert, [2, c, f"v{c}"])
    return "paged"


def test_paging_over_more_than_ten_pages(
    session: Session, paged_table: str, cql_server: ServerThread
) -> None:
    cql_server.clear_activity()
    stmt = SimpleStatement(f"SELECT c, v FROM {paged_table} WHERE p = 1", fetch_size=10)
    rows = list(session.execute(stmt))
    assert [r.c for r in rows] == list(range(105))
    requests = cql_server.activity(contains="FROM paged WHERE p = 1")
    assert len(requests) == 11
    assert [r.has_paging_state for r in requests] == [False] + [True] * 10
    assert {r.page_size for r in requests} == {10}


def test_pages_are_fetched_only_as_the_consumer_reads(
    session: Session, paged_table: str, cql_server: ServerThread
) -> None:
    cql_server.clear_activity()
    prepared = session.prepare(f"SELECT c FROM {paged_table} WHERE p = ?")
    prepared.fetch_size = 25
    result = session.execute(prepared, [1])
    assert len(result.current_rows) == 25
    assert len(cql_server.activity(opcode="EXECUTE")) == 1
    result.fetch_next_page()
    assert len(cql_server.activity(opcode="EXECUTE")) == 2
    assert [r.c for r in result.current_rows] == list(range(25, 50))


def test_exact_multiple_of_the_page_size(session: Session, paged_table: str) -> None:
    stmt = SimpleStatement(f"SELECT c FROM {paged_table} WHERE p = 2", fetch_size=10)
    assert [r.c for r in session.execute(stmt)] == list(range(20))


def test_empty_result_is_one_empty_page(session: Session, paged_table: str) -> None:
    stmt = SimpleStatement(f"SELECT c FROM {paged_table} WHERE p = 999", fetch_size=10)
    result = session.execute(stmt)
    assert list(result) == []
    assert not result.has_more_pages


def test_reprepare_after_the_server_forgets(session: Session, cql_server: ServerThread) -> None:
    session.execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v int)")
    insert = session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    session.execute(insert, ["a", 1])
    cql_server.forget_prepared()
    cql_server.clear_activity()
    session.execute(insert, ["b", 2])  # UNPREPARED, then the driver re-prepares
    ops = [a.opcode for a in cql_server.activity(contains="INSERT INTO kv")]
    assert ops == ["EXECUTE", "PREPARE", "EXECUTE"]
    rows = session.execute("SELECT k, v FROM kv WHERE k IN ('a', 'b')")
    assert sorted((r.k, r.v) for r in rows) == [("a", 1), ("b", 2)]


def test_batches_of_prepared_and_simple_statements(session: Session) -> None:
    session.execute("CREATE TABLE IF NOT EXISTS batched (k int, c int, v text, PRIMARY KEY (k, c))")
    insert = session.prepare("INSERT INTO batched (k, c, v) VALUES (?, ?, ?)")
    for kind in (BatchType.LOGGED, BatchType.UNLOGGED):
        batch = BatchStatement(batch_type=kind)
        batch.add(insert, [kind.value, 1, "p"])
        batch.add(
            SimpleStatement("INSERT INTO batched (k, c, v) VALUES (%s, %s, %s)"),
            [kind.value, 2, "s"],
        )
        session.execute(batch)
        rows = session.execute("SELECT c, v FROM batched WHERE k = %s", [kind.value])
        assert [(r.c, r.v) for r in rows] == [(1, "p"), (2, "s")]


def test_invalid_cql_answers_a_syntax_error_with_its_position(session: Session) -> None:
    with pytest.raises(SyntaxException) as info:
        session.execute("SELEC * FROM kv")
    assert "1:" in str(info.value)


def test_unknown_keyspace_or_table_is_invalid(session: Session) -> None:
    with pytest.raises(InvalidRequest):
        session.execute("SELECT * FROM no_such_ks.t")
    with pytest.raises(InvalidRequest):
        session.execute("SELECT * FROM no_such_table")


# -- faults ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_table(session: Session) -> str:
    session.execute("CREATE TABLE IF NOT EXISTS faulty (k int PRIMARY KEY, v int)")
    session.execute("INSERT INTO faulty (k, v) VALUES (1, 10)")
    return "faulty"


def test_primed_read_timeout_raises_read_timeout(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    cql_server.prime("SELECT v FROM faulty", error="read_timeout")
    with pytest.raises(ReadTimeout):
        session.execute("SELECT v FROM faulty WHERE k = 1")


def test_primed_write_timeout_raises_write_timeout_for_prepared(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    insert = session.prepare("INSERT INTO faulty (k, v) VALUES (?, ?)")
    cql_server.prime("INSERT INTO faulty", error="write_timeout")
    with pytest.raises(WriteTimeout):
        session.execute(insert, [2, 20])


def test_fault_for_the_next_n_matches_only(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    fault = cql_server.prime("SELECT v FROM faulty", error="read_timeout", times=2)
    for _ in range(2):
        with pytest.raises(ReadTimeout):
            session.execute("SELECT v FROM faulty WHERE k = 1")
    assert session.execute("SELECT v FROM faulty WHERE k = 1").one().v == 10
    assert fault.hits == 2


def test_regex_faults_match_the_query_text(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    cql_server.prime(r"^select\s+v\s+from\s+faulty", regex=True, error="invalid", message="primed")
    with pytest.raises(InvalidRequest, match="primed"):
        session.execute("select v from faulty where k = 1")
    assert session.execute("SELECT v FROM faulty WHERE k = 1").one().v == 10


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("read_failure", ReadFailure),
        ("write_failure", WriteFailure),
        ("syntax_error", SyntaxException),
        ("invalid", InvalidRequest),
    ],
)
def test_primed_errors_raise_the_drivers_exception(
    session: Session, cql_server: ServerThread, fault_table: str, kind: str, exc_type: type
) -> None:
    cql_server.prime("SELECT v FROM faulty", error=kind)  # type: ignore[arg-type]
    with pytest.raises(exc_type):
        session.execute("SELECT v FROM faulty WHERE k = 1")


def test_primed_unprepared_makes_the_driver_reprepare(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    select = session.prepare("SELECT v FROM faulty WHERE k = ?")
    cql_server.prime("SELECT v FROM faulty", error="unprepared", times=1)
    cql_server.clear_activity()
    assert session.execute(select, [1]).one().v == 10
    ops = [a.opcode for a in cql_server.activity(contains="SELECT v FROM faulty")]
    assert ops == ["EXECUTE", "PREPARE", "EXECUTE"]


def test_overloaded_and_server_error_exhaust_the_query_plan(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    for kind, exc_type in (("overloaded", OverloadedErrorMessage), ("server_error", ServerError)):
        fault = cql_server.prime("SELECT v FROM faulty", error=kind)  # type: ignore[arg-type]
        with pytest.raises(NoHostAvailable) as info:
            session.execute("SELECT v FROM faulty WHERE k = 1")
        assert all(isinstance(e, exc_type) for e in info.value.errors.values())
        fault.cancel()


def test_no_response_surfaces_as_operation_timed_out(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    cql_server.prime("SELECT v FROM faulty", no_response=True, times=1)
    with pytest.raises(OperationTimedOut):
        session.execute("SELECT v FROM faulty WHERE k = 1", timeout=0.5)


def test_answers_come_back_out_of_order_on_one_connection(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    cql_server.prime("SELECT v FROM faulty WHERE k = 1", no_response=True, times=1)
    silent = session.execute_async("SELECT v FROM faulty WHERE k = 1", timeout=30)
    answered = threading.Event()
    silent.add_callbacks(lambda _: answered.set(), lambda _: answered.set())
    # A later request on the same connection is answered while the first waits.
    assert session.execute("SELECT v FROM faulty WHERE k = 1").one().v == 10
    assert not answered.is_set()
    streams = [a.stream for a in cql_server.activity(contains="SELECT v FROM faulty")][-2:]
    assert streams[0] != streams[1]


def test_latency_delays_then_answers(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    cql_server.prime("SELECT v FROM faulty", delay=0.2, times=1)
    assert session.execute("SELECT v FROM faulty WHERE k = 1").one().v == 10


def test_dropped_connection_fails_the_request(cql_server: ServerThread, fault_table: str) -> None:
    # Its own Cluster: a dropped connection marks the host down for a while.
    cluster = make_cluster(cql_server)
    try:
        own = cluster.connect(KS)
        cql_server.prime("SELECT v FROM faulty", disconnect=True, times=1)
        cql_server.clear_activity()
        # The driver sees the socket close under the request (ConnectionShutdown),
        # retries on the next host and, with none left, gives up.
        with pytest.raises((NoHostAvailable, ConnectionShutdown)):
            own.execute("SELECT v FROM faulty WHERE k = 1")
        assert len(cql_server.activity(contains="SELECT v FROM faulty")) == 1
    finally:
        cluster.shutdown()


def test_activity_log_records_what_each_request_carried(
    session: Session, cql_server: ServerThread, paged_table: str
) -> None:
    cql_server.clear_activity()
    session.execute(SimpleStatement(f"SELECT c FROM {paged_table} WHERE p = 2", fetch_size=15))
    [entry] = cql_server.activity()
    assert entry.opcode == "QUERY"
    assert entry.query == f"SELECT c FROM {paged_table} WHERE p = 2"
    assert entry.page_size == 15
    assert not entry.has_paging_state
    assert entry.node == 0 and entry.address == "127.0.0.1"
    assert entry.stream >= 0
    cql_server.clear_activity()
    assert cql_server.activity() == []


def test_schema_changes_are_pushed_to_registered_connections(
    session: Session, cql_server: ServerThread
) -> None:
    with socket.create_connection((cql_server.contact_points[0], cql_server.port), timeout=30) as s:
        s.sendall(STARTUP)
        assert f.HEADER.unpack(_recv_exact(s, 9))[3] == f.READY
        body = f.enc_string_list(["SCHEMA_CHANGE"])
        s.sendall(struct.pack(">BBhBi", 4, 0, 1, f.REGISTER, len(body)) + body)
        assert f.HEADER.unpack(_recv_exact(s, 9))[3] == f.READY
        session.execute("CREATE TABLE pushed (k int PRIMARY KEY)")
        _version, _flags, stream, opcode, length = f.HEADER.unpack(_recv_exact(s, 9))
        event = _recv_exact(s, length)
    assert (stream, opcode) == (-1, f.EVENT)
    assert event == b"".join(
        f.enc_string(x) for x in ("SCHEMA_CHANGE", "CREATED", "TABLE", KS, "pushed")
    )


# -- bad input --------------------------------------------------------------


STARTUP = (
    struct.pack(">BBhBi", 4, 0, 0, f.STARTUP, 22)
    + struct.pack(">H", 1)
    + f.enc_string("CQL_VERSION")
    + f.enc_string("3.0.0")
)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def test_malformed_frame_closes_only_that_connection(
    session: Session, cql_server: ServerThread, fault_table: str
) -> None:
    with socket.create_connection((cql_server.contact_points[0], cql_server.port), timeout=30) as s:
        s.sendall(STARTUP)
        assert f.HEADER.unpack(_recv_exact(s, 9))[3] == f.READY
        # A QUERY whose [long string] claims more bytes than the body has.
        body = struct.pack(">i", 1000) + b"SELECT"
        s.sendall(struct.pack(">BBhBi", 4, 0, 9, f.QUERY, len(body)) + body)
        version, _flags, stream, opcode, length = f.HEADER.unpack(_recv_exact(s, 9))
        body = _recv_exact(s, length)
        assert (version, stream, opcode) == (0x84, 9, f.ERROR)
        assert struct.unpack_from(">i", body)[0] == f.PROTOCOL_ERROR
        assert s.recv(1) == b""
    assert session.execute("SELECT v FROM faulty WHERE k = 1").one().v == 10


def test_inet_values_come_back_as_addresses(session: Session, types_table: str) -> None:
    session.execute(f"INSERT INTO {types_table} (k, i4) VALUES (4, '10.0.0.1')")
    value = session.execute(f"SELECT i4 FROM {types_table} WHERE k = 4").one().i4
    assert ipaddress.ip_address(value) == ipaddress.ip_address("10.0.0.1")
