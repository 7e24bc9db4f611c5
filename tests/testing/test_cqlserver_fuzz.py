"""Random and truncated frames never take the server down: a good client still gets answers."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator

import pytest
from cassandra.cluster import Cluster, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.testing.cqlserver import ServerThread
from bridge.testing.cqlserver import _frame as f

from .conftest import make_cluster


@pytest.fixture(scope="module")
def cql_server(cql_server_factory: Callable[..., ServerThread]) -> ServerThread:
    return cql_server_factory()  # its own server: garbage must not disturb other modules


@pytest.fixture(scope="module")
def good_session(cql_server: ServerThread) -> Iterator[Session]:
    cluster: Cluster = make_cluster(cql_server)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


def _startup_frame() -> bytes:
    body = struct.pack(">H", 1) + f.enc_string("CQL_VERSION") + f.enc_string("3.0.0")
    return struct.pack(">BBhBi", 4, 0, 0, f.STARTUP, len(body)) + body


def _query_frame(query: str, stream: int = 1) -> bytes:
    body = f.enc_long_string(query) + struct.pack(">HB", 1, 0)
    return struct.pack(">BBhBi", 4, 0, stream, f.QUERY, len(body)) + body


_valid = st.sampled_from(
    [_startup_frame(), _query_frame("SELECT key FROM system.local"), _query_frame("SELEC x")]
)
_opcodes = st.sampled_from([*sorted(f.OPCODE_NAMES), 0x04, 0x11, 0xFF])


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "header", "truncated", "mutated"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=200))
    if kind == "header":
        body = draw(st.binary(max_size=100))
        version = draw(st.sampled_from([4, 4, 4, 3, 5, 0x42, 0x84, 1, 0]))
        flags = draw(st.integers(0, 255))
        length = draw(st.sampled_from([len(body), len(body) + 5, -1, 2**31 - 1]))
        header = struct.pack(
            ">BBhBi", version, flags, draw(st.integers(-5, 5)), draw(_opcodes), length
        )
        return header + body
    frame = draw(_valid)
    if kind == "truncated":
        return frame[: draw(st.integers(1, len(frame) - 1))]
    i = draw(st.integers(0, len(frame) - 1))
    return frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1 :]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.lists(frames(), min_size=1, max_size=3))
def test_garbage_never_breaks_the_server(
    cql_server: ServerThread, good_session: Session, payload: list[bytes]
) -> None:
    with socket.create_connection((cql_server.contact_points[0], cql_server.port), timeout=30) as s:
        s.sendall(_startup_frame() + b"".join(payload))
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        while s.recv(65536):  # the server answers what it can, then closes
            pass
    assert good_session.execute("SELECT key FROM system.local").one().key == "local"
