"""``system.local``, ``system.peers`` and ``system.peers_v2`` as the driver reads them.

The driver's control connection builds its host list, token map and schema
agreement check from these rows (``cassandra/cluster.py``, ControlConnection),
so each node answers with itself in ``local`` and every other node in the
peers tables, in the column layout of Cassandra 4.x.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._engine import Engine

CQL_VERSION = "3.4.5"
NATIVE_PROTOCOL_VERSION = "5"
PARTITIONER = "org.apache.cassandra.dht.Murmur3Partitioner"

_MIN_TOKEN = -(2**63)


class NodeInfo(Protocol):
    """What a row needs to know about a node (implemented by ``_server.Node``)."""

    @property
    def index(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def host_id(self) -> object: ...
    @property
    def tokens(self) -> list[str]: ...


class ClusterInfo(Protocol):
    """The cluster-wide facts the rows share."""

    @property
    def cluster_name(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def rack(self) -> str: ...
    @property
    def release_version(self) -> str: ...
    @property
    def schema_version(self) -> object: ...
    @property
    def node_infos(self) -> Sequence[NodeInfo]: ...


def spread_tokens(n_nodes: int, index: int, per_node: int = 1) -> list[str]:
    """Murmur3 tokens for node ``index`` of ``n_nodes``, evenly spread over the ring."""
    total = n_nodes * per_node
    step = 2**64 // total
    return [str(_MIN_TOKEN + (index + k * n_nodes) * step) for k in range(per_node)]


_LOCAL_COLUMNS = [
    ("key", "text", "partition_key"),
    ("bootstrapped", "text", "regular"),
    ("broadcast_address", "inet", "regular"),
    ("broadcast_port", "int", "regular"),
    ("cluster_name", "text", "regular"),
    ("cql_version", "text", "regular"),
    ("data_center", "text", "regular"),
    ("gossip_generation", "int", "regular"),
    ("host_id", "uuid", "regular"),
    ("listen_address", "inet", "regular"),
    ("listen_port", "int", "regular"),
    ("native_protocol_version", "text", "regular"),
    ("partitioner", "text", "regular"),
    ("rack", "text", "regular"),
    ("release_version", "text", "regular"),
    ("rpc_address", "inet", "regular"),
    ("rpc_port", "int", "regular"),
    ("schema_version", "uuid", "regular"),
    ("tokens", "set<text>", "regular"),
]

_PEERS_COLUMNS = [
    ("peer", "inet", "partition_key"),
    ("data_center", "text", "regular"),
    ("host_id", "uuid", "regular"),
    ("preferred_ip", "inet", "regular"),
    ("rack", "text", "regular"),
    ("release_version", "text", "regular"),
    ("rpc_address", "inet", "regular"),
    ("schema_version", "uuid", "regular"),
    ("tokens", "set<text>", "regular"),
]

_PEERS_V2_COLUMNS = [
    ("peer", "inet", "partition_key"),
    ("peer_port", "int", "clustering"),
    ("data_center", "text", "regular"),
    ("host_id", "uuid", "regular"),
    ("native_address", "inet", "regular"),
    ("native_port", "int", "regular"),
    ("preferred_ip", "inet", "regular"),
    ("preferred_port", "int", "regular"),
    ("rack", "text", "regular"),
    ("release_version", "text", "regular"),
    ("schema_version", "uuid", "regular"),
    ("tokens", "set<text>", "regular"),
]

STORAGE_PORT = 7000


def _tokens(node: NodeInfo) -> list[str]:
    # The engine's convention for a set: a list sorted by serialized bytes.
    return sorted(node.tokens, key=lambda t: t.encode("utf-8"))


def register_system_tables(engine: Engine, cluster: ClusterInfo, generation: int) -> None:
    """Serve the node-dependent system tables; the request's node arrives as ``context``."""

    def local_rows(context: object) -> list[dict[str, object]]:
        node = _node(context, cluster)
        address = ipaddress.ip_address(node.address)
        return [
            {
                "key": "local",
                "bootstrapped": "COMPLETED",
                "broadcast_address": address,
                "broadcast_port": STORAGE_PORT,
                "cluster_name": cluster.cluster_name,
                "cql_version": CQL_VERSION,
                "data_center": cluster.datacenter,
                "gossip_generation": generation,
                "host_id": node.host_id,
                "listen_address": address,
                "listen_port": STORAGE_PORT,
                "native_protocol_version": NATIVE_PROTOCOL_VERSION,
                "partitioner": PARTITIONER,
                "rack": cluster.rack,
                "release_version": cluster.release_version,
                "rpc_address": address,
                "rpc_port": node.port,
                "schema_version": cluster.schema_version,
                "tokens": _tokens(node),
            }
        ]

    def peers_rows(context: object) -> list[dict[str, object]]:
        me = _node(context, cluster)
        rows: list[dict[str, object]] = []
        for node in cluster.node_infos:
            if node.index == me.index:
                continue
            address = ipaddress.ip_address(node.address)
            rows.append(
                {
                    "peer": address,
                    "data_center": cluster.datacenter,
                    "host_id": node.host_id,
                    "preferred_ip": None,
                    "rack": cluster.rack,
                    "release_version": cluster.release_version,
                    "rpc_address": address,
                    "schema_version": cluster.schema_version,
                    "tokens": _tokens(node),
                }
            )
        return rows

    def peers_v2_rows(context: object) -> list[dict[str, object]]:
        me = _node(context, cluster)
        rows: list[dict[str, object]] = []
        for node in cluster.node_infos:
            if node.index == me.index:
                continue
            address = ipaddress.ip_address(node.address)
            rows.append(
                {
                    "peer": address,
                    "peer_port": STORAGE_PORT,
                    "data_center": cluster.datacenter,
                    "host_id": node.host_id,
                    "native_address": address,
                    "native_port": node.port,
                    "preferred_ip": None,
                    "preferred_port": None,
                    "rack": cluster.rack,
                    "release_version": cluster.release_version,
                    "schema_version": cluster.schema_version,
                    "tokens": _tokens(node),
                }
            )
        return rows

    tables: list[
        tuple[str, list[tuple[str, str, str]], Callable[[object], list[dict[str, object]]]]
    ]
    tables = [
        ("local", _LOCAL_COLUMNS, local_rows),
        ("peers", _PEERS_COLUMNS, peers_rows),
        ("peers_v2", _PEERS_V2_COLUMNS, peers_v2_rows),
    ]
    for name, columns, rows in tables:
        engine.register_virtual_table("system", name, columns, rows)


def _node(context: object, cluster: ClusterInfo) -> NodeInfo:
    # Requests carry their node; a query from Python (no node) sees node 0.
    for node in cluster.node_infos:
        if node is context:
            return node
    return cluster.node_infos[0]
