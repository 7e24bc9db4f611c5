"""pytest fixtures for a CQL server, for any test suite that opts in.

Opt in with ``pytest_plugins = ["bridge.testing.cqlserver.fixtures"]`` in the
root ``conftest.py`` (or import the fixtures into a ``conftest.py``).

- ``cql_server``: one node in a background thread, on a free port, per test
  module (the driver's connect is the slow part, so modules share one).
- ``cql_server_factory``: start more (``cql_server_factory(nodes=3)``); all
  stopped at the end of the session.
- ``cql_cluster`` / ``cql_session``: a ``cassandra.cluster.Cluster`` with the
  driver's default settings connected to ``cql_server``, per module.

Async tests on asyncio or uvloop can also run a server on their own loop with
``async with CQLServer() as server``; these thread-backed fixtures work under
every backend, trio included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._runner import ServerThread
from ._server import CQLServer


@pytest.fixture(scope="session")
def cql_server_factory() -> Iterator[Callable[..., ServerThread]]:
    """Start servers in threads (keyword arguments as ``CQLServer``'s); closed at session end."""
    started: list[ServerThread] = []

    def start(**kwargs: Any) -> ServerThread:
        server = CQLServer.start_in_thread(**kwargs)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.close()


@pytest.fixture(scope="module")
def cql_server() -> Iterator[ServerThread]:
    """A one-node server in a background thread, shared by the test module."""
    with CQLServer.start_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def cql_cluster(cql_server: ServerThread) -> Iterator[Any]:
    """A driver ``Cluster`` (default settings) for ``cql_server``; shut down after the module."""
    from cassandra.cluster import Cluster  # type: ignore[import-untyped]

    cluster = Cluster(cql_server.contact_points, port=cql_server.port)
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def cql_session(cql_cluster: Any) -> Any:
    """A connected driver ``Session`` on ``cql_cluster``."""
    return cql_cluster.connect()
