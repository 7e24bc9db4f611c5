"""An in-memory Cassandra speaking native protocol v5 and v4, for tests and benchmarks.

The real ``cassandra-driver`` connects to it over real sockets, with its
default settings::

    with CQLServer.start_in_thread(nodes=3) as server:
        cluster = Cluster(server.contact_points, port=server.port)
        session = cluster.connect()

Every node shares one in-memory engine (full replication). Nodes can be
stopped, started, added and removed; faults (latency, errors, silence,
dropped connections) are primed per query pattern; every request is logged
(``server.activity()``). ``python -m bridge.testing.cqlserver --nodes 3`` runs
it as a program; ``CQLServer(engine=Engine())`` shares a prepared engine.
"""

from __future__ import annotations

from ._engine import CQLError, Engine
from ._faults import Activity, ActivityLog, ErrorKind, Fault, FaultRegistry, parse_fault_spec
from ._runner import ServerProcess, ServerThread
from ._server import CQLServer, Node

__all__ = [
    "Activity",
    "ActivityLog",
    "CQLError",
    "CQLServer",
    "Engine",
    "ErrorKind",
    "Fault",
    "FaultRegistry",
    "Node",
    "ServerProcess",
    "ServerThread",
    "parse_fault_spec",
]
