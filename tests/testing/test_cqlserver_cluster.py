"""Three nodes on 127.0.0.1-3: peers, token map, node-local faults, failover."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cassandra import ConsistencyLevel, ReadTimeout, Unavailable
from cassandra.cluster import Cluster, Session
from cassandra.query import SimpleStatement

from bridge.testing.cqlserver import CQLServer, ServerThread

from .conftest import HostEvents, make_cluster

KS = "three"
WAIT = 60.0  # generous bound for driver-side reactions (events, reconnects)


@pytest.fixture(scope="module")
def cql_server() -> Iterator[ServerThread]:
    with CQLServer.start_in_thread(nodes=3) as server:
        yield server


@pytest.fixture(scope="module")
def host_events() -> HostEvents:
    return HostEvents()


@pytest.fixture(scope="module")
def cluster(cql_server: ServerThread, host_events: HostEvents) -> Iterator[Cluster]:
    c = make_cluster(cql_server)
    c.register_listener(host_events)
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def session(cluster: Cluster) -> Session:
    s = cluster.connect()
    s.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KS} "
        "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    s.execute(f"CREATE TABLE IF NOT EXISTS {KS}.kv (k int PRIMARY KEY, v text)")
    s.execute(f"INSERT INTO {KS}.kv (k, v) VALUES (1, 'one')")
    return s


@pytest.fixture(autouse=True)
def no_faults(cql_server: ServerThread) -> Iterator[None]:
    yield
    cql_server.clear_faults()


def test_driver_discovers_every_node(cluster: Cluster, session: Session) -> None:
    addresses = sorted(h.endpoint.address for h in cluster.metadata.all_hosts())
    assert addresses == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert {h.datacenter for h in cluster.metadata.all_hosts()} == {"datacenter1"}
    assert all(h.is_up for h in cluster.metadata.all_hosts())


def test_token_map_spreads_the_ring_over_the_nodes(cluster: Cluster, session: Session) -> None:
    token_map = cluster.metadata.token_map
    assert token_map is not None
    assert len(token_map.ring) == 3
    owners = {token_map.token_to_host_owner[t].endpoint.address for t in token_map.ring}
    assert owners == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    # Full replication (RF 3): every key is on every node.
    replicas = cluster.metadata.get_replicas(KS, b"\x00\x00\x00\x01")
    assert len(replicas) == 3


def test_metadata_knows_keyspaces_and_tables(cluster: Cluster, session: Session) -> None:
    assert KS in cluster.metadata.keyspaces
    assert "kv" in cluster.metadata.keyspaces[KS].tables
    assert "system" in cluster.metadata.keyspaces


def test_all_nodes_serve_the_same_data(cql_server: ServerThread, session: Session) -> None:
    cql_server.clear_activity()
    for _ in range(12):
        assert session.execute(f"SELECT v FROM {KS}.kv WHERE k = 1").one().v == "one"
    served_by = {a.node for a in cql_server.activity(contains=f"FROM {KS}.kv")}
    assert served_by == {0, 1, 2}  # round robin over the three


def test_fault_on_one_node_only(cql_server: ServerThread, session: Session) -> None:
    cql_server.prime(f"FROM {KS}.kv", error="read_timeout", node=1)
    outcomes = set()
    for _ in range(9):
        try:
            session.execute(f"SELECT v FROM {KS}.kv WHERE k = 1")
            outcomes.add("ok")
        except ReadTimeout:
            outcomes.add("timeout")
    assert outcomes == {"ok", "timeout"}
    timed_out_on = {a.node for a in cql_server.activity(contains=f"FROM {KS}.kv")}
    assert 1 in timed_out_on


def test_unavailable_is_retried_once_then_raised(
    cql_server: ServerThread, session: Session
) -> None:
    cql_server.prime(f"FROM {KS}.kv", error="unavailable")
    cql_server.clear_activity()
    stmt = SimpleStatement(
        f"SELECT v FROM {KS}.kv WHERE k = 1", consistency_level=ConsistencyLevel.ALL
    )
    with pytest.raises(Unavailable) as info:
        session.execute(stmt)
    assert "ALL" in str(info.value)
    # The default retry policy tries the next host once.
    assert len(cql_server.activity(contains=f"FROM {KS}.kv")) == 2


def test_schema_change_events_reach_the_driver(cluster: Cluster, session: Session) -> None:
    session.execute(f"CREATE TABLE IF NOT EXISTS {KS}.events_t (k int PRIMARY KEY)")
    assert "events_t" in cluster.metadata.keyspaces[KS].tables


def _serve_reads(cql_server: ServerThread, session: Session, query: str, n: int) -> set[int]:
    """Run ``query`` n times (all must succeed); the nodes that answered."""
    cql_server.clear_activity()
    for _ in range(n):
        assert session.execute(query).one() is not None
    return {a.node for a in cql_server.activity(contains=query)}


def test_failover_when_a_node_stops_and_recovery_when_it_starts(
    cql_server: ServerThread, cluster: Cluster, session: Session, host_events: HostEvents
) -> None:
    read = f"SELECT v FROM {KS}.kv WHERE k = 1"
    down = host_events.expect_down("127.0.0.1")
    cql_server.stop_node(0)  # also the control connection's node
    # Round robin sends some of these to the stopped node: the driver finds its
    # connection reset, marks the host down and retries on the next host.
    assert _serve_reads(cql_server, session, read, 6) == {1, 2}
    assert down.wait(WAIT)
    # Writes on the surviving nodes are visible on the stopped one once back.
    session.execute(f"INSERT INTO {KS}.kv (k, v) VALUES (2, 'two')")

    up = host_events.expect_up("127.0.0.1")
    cql_server.start_node(0)
    assert up.wait(WAIT)
    assert _serve_reads(cql_server, session, f"SELECT v FROM {KS}.kv WHERE k = 2", 6) == {0, 1, 2}


def test_prepared_statements_survive_a_node_restart(
    cql_server: ServerThread, session: Session, host_events: HostEvents
) -> None:
    select = session.prepare(f"SELECT v FROM {KS}.kv WHERE k = ?")
    assert session.execute(select, [1]).one().v == "one"
    # A restarted node has forgotten its prepared statements; the driver
    # re-prepares (when the host comes up, or on UNPREPARED) and keeps going.
    down = host_events.expect_down("127.0.0.2")
    cql_server.stop_node(1)
    _serve_reads(cql_server, session, f"SELECT v FROM {KS}.kv WHERE k = 1", 6)
    assert down.wait(WAIT)
    up = host_events.expect_up("127.0.0.2")
    cql_server.start_node(1)
    assert up.wait(WAIT)
    cql_server.clear_activity()
    for k in range(12):
        session.execute(select, [k % 2 + 1])
    assert 1 in {a.node for a in cql_server.activity(opcode="EXECUTE")}


def test_added_and_removed_nodes_reach_the_driver(cql_server: ServerThread) -> None:
    events = HostEvents()
    # Its own Cluster, reacting to topology events at once (the default
    # waits a random 0-10 s so that a fleet of clients does not stampede).
    watcher = make_cluster(cql_server, topology_event_refresh_window=0)
    watcher.register_listener(events)
    try:
        session = watcher.connect()
        added = events.expect_added("127.0.0.4")
        index = cql_server.add_node()
        assert added.wait(WAIT)
        assert cql_server.server.nodes[-1].address == "127.0.0.4"
        token_map = watcher.metadata.token_map
        assert token_map is not None and len(token_map.ring) == 4
        cql_server.clear_activity()
        for _ in range(8):
            session.execute("SELECT key FROM system.local")
        assert 3 in {a.node for a in cql_server.activity(include_system=True, opcode="QUERY")}

        removed = events.expect_removed("127.0.0.4")
        cql_server.remove_node(index)
        assert removed.wait(WAIT)
        assert len(watcher.metadata.all_hosts()) == 3
    finally:
        watcher.shutdown()
