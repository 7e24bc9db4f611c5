"""Adapter test fixtures: one CQL server and one driver cluster per module where possible."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

# The PostgreSQL fixtures the DB-API test files share (both transports, an admin connection);
# a module with fixtures of these names (MariaDB's `admin`) keeps its own.
from tests.adapters.dbapi_servers import admin, pg  # noqa: F401


@pytest.fixture(scope="module")
def cql_server() -> Iterator[Any]:
    """An in-memory CQL server on a loop in a background thread (real sockets)."""
    pytest.importorskip("cassandra")
    from bridge.testing.cqlserver import CQLServer

    with CQLServer.start_in_thread() as server:
        yield server


def make_cluster(server: Any, **kwargs: Any) -> Any:
    """A sync driver Cluster pointed at `server`, default settings unless overridden."""
    from cassandra.cluster import Cluster

    with warnings.catch_warnings():
        # The driver nags about a load-balancing policy when given contact points.
        warnings.simplefilter("ignore")
        return Cluster(server.contact_points, port=server.port, **kwargs)


def make_keyspace(server: Any, keyspace: str, *statements: str) -> None:
    """Create `keyspace` (replication factor 1) and run `statements` in it, with the sync driver."""
    from tests.testing.conftest import keyspace_session

    with keyspace_session(server, 5, keyspace) as session:
        for statement in statements:
            session.execute(statement)
