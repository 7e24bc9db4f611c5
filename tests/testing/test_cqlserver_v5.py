"""Native protocol v5: segments with checksums, the per-query keyspace, v5 error bodies.

The driver's own segment codec (``cassandra.segment``) is the peer the raw
socket tests check the server's segments against.
"""

from __future__ import annotations

import io
import logging
import random
import socket
import struct
from collections.abc import Iterator

import pytest
from cassandra import ReadFailure
from cassandra.cluster import Session
from cassandra.query import SimpleStatement
from cassandra.segment import SegmentCodec, compute_crc24

from bridge.testing.cqlserver import ServerThread, _segment
from bridge.testing.cqlserver import _frame as f

from .conftest import make_cluster

KS = "v5_test"
_DOWNGRADE = "Downgrading core protocol version"


@pytest.fixture(scope="module")
def session(cql_server: ServerThread) -> Iterator[Session]:
    cluster = make_cluster(cql_server, protocol_version=5)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KS} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        yield session
    finally:
        cluster.shutdown()


@pytest.fixture(autouse=True)
def no_faults(cql_server: ServerThread) -> Iterator[None]:
    yield
    cql_server.clear_faults()


def _downgrades(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage().split(" for ")[0] for r in caplog.records if _DOWNGRADE in r.getMessage()
    ]


def test_the_driver_settles_on_v5_at_its_default_as_with_cassandra_4_1(
    cql_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cassandra.cluster")
    cluster = make_cluster(cql_server)
    try:
        cluster.connect()
        assert cluster.protocol_version == 5
    finally:
        cluster.shutdown()
    # The driver always opens with DSE's versions, which Cassandra 4.1 refuses
    # too; what the v4-only server added was the step down from 5 to 4.
    assert _downgrades(caplog) == [
        "Downgrading core protocol version from 66 to 65",
        "Downgrading core protocol version from 65 to 5",
    ]


def test_no_downgrade_warning_when_v5_is_asked_for(
    cql_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cassandra.cluster")
    cluster = make_cluster(cql_server, protocol_version=5)
    try:
        row = cluster.connect().execute("SELECT native_protocol_version FROM system.local").one()
        assert row.native_protocol_version == "5"
    finally:
        cluster.shutdown()
    assert _downgrades(caplog) == []


@pytest.mark.parametrize("version", [6, 0x41, 0x42, 3])
def test_other_versions_are_refused_naming_the_supported_ones(
    cql_server: ServerThread, version: int
) -> None:
    with _connect(cql_server) as s:
        s.sendall(struct.pack(">BBhBi", version, 0, 1, f.OPTIONS, 0))
        code, message = _error(_read_frame(s))
        assert s.recv(1) == b""  # and the connection is closed
    assert code == f.PROTOCOL_ERROR
    assert message == (
        f"Invalid or unsupported protocol version ({version}); supported versions are (4/v4, 5/v5)"
    )


def test_crc24_matches_the_drivers() -> None:
    rng = random.Random(5)
    for value in [0, 1, 0xFFFFFF, *(rng.getrandbits(24) for _ in range(500))]:
        assert _segment.crc24(value) == compute_crc24(value, 3)


def test_segments_round_trip_through_the_drivers_codec(cql_server: ServerThread) -> None:
    codec = SegmentCodec()
    with _connect(cql_server) as s:
        _startup_v5(s)
        query = f.enc_long_string("SELECT key FROM system.local") + struct.pack(">Hi", 1, 0)
        buffer = io.BytesIO()
        codec.encode(buffer, struct.pack(">BBhBi", 5, 0, 7, f.QUERY, len(query)) + query)
        s.sendall(buffer.getvalue())
        payload = _read_segment(s, codec)
    version, _flags, stream, opcode, length = f.HEADER.unpack_from(payload)
    assert (version, stream, opcode) == (0x85, 7, f.RESULT)
    assert len(payload) == f.HEADER_SIZE + length  # one whole frame, self-contained
    assert struct.unpack_from(">i", payload, f.HEADER_SIZE)[0] == f.RESULT_ROWS


def test_a_bad_payload_checksum_closes_the_connection(cql_server: ServerThread) -> None:
    codec = SegmentCodec()
    with _connect(cql_server) as s:
        _startup_v5(s)
        buffer = io.BytesIO()
        codec.encode(buffer, struct.pack(">BBhBi", 5, 0, 1, f.OPTIONS, 0))
        corrupted = bytearray(buffer.getvalue())
        corrupted[-1] ^= 0xFF
        s.sendall(bytes(corrupted))
        with pytest.raises(ConnectionResetError):
            while s.recv(65536):
                pass


def test_results_larger_than_a_segment_arrive_whole(session: Session) -> None:
    session.execute(f"CREATE TABLE {KS}.big (k int PRIMARY KEY, v text)")
    insert = session.prepare(f"INSERT INTO {KS}.big (k, v) VALUES (?, ?)")
    value = "x" * 10_000
    for k in range(40):  # ~400 KB in one page: four segments
        session.execute(insert, (k, value))
    rows = list(session.execute(SimpleStatement(f"SELECT * FROM {KS}.big", fetch_size=1000)))
    assert len(rows) == 40 and all(r.v == value for r in rows)
    assert session.execute(f"SELECT v FROM {KS}.big WHERE k = 3").one().v == value


def test_requests_larger_than_a_segment_arrive_whole(session: Session) -> None:
    session.execute(f"CREATE TABLE {KS}.upload (k int PRIMARY KEY, v text)")
    insert = session.prepare(f"INSERT INTO {KS}.upload (k, v) VALUES (?, ?)")
    value = "".join(chr(0x41 + i % 26) for i in range(300_000))  # three segments' worth
    session.execute(insert, (1, value))
    assert session.execute(f"SELECT v FROM {KS}.upload WHERE k = 1").one().v == value


def test_a_statement_names_its_own_keyspace(session: Session) -> None:
    session.execute(f"CREATE TABLE {KS}.kt (k int PRIMARY KEY, v int)")
    session.execute(f"INSERT INTO {KS}.kt (k, v) VALUES (1, 10)")
    assert session.keyspace is None
    statement = SimpleStatement("SELECT v FROM kt WHERE k = 1", keyspace=KS)
    assert session.execute(statement).one().v == 10
    prepared = session.prepare("SELECT v FROM kt WHERE k = ?", keyspace=KS)
    assert session.execute(prepared, (1,)).one().v == 10


def test_a_read_failure_carries_the_v5_reason_map(
    session: Session, cql_server: ServerThread
) -> None:
    cql_server.prime("FROM system.local WHERE key = 'fail'", error="read_failure", times=1)
    with pytest.raises(ReadFailure) as caught:
        session.execute("SELECT * FROM system.local WHERE key = 'fail'")
    assert caught.value.failures == 1
    assert caught.value.error_code_map == {cql_server.contact_points[0]: 0}


# --- raw sockets ----------------------------------------------------------------------


def _connect(server: ServerThread) -> socket.socket:
    return socket.create_connection((server.contact_points[0], server.port), timeout=30)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def _read_frame(s: socket.socket) -> tuple[int, int, bytes]:
    version, _flags, _stream, opcode, length = f.HEADER.unpack(_recv_exact(s, f.HEADER_SIZE))
    return version, opcode, _recv_exact(s, length)


def _error(frame: tuple[int, int, bytes]) -> tuple[int, str]:
    _version, opcode, body = frame
    assert opcode == f.ERROR
    code, n = struct.unpack_from(">iH", body)
    return code, body[6 : 6 + n].decode()


def _startup_v5(s: socket.socket) -> None:
    body = struct.pack(">H", 1) + f.enc_string("CQL_VERSION") + f.enc_string("3.0.0")
    s.sendall(struct.pack(">BBhBi", 5, 0, 0, f.STARTUP, len(body)) + body)
    version, opcode, _ = _read_frame(s)  # READY is the last frame outside segments
    assert (version, opcode) == (0x85, f.READY)


def _read_segment(s: socket.socket, codec: SegmentCodec) -> bytes:
    head = _recv_exact(s, codec.header_length_with_crc)
    header = codec.decode_header(io.BytesIO(head))
    assert header.is_self_contained
    rest = _recv_exact(s, header.payload_length + 4)
    segment = codec.decode(io.BytesIO(rest), header)
    payload: bytes = segment.payload
    return payload


def test_a_stale_result_metadata_id_gets_the_new_columns(
    session: Session, cql_server: ServerThread
) -> None:
    session.execute(f"CREATE TABLE {KS}.meta (k int PRIMARY KEY, v int)")
    session.execute(f"INSERT INTO {KS}.meta (k, v) VALUES (1, 10)")
    other = make_cluster(cql_server, protocol_version=5)
    try:
        other_session = other.connect()
        query = f"SELECT * FROM {KS}.meta WHERE k = ?"
        mine, theirs = session.prepare(query), other_session.prepare(query)
        assert theirs.result_metadata_id == mine.result_metadata_id
        session.execute(f"ALTER TABLE {KS}.meta ADD note text")
        session.execute(f"UPDATE {KS}.meta SET note = 'new' WHERE k = 1")
        assert session.execute(mine, (1,)).one().note == "new"  # prepared again (UNPREPARED)
        # The other client still holds the old result metadata id; the node
        # knows the statement again, so it answers METADATA_CHANGED with the
        # new id and columns instead of rows the client would misread.
        cql_server.clear_activity()
        row = other_session.execute(theirs, (1,)).one()
        assert (row.k, row.note, row.v) == (1, "new", 10)
        assert [a.opcode for a in cql_server.activity() if a.query == query] == ["EXECUTE"]
    finally:
        other.shutdown()
