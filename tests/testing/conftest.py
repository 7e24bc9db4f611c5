"""Fixtures for the CQL server tests: one server (in a thread) and one driver session per module."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

cassandra = pytest.importorskip("cassandra")
from cassandra.cluster import Cluster, Session  # noqa: E402
from cassandra.policies import HostStateListener  # noqa: E402

from bridge.testing.cqlserver import ServerProcess, ServerThread  # noqa: E402

# The package's own fixtures, shared with any project that opts in to them.
from bridge.testing.cqlserver.fixtures import (  # noqa: E402
    cql_cluster,
    cql_server,
    cql_server_factory,
    cql_session,
)

__all__ = [
    "HostEvents",
    "cql_cluster",
    "cql_server",
    "cql_server_factory",
    "cql_session",
    "keyspace_session",
    "make_cluster",
    "table_factory",
    "versioned_session",
]


def make_cluster(server: ServerThread | ServerProcess, **kwargs: Any) -> Cluster:
    """A driver Cluster with default settings pointed at the server.

    (The driver logs a nag about a missing load-balancing policy when given
    contact points; its defaults are exactly what these tests want.)
    """
    return Cluster(server.contact_points, port=server.port, **kwargs)


@contextmanager
def keyspace_session(
    server: ServerThread | ServerProcess, protocol_version: int, keyspace: str
) -> Iterator[Session]:
    """A session on ``protocol_version`` using ``keyspace`` (created if missing)."""
    cluster = make_cluster(server, protocol_version=protocol_version)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.set_keyspace(keyspace)
        yield session
    finally:
        cluster.shutdown()


_table_names = itertools.count()


def table_factory(session: Session) -> Callable[..., str]:
    """``create(columns, options="")``: a fresh table in the session's keyspace; its name."""

    def create(columns: str, options: str = "") -> str:
        name = f"t{next(_table_names)}"
        session.execute(f"CREATE TABLE {name} ({columns}){options}")
        return name

    return create


@pytest.fixture(scope="module", params=[4, 5], ids=lambda v: f"v{v}")
def versioned_session(
    request: pytest.FixtureRequest, cql_server: ServerThread
) -> Iterator[Session]:
    """One session per protocol version (4 and 5), in the test module's ``KS`` keyspace."""
    with keyspace_session(cql_server, request.param, request.module.KS) as session:
        yield session


@pytest.fixture
def table(versioned_session: Session) -> Callable[..., str]:
    """Create a fresh table in ``versioned_session``'s keyspace; returns its name."""
    return table_factory(versioned_session)


@pytest.fixture(scope="module")
def cluster(cql_cluster: Cluster) -> Cluster:
    return cql_cluster


@pytest.fixture(scope="module")
def session(cql_session: Session) -> Session:
    return cql_session


class HostEvents(HostStateListener):  # type: ignore[misc]
    """Host up/down notifications from the driver, as events a test can wait on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.up: dict[str, threading.Event] = {}
        self.down: dict[str, threading.Event] = {}
        self.added: dict[str, threading.Event] = {}
        self.removed: dict[str, threading.Event] = {}

    def _expect(self, table: dict[str, threading.Event], address: str) -> threading.Event:
        with self.lock:
            table[address] = event = threading.Event()
            return event

    def expect_down(self, address: str) -> threading.Event:
        """An event set by the next time the driver marks ``address`` down."""
        return self._expect(self.down, address)

    def expect_up(self, address: str) -> threading.Event:
        """An event set by the next time the driver marks ``address`` up."""
        return self._expect(self.up, address)

    def expect_added(self, address: str) -> threading.Event:
        return self._expect(self.added, address)

    def expect_removed(self, address: str) -> threading.Event:
        return self._expect(self.removed, address)

    def _fire(self, table: dict[str, threading.Event], address: str) -> None:
        with self.lock:
            event = table.get(address)
        if event is not None:
            event.set()

    def on_up(self, host: Any) -> None:
        self._fire(self.up, host.endpoint.address)

    def on_down(self, host: Any) -> None:
        self._fire(self.down, host.endpoint.address)

    def on_add(self, host: Any) -> None:
        self._fire(self.added, host.endpoint.address)

    def on_remove(self, host: Any) -> None:
        self._fire(self.removed, host.endpoint.address)
