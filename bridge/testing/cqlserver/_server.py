"""The network side: nodes listening on 127.0.0.x, connections speaking protocol v4 or v5.

Every node of a ``CQLServer`` shares one :class:`Engine` (one copy of the
data: a cluster with full replication). A connection is an
``asyncio.Protocol``: frames are decoded straight out of ``data_received`` and,
as the engine is synchronous and in memory, most requests are answered before
the callback returns. Only primed faults (latency, silence) defer an answer,
which is how responses come back out of order on one connection.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import itertools
import logging
import re
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from . import _engine as eng
from . import _frame as f
from ._faults import Activity, ActivityLog, ErrorKind, Fault, FaultRegistry, Opcode
from ._permissions import AUTHORIZER as _AUTHZ
from ._results import Result
from ._roles import AUTHENTICATOR as AUTH
from ._segment import SegmentError, SegmentReader
from ._segment import encode as encode_segments
from ._system import CQL_VERSION, register_system_tables, spread_tokens
from ._tracing import EVENT_COLUMNS, SESSION_COLUMNS, Traces, TraceSession

if TYPE_CHECKING:
    from ._engine import ColumnSpec, Engine, Prepared

log = logging.getLogger("bridge.testing.cqlserver")

SUPPORTED_VERSIONS = ["4/v4", "5/v5"]
SUPPORTED_VERSIONS_TEXT = ", ".join(SUPPORTED_VERSIONS)
_EVENT_TYPES = frozenset({"TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE"})
_TRACEABLE = frozenset({f.QUERY, f.EXECUTE, f.PREPARE, f.BATCH})
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_PAUSE_AT = 8 * 1024 * 1024  # pause reading a client whose answers pile up unread


class Node:
    """One simulated Cassandra node: an address, a listener and its connections."""

    def __init__(self, server: CQLServer, index: int, address: str, n_nodes: int) -> None:
        self.server = server
        self.index = index
        self.address = address
        self.port = 0
        self.host_id = uuid.uuid4()
        self.tokens = spread_tokens(n_nodes, index)
        self.connections: set[Connection] = set()
        self.prepared_ids: set[bytes] = set()  # what this node knows; cleared on restart
        self._listener: asyncio.AbstractServer | None = None

    @property
    def running(self) -> bool:
        return self._listener is not None

    def __repr__(self) -> str:
        state = "up" if self.running else "down"
        return f"<Node {self.index} {self.address}:{self.port} {state}>"

    async def listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: Connection(self),
            host=self.address,
            port=port,
            reuse_address=True,
            backlog=1024,
        )
        sock = self._listener.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        self.prepared_ids.clear()
        if listener is not None:
            await listener.wait_closed()


class CQLServer:
    """An in-memory Cassandra that the real ``cassandra-driver`` connects to.

    ``nodes`` nodes listen on ``host``, ``host``+1, ... (all on loopback), each
    on the same ``port`` (0 picks a free one). Use it as ``async with
    CQLServer() as server`` on an asyncio/uvloop loop, or from sync code and
    other event loops through :meth:`start_in_thread` or
    :meth:`start_in_subprocess`. ``server.contact_points`` and ``server.port``
    are what ``cassandra.cluster.Cluster`` needs.
    """

    def __init__(
        self,
        *,
        nodes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        engine: Engine | None = None,
        cluster_name: str = "bridge-test-cluster",
        datacenter: str = "datacenter1",
        rack: str = "rack1",
        release_version: str = "4.1.4",
        activity_maxlen: int = 100_000,
        authenticator: str | None = None,
        authorizer: str | None = None,
        echo_custom_payload: bool = False,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if authenticator not in (None, "AllowAllAuthenticator", "PasswordAuthenticator", AUTH):
            raise ValueError(
                f"unknown authenticator {authenticator!r}: use None (or 'AllowAllAuthenticator') "
                "for none, or 'PasswordAuthenticator' for logins checked against the roles "
                "(default superuser cassandra/cassandra; add more with CREATE ROLE)"
            )
        if authorizer not in (None, "AllowAllAuthorizer", "CassandraAuthorizer", _AUTHZ):
            raise ValueError(
                f"unknown authorizer {authorizer!r}: use None (or 'AllowAllAuthorizer') for "
                "none, or 'CassandraAuthorizer' for GRANT/REVOKE and permission checks"
            )
        # Permission checks (CassandraAuthorizer) on the engine; they need logins.
        self.cassandra_authorizer = authorizer in ("CassandraAuthorizer", _AUTHZ)
        if self.cassandra_authorizer and authenticator in (None, "AllowAllAuthenticator"):
            raise ValueError(
                "authorizer='CassandraAuthorizer' needs logins: also pass "
                "authenticator='PasswordAuthenticator', as Cassandra requires"
            )
        # Send each request's custom payload back with its response, as Cassandra does
        # with CustomPayloadMirroringQueryHandler (the default handler ignores them).
        self.echo_custom_payload = echo_custom_payload
        # Whether connections must log in (PasswordAuthenticator) before anything else.
        self.password_auth = authenticator in ("PasswordAuthenticator", AUTH)
        first = ipaddress.ip_address(host)
        self.cluster_name = cluster_name
        self.datacenter = datacenter
        self.rack = rack
        self.release_version = release_version
        self.schema_version = uuid.uuid4()
        self.requested_port = port
        self.nodes = [Node(self, i, str(first + i), nodes) for i in range(nodes)]
        self.faults = FaultRegistry()
        self.activity_log = ActivityLog(activity_maxlen)
        self._engine = engine
        self._engine_ready = False
        self._started = False
        self._connection_ids = itertools.count(1)
        self._port = 0
        self._first_address = first
        self._specs_cache: dict[bytes, tuple[int, bytes]] = {}
        self._metadata_ids: dict[bytes, tuple[Prepared, bytes]] = {}
        self.traces = Traces()
        # Every statement id ever prepared, for the activity log of an
        # EXECUTE the node has forgotten (never cleared; tests are short).
        self._statement_texts: dict[bytes, str] = {}

    # -- lifecycle ---------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The shared CQL engine (tables, schema, prepared statements)."""
        if self._engine is None:
            self._engine = eng.Engine()
        if not self._engine_ready:
            self._engine_ready = True
            self._engine.permissions.enabled = self.cassandra_authorizer
            register_system_tables(self._engine, self, generation=int(time.time()))
            traces = self.traces
            self._engine.register_virtual_table(
                "system_traces", "sessions", SESSION_COLUMNS, traces.session_rows
            )
            self._engine.register_virtual_table(
                "system_traces", "events", EVENT_COLUMNS, traces.event_rows
            )
            self._engine.add_schema_listener(self._on_schema_change)
        return self._engine

    @property
    def node_infos(self) -> Sequence[Node]:
        return self.nodes

    @property
    def port(self) -> int:
        """The native transport port every node listens on."""
        return self._port or self.nodes[0].port

    @property
    def contact_points(self) -> list[str]:
        """The nodes' addresses, for ``Cluster(contact_points, port=server.port)``."""
        return [n.address for n in self.nodes]

    async def start(self) -> None:
        """Open every node's listener (on one shared port)."""
        if self._started:
            return
        self.engine  # noqa: B018 - build the engine and system tables before clients arrive
        port = self.requested_port
        for attempt in range(20):
            try:
                await self.nodes[0].listen(port)
                port = self.nodes[0].port
                for node in self.nodes[1:]:
                    await node.listen(port)
            except OSError as exc:
                for node in self.nodes:
                    await node.close()
                if exc.errno != errno.EADDRINUSE or self.requested_port or attempt == 19:
                    raise
                port = 0  # another node's address had this port taken; pick again
                continue
            break
        self._port = port
        self._started = True

    async def close(self) -> None:
        """Close every listener and connection."""
        for node in self.nodes:
            await node.close()
        self._started = False

    async def __aenter__(self) -> CQLServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    # -- nodes --------------------------------------------------------------

    def _node(self, node: int | str) -> Node:
        for n in self.nodes:
            if n.address == node or n.index == node:
                return n
        raise ValueError(f"no node {node!r}; nodes are {self.nodes}")

    async def add_node(self) -> Node:
        """Bootstrap a new node on the next address (others hear TOPOLOGY_CHANGE NEW_NODE).

        Its token splits the widest gap of the ring; data is shared, so it
        serves everything at once.
        """
        index = max(n.index for n in self.nodes) + 1 if self.nodes else 0
        node = Node(self, index, str(self._first_address + index), 1)
        node.tokens = [str(_split_widest_gap([int(t) for n in self.nodes for t in n.tokens]))]
        await node.listen(self.port)
        self.nodes.append(node)
        self._push_node_event("TOPOLOGY_CHANGE", "NEW_NODE", node)
        return node

    async def remove_node(self, node: int | str) -> None:
        """Decommission a node: it stops and leaves the peers tables (REMOVED_NODE)."""
        target = self._node(node)
        if len(self.nodes) == 1:
            raise ValueError("cannot remove the last node of the cluster")
        await target.close()
        self.nodes.remove(target)
        self._push_node_event("TOPOLOGY_CHANGE", "REMOVED_NODE", target)

    async def stop_node(self, node: int | str) -> None:
        """Stop a node: close its listener and drop its connections (others hear DOWN)."""
        target = self._node(node)
        if not target.running:
            return
        await target.close()
        self._push_node_event("STATUS_CHANGE", "DOWN", target)

    async def start_node(self, node: int | str) -> None:
        """Start a stopped node again on its address and port (others hear UP)."""
        target = self._node(node)
        if target.running:
            return
        await target.listen(self.port or target.port)
        self._push_node_event("STATUS_CHANGE", "UP", target)

    def _push_node_event(self, kind: str, change: str, target: Node) -> None:
        event = f.event_node(kind, change, target.address, target.port)
        for node in self.nodes:
            if node is target:
                continue
            for conn in node.connections:
                if kind in conn.events:
                    conn.write(event)

    def _on_schema_change(self, change: eng.SchemaChangeResult) -> None:
        self.schema_version = uuid.uuid4()
        self._specs_cache.clear()
        self._metadata_ids.clear()
        # Statements on a dropped table are forgotten by every node, so one
        # prepared again on a single node is UNPREPARED on the others.
        known = self.engine.prepared_ids()
        for node in self.nodes:
            node.prepared_ids &= known
        event = f.event_schema_change(
            change.change_type, change.target, change.keyspace, change.name
        )
        for node in self.nodes:
            for conn in node.connections:
                if "SCHEMA_CHANGE" in conn.events:
                    conn.write(event)

    # -- test controls ----------------------------------------------------

    def prime(
        self,
        pattern: str | re.Pattern[str],
        *,
        regex: bool = False,
        delay: float = 0.0,
        error: ErrorKind | None = None,
        message: str | None = None,
        no_response: bool = False,
        disconnect: bool = False,
        times: int | None = None,
        node: int | None = None,
        opcodes: Iterable[Opcode] = ("QUERY", "EXECUTE", "BATCH"),
    ) -> Fault:
        """Prime a fault (see :meth:`FaultRegistry.prime`); safe from any thread."""
        return self.faults.prime(
            pattern,
            regex=regex,
            delay=delay,
            error=error,
            message=message,
            no_response=no_response,
            disconnect=disconnect,
            times=times,
            node=node,
            opcodes=opcodes,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def activity(
        self,
        *,
        node: int | None = None,
        opcode: str | None = None,
        contains: str | None = None,
        include_system: bool = False,
    ) -> list[Activity]:
        """Requests the nodes received, oldest first (driver housekeeping left out)."""
        return self.activity_log.entries(
            node=node, opcode=opcode, contains=contains, include_system=include_system
        )

    def clear_activity(self) -> None:
        self.activity_log.clear()

    def forget_prepared(self) -> None:
        """Forget every prepared statement, as a restarted cluster would."""
        self.engine.forget_prepared()
        self._specs_cache.clear()
        for node in self.nodes:
            node.prepared_ids.clear()

    def result_metadata_id(self, prepared: Prepared) -> bytes:
        """The v5 id of a prepared statement's result columns (changes when they do)."""
        found = self._metadata_ids.get(prepared.id)
        if found is None or found[0] is not prepared:
            columns = b"" if prepared.result is None else f.col_specs(_metas(prepared.result))[1]
            found = (prepared, hashlib.md5(columns).digest())
            self._metadata_ids[prepared.id] = found
        return found[1]

    def execute(
        self, query: str, values: list[bytes | None] | None = None, keyspace: str | None = None
    ) -> Result:
        """Run CQL directly on the engine (for seeding data); loop thread only."""
        return self.engine.execute(query, values, keyspace=keyspace)

    # -- other ways to run it ---------------------------------------------

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> ServerThread:
        """Run a server on a loop in a background thread; returns a sync handle."""
        from ._runner import ServerThread

        return ServerThread(cls(**kwargs))

    @classmethod
    def start_in_subprocess(cls, **kwargs: Any) -> ServerProcess:
        """Run a server in another Python process (``python -m bridge.testing.cqlserver``)."""
        from ._runner import ServerProcess

        return ServerProcess(**kwargs)


# ---------------------------------------------------------------------------
# Connections


def _option(spec: ColumnSpec) -> f.ColumnMeta:
    return f.ColumnMeta(spec.keyspace, spec.table, spec.name, spec.type.option())


def _metas(specs: Sequence[ColumnSpec]) -> list[f.ColumnMeta]:
    return [_option(s) for s in specs]


class Connection(asyncio.Protocol):
    """One client connection to one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.server = node.server
        self.id = next(node.server._connection_ids)
        self.transport: asyncio.Transport | None = None
        self.keyspace: str | None = None
        self.events: frozenset[str] = frozenset()
        self.started = False
        self.authenticating = False  # AUTHENTICATE sent, waiting for the client's credentials
        self.user: str | None = None
        self.closed = False
        # Set by the first frame (v4 or v5) for the connection's lifetime; a v5
        # connection wraps its frames in segments once READY has been sent.
        self.version: int | None = None
        self._segments: SegmentReader | None = None
        self._pending = bytearray()
        self._need = f.HEADER_SIZE
        self._paused = False
        self._out: list[bytes] | None = None
        self._traced: dict[int, TraceSession] = {}  # by stream: requests sent with tracing
        self._payloads: dict[int, bytes] = {}  # by stream: custom payloads to echo

    # -- transport callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=_PAUSE_AT)
        if not self.node.running:
            # Accepted just as the node stopped.
            transport.abort()
            return
        self.node.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.node.connections.discard(self)

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self._traced or self._payloads:
            data = self._envelope(data)
        out = self._out
        if out is not None:
            out.append(data)  # sent with the rest of this read's answers
        elif not self.closed and self.transport is not None:
            self.transport.write(self._wire([data]))

    def _envelope(self, data: bytes) -> bytes:
        """Add the tracing id (closing its session) and the echoed payload to an answer."""
        stream = f.HEADER.unpack_from(data)[2]
        if stream < 0:
            return data
        session = self._traced.pop(stream, None)
        payload = self._payloads.pop(stream, None)
        if session is None and payload is None:
            return data
        if session is not None:
            session.finish()
        return f.with_envelope(
            data, tracing_id=session.id.bytes if session else None, payload=payload
        )

    def _flush(self) -> None:
        out, self._out = self._out, None
        if out and not self.closed and self.transport is not None:
            self.transport.write(self._wire(out))

    def _wire(self, frames: list[bytes]) -> bytes:
        """Frames as this connection sends them: in v5 segments, with v5's version byte."""
        if self._segments is not None:
            return encode_segments(frames, 0x80 | f.V5)
        if self.version == f.V5:  # before READY: plain frames, v5 header
            return b"".join(bytes([0x80 | f.V5]) + frame[1:] for frame in frames)
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def abort(self) -> None:
        """Drop the connection with a reset (RST), as a crashed node would.

        The driver then defuncts the connection at once (a FIN would be taken
        as an orderly close) and marks the host down when it next uses it.
        """
        self.closed = True
        self._out = None
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.transport.abort()

    def _fatal(self, stream: int, message: str, version: int = f.RESPONSE_VERSION) -> None:
        """Answer a protocol error, then close this connection (and only it)."""
        if self.closed:
            return
        self._flush()
        if version & 0x7F < 3:
            # v1/v2 headers have a one-byte stream id.
            body = f._INT.pack(f.PROTOCOL_ERROR) + f.enc_string(message)
            header = bytes([version, 0, stream & 0xFF, f.ERROR]) + f._INT.pack(len(body))
            self.write(header + body)
        else:
            self.write(f.error(stream, f.PROTOCOL_ERROR, message, version=version))
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._segments is not None:
            try:
                data = self._segments.feed(data)
            except SegmentError as exc:
                # Cassandra closes a connection whose checksums fail.
                log.warning("cqlserver: closing connection %d: %s", self.id, exc)
                self.abort()
                return
            if not data:
                return
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return
            data = bytes(self._pending)
            self._pending.clear()
        pos = 0
        size = len(data)
        header = f.HEADER
        # Answers to every frame in this read go out in one write (one syscall).
        self._out = []
        segmented = self._segments is not None
        try:
            while size - pos >= f.HEADER_SIZE:
                version, flags, stream, opcode, length = header.unpack_from(data, pos)
                if version != self.version:
                    if self.version is None and version in f.VERSIONS:
                        self.version = version
                    else:
                        self._bad_version(data, pos, version)
                        return
                if length < 0 or length > f.MAX_BODY:
                    self._fatal(stream, f"Invalid frame body length {length}")
                    return
                end = pos + f.HEADER_SIZE + length
                if end > size:
                    self._need = end - pos
                    break
                self._request(flags, stream, opcode, data, pos + f.HEADER_SIZE, end)
                pos = end
                if self.closed:
                    return
                if self._segments is not None and not segmented:
                    break  # READY went out: what follows comes in segments
            else:
                self._need = f.HEADER_SIZE
        except Exception as exc:  # never let one client take the server down
            log.exception("cqlserver: unexpected failure handling a frame")
            self._fatal(0, f"Unexpected server failure: {exc}")
            return
        finally:
            self._flush()
        if self._segments is not None and not segmented:
            if pos < size:
                self.data_received(data[pos:])
            return
        if pos < size:
            self._pending += data[pos:]

    def _bad_version(self, data: bytes, pos: int, version_byte: int) -> None:
        version = version_byte & 0x7F
        if self.version is not None and version in f.VERSIONS:
            self._fatal(
                _stream_of(data, pos, version),
                f"Invalid message version. Got {version} but previous messages on this "
                f"connection had version {self.version}",
            )
            return
        if version_byte & 0x80:
            stream = _stream_of(data, pos, version)
            self._fatal(stream, "Invalid frame: the response bit is set on a request")
            return
        # Cassandra answers in the version the client asked for (the channel's
        # version: there is no other yet), so the driver can read the error
        # and step down: DSE_V2 -> DSE_V1 -> v5 -> v4.
        answer = version if version > 0 else f.PROTOCOL_VERSION
        self._fatal(
            _stream_of(data, pos, version),
            f"Invalid or unsupported protocol version ({version}); "
            f"supported versions are ({SUPPORTED_VERSIONS_TEXT})",
            version=0x80 | answer,
        )

    # -- requests -----------------------------------------------------------

    def _request(
        self, flags: int, stream: int, opcode: int, data: bytes, start: int, end: int
    ) -> None:
        if flags & f.FLAG_COMPRESSED:
            self._fatal(stream, "Compressed frame received but no compression was negotiated")
            return
        reader = f.BodyReader(data, start, end)
        if flags & f.FLAG_TRACING and opcode in _TRACEABLE:
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self._traced[stream] = self.server.traces.start(
                f.OPCODE_NAMES[opcode], peer[0] if peer else "127.0.0.1",
                self.node.address, self.server.port,
            )  # fmt: skip
        try:
            if flags & f.FLAG_CUSTOM_PAYLOAD:
                before = reader.pos
                reader.read_bytes_map()  # ignored, as by Cassandra's default QueryHandler
                if self.server.echo_custom_payload and opcode in _TRACEABLE:
                    self._payloads[stream] = bytes(data[before : reader.pos])
            if opcode == f.EXECUTE:
                self._execute(stream, reader)
            elif opcode == f.QUERY:
                self._query(stream, reader)
            elif opcode == f.PREPARE:
                self._prepare(stream, reader)
            elif opcode == f.BATCH:
                self._batch(stream, reader)
            elif opcode == f.OPTIONS:
                self._record("OPTIONS", stream)
                self.write(
                    f.supported(
                        stream,
                        {
                            "CQL_VERSION": [CQL_VERSION],
                            "COMPRESSION": [],  # none offered: the driver uses none
                            "PROTOCOL_VERSIONS": SUPPORTED_VERSIONS,
                        },
                    )
                )
            elif opcode == f.STARTUP:
                self._startup(stream, reader)
            elif opcode == f.REGISTER:
                self._register(stream, reader)
            elif opcode == f.AUTH_RESPONSE:
                self._auth_response(stream, reader)
            else:
                name = f.OPCODE_NAMES.get(opcode, f"0x{opcode:02X}")
                self._fatal(stream, f"Unknown or unexpected request opcode {name}")
        except f.FrameError as exc:
            self._fatal(stream, str(exc))

    def _record(
        self,
        opcode: str,
        stream: int,
        query: str | None = None,
        params: f.QueryParams | None = None,
        consistency: int | None = None,
    ) -> None:
        session = self._traced.get(stream) if self._traced else None
        if session is not None:
            session.query = query
            level = params.consistency if params is not None else consistency
            if level is not None:
                session.consistency = f.CONSISTENCY_NAMES.get(level)
        if params is None:
            self.server.activity_log.record(
                self.node.index,
                self.node.address,
                self.id,
                opcode,
                stream,
                query,
                None,
                False,
                consistency,
            )
        else:
            self.server.activity_log.record(
                self.node.index,
                self.node.address,
                self.id,
                opcode,
                stream,
                query,
                params.page_size,
                params.paging_state is not None,
                params.consistency,
            )

    def _not_started(self, stream: int, what: str) -> bool:
        if self.started:
            return False
        self.write(
            f.error(
                stream, f.PROTOCOL_ERROR, f"Unexpected message {what}, expecting STARTUP or OPTIONS"
            )
        )
        return True

    def _startup(self, stream: int, reader: f.BodyReader) -> None:
        options = reader.read_string_map()
        self._record("STARTUP", stream)
        if "CQL_VERSION" not in options:
            self.write(
                f.error(stream, f.PROTOCOL_ERROR, "Missing value CQL_VERSION in STARTUP message")
            )
            return
        compression = options.get("COMPRESSION")
        if compression:
            self.write(
                f.error(stream, f.PROTOCOL_ERROR, f"Unknown compression algorithm: {compression}")
            )
            return
        if self.server.password_auth:
            self.authenticating = True
            self.write(f.authenticate(stream, AUTH))
        else:
            self.started = True
            self.write(f.ready(stream))
        if self.version == f.V5:
            # READY or AUTHENTICATE is the last plain frame; from here on both
            # sides use segments.
            self._flush()
            self._out = []
            self._segments = SegmentReader()

    def _auth_response(self, stream: int, reader: f.BodyReader) -> None:
        """SASL PLAIN (``\\0user\\0password``), as PasswordAuthenticator reads it."""
        self._record("AUTH_RESPONSE", stream)
        if not self.authenticating:
            self.write(
                f.error(stream, f.PROTOCOL_ERROR, "Unexpected AUTH_RESPONSE: no authentication "
                        "is in progress on this connection")
            )  # fmt: skip
            return
        token = reader.read_bytes() or b""
        parts = token.split(b"\x00")
        if len(parts) != 3:
            self.write(
                f.error(stream, f.BAD_CREDENTIALS, "Password must not be null")
                if len(parts) == 2
                else f.error(stream, f.PROTOCOL_ERROR, "Invalid SASL PLAIN token")
            )
            return
        username, password = (p.decode("utf-8", "replace") for p in parts[1:])
        if not self.server.engine.roles.login(username, password):
            self.write(
                f.error(
                    stream, f.BAD_CREDENTIALS,
                    f"Provided username {username} and/or password are incorrect",
                )
            )  # fmt: skip
            return
        self.authenticating = False
        self.started = True
        self.user = username
        self.write(f.auth_success(stream))

    def _register(self, stream: int, reader: f.BodyReader) -> None:
        if self._not_started(stream, "REGISTER"):
            return
        events = reader.read_string_list()
        self._record("REGISTER", stream, ",".join(events))
        unknown = [e for e in events if e not in _EVENT_TYPES]
        if unknown:
            self.write(f.error(stream, f.PROTOCOL_ERROR, f"Invalid value '{unknown[0]}' for Type"))
            return
        self.events = self.events | frozenset(events)
        self.write(f.ready(stream))

    def _query(self, stream: int, reader: f.BodyReader) -> None:
        if self._not_started(stream, "QUERY"):
            return
        query = reader.read_long_string()
        params = reader.read_query_params(self.version or f.PROTOCOL_VERSION)
        self._record("QUERY", stream, query, params)
        faults = self.server.faults
        if faults._faults:
            fault = faults.match("QUERY", self.node.index, (query,))
            if fault is not None:
                self._faulted(
                    fault,
                    stream,
                    params.consistency,
                    "QUERY",
                    query,
                    None,
                    lambda: self._run(stream, query, params),
                )
                return
        self._run(stream, query, params)

    def _execute(self, stream: int, reader: f.BodyReader) -> None:
        if self._not_started(stream, "EXECUTE"):
            return
        statement_id = reader.read_short_bytes()
        version = self.version or f.PROTOCOL_VERSION
        metadata_id = reader.read_short_bytes() if version >= f.V5 else None
        params = reader.read_query_params(version)
        engine = self.server.engine
        prepared: Prepared | None = None
        if statement_id in self.node.prepared_ids:
            try:
                prepared = engine.get_prepared(statement_id)
            except eng.CQLError:
                prepared = None
        query = prepared.query if prepared else self.server._statement_texts.get(statement_id)
        self._record("EXECUTE", stream, query, params)
        if prepared is None:
            self.write(
                f.error(
                    stream,
                    f.UNPREPARED,
                    f"Prepared query with ID {statement_id.hex()} not found (either the query was "
                    "not prepared on this host (maybe the host has been restarted?) or you have "
                    "prepared too many queries and it has been evicted from the internal cache)",
                    f.unprepared_extra(statement_id),
                )
            )
            return
        faults = self.server.faults
        if faults._faults:
            fault = faults.match("EXECUTE", self.node.index, (prepared.query,))
            if fault is not None:
                bound = prepared
                self._faulted(
                    fault,
                    stream,
                    params.consistency,
                    "EXECUTE",
                    prepared.query,
                    statement_id,
                    lambda: self._run(stream, bound, params, metadata_id),
                )
                return
        self._run(stream, prepared, params, metadata_id)

    def _run(
        self,
        stream: int,
        statement: str | Prepared,
        params: f.QueryParams,
        metadata_id: bytes | None = None,
    ) -> None:
        """Execute on the engine and answer RESULT or ERROR.

        ``metadata_id`` is the result metadata id a v5 EXECUTE carries.
        """
        if self.closed:
            return
        try:
            result = self.server.engine.execute(
                statement,
                params.values,
                keyspace=params.keyspace or self.keyspace,
                page_size=params.page_size,
                paging_state=params.paging_state,
                timestamp=params.timestamp,
                context=self.node,
                user=self.user,
            )
        except Exception as exc:
            self.write(self._error_frame(stream, exc))
            return
        # Only a prepared SELECT has one set of result columns; a conditional
        # write's [applied] row differs from one execution to the next.
        key = None if isinstance(statement, str) or statement.result is None else statement.id
        new_id = None
        if metadata_id is not None and key is not None:
            assert not isinstance(statement, str)
            current = self.server.result_metadata_id(statement)
            if metadata_id != current:
                new_id = current  # the client's result metadata is stale: send it again
        self.write(self._result_frame(stream, result, params.skip_metadata, key, new_id))

    def _result_frame(
        self,
        stream: int,
        result: object,
        skip_metadata: bool,
        key: bytes | None = None,
        new_metadata_id: bytes | None = None,
    ) -> bytes:
        if isinstance(result, eng.RowsResult):  # the hot path
            columns = result.columns
            if skip_metadata and new_metadata_id is None:
                meta = f.rows_metadata(len(columns), None, result.paging_state)
            else:
                # A prepared statement's columns are encoded once (until the schema changes).
                cache = self.server._specs_cache
                specs = cache.get(key) if key is not None else None
                if specs is None:
                    specs = f.col_specs(_metas(columns))
                    if key is not None:
                        cache[key] = specs
                meta = f.rows_metadata_from_specs(
                    len(columns), *specs, result.paging_state, new_metadata_id
                )
            rows = f.result_rows(stream, meta, result.rows)
            return f.with_envelope(rows, warnings=result.warnings) if result.warnings else rows
        if isinstance(result, eng.VoidResult):
            return f.result_void(stream)
        if isinstance(result, eng.SetKeyspaceResult):
            self.keyspace = result.keyspace  # USE: this connection's keyspace from now on
            return f.result_set_keyspace(stream, result.keyspace)
        if isinstance(result, eng.SchemaChangeResult):
            return f.result_schema_change(
                stream, result.change_type, result.target, result.keyspace, result.name
            )
        log.error("cqlserver: the engine returned an unknown result %r", result)
        return f.error(stream, f.SERVER_ERROR, f"Unknown result type {type(result).__name__}")

    def _error_frame(self, stream: int, exc: Exception) -> bytes:
        if isinstance(exc, eng.CQLError):
            code = exc.code
            extra = b""
            if isinstance(exc, eng.AlreadyExists):
                extra = f.already_exists_extra(exc.keyspace, exc.table)
            elif isinstance(exc, eng.Unprepared):
                extra = f.unprepared_extra(exc.statement_id)
            return f.error(stream, code, exc.message, extra)
        log.exception("cqlserver: engine failure", exc_info=exc)
        return f.error(stream, f.SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _prepare(self, stream: int, reader: f.BodyReader) -> None:
        if self._not_started(stream, "PREPARE"):
            return
        query, keyspace = reader.read_prepare(self.version or f.PROTOCOL_VERSION)
        self._record("PREPARE", stream, query)
        faults = self.server.faults
        if faults._faults:
            fault = faults.match("PREPARE", self.node.index, (query,))
            if fault is not None:
                self._faulted(
                    fault,
                    stream,
                    1,
                    "PREPARE",
                    query,
                    None,
                    lambda: self._run_prepare(stream, query, keyspace),
                )
                return
        self._run_prepare(stream, query, keyspace)

    def _run_prepare(self, stream: int, query: str, keyspace: str | None) -> None:
        if self.closed:
            return
        try:
            prepared = self.server.engine.prepare(query, keyspace or self.keyspace)
        except Exception as exc:
            self.write(self._error_frame(stream, exc))
            return
        self.node.prepared_ids.add(prepared.id)
        self.server._statement_texts[prepared.id] = query
        result = None if prepared.result is None else _metas(prepared.result)
        bind = [
            f.ColumnMeta(s.keyspace, s.table, name, s.type.option())
            for s, name in zip(prepared.bind, _bind_names(prepared), strict=True)
        ]
        metadata_id = None
        if self.version == f.V5:
            metadata_id = self.server.result_metadata_id(prepared)
        self.write(
            f.result_prepared(stream, prepared.id, bind, prepared.pk_indexes, result, metadata_id)
        )

    def _batch(self, stream: int, reader: f.BodyReader) -> None:
        if self._not_started(stream, "BATCH"):
            return
        request = reader.read_batch(self.version or f.PROTOCOL_VERSION)
        engine = self.server.engine
        statements: list[tuple[str | Prepared, list[bytes | None]]] = []
        texts: list[str] = []
        unknown: bytes | None = None
        for target, values in request.statements:
            if isinstance(target, str):
                statements.append((target, values))
                texts.append(target)
                continue
            prepared = None
            if target in self.node.prepared_ids:
                try:
                    prepared = engine.get_prepared(target)
                except eng.CQLError:
                    prepared = None
            if prepared is None:
                unknown = unknown or target
                texts.append("")
                continue
            statements.append((prepared, values))
            texts.append(prepared.query)
        self._record("BATCH", stream, "; ".join(texts), consistency=request.consistency)
        if unknown is not None:
            self.write(
                f.error(
                    stream,
                    f.UNPREPARED,
                    f"Prepared query with ID {unknown.hex()} not found",
                    f.unprepared_extra(unknown),
                )
            )
            return
        faults = self.server.faults
        if faults._faults:
            fault = faults.match("BATCH", self.node.index, texts)
            if fault is not None:
                self._faulted(
                    fault,
                    stream,
                    request.consistency,
                    "BATCH_LOG" if request.batch_type == 0 else "UNLOGGED_BATCH",
                    texts[0] if texts else "",
                    None,
                    lambda: self._run_batch(stream, statements, request),
                )
                return
        self._run_batch(stream, statements, request)

    def _run_batch(
        self,
        stream: int,
        statements: list[tuple[str | Prepared, list[bytes | None]]],
        request: f.BatchRequest,
    ) -> None:
        if self.closed:
            return
        try:
            result = self.server.engine.execute_batch(
                statements,
                keyspace=request.keyspace or self.keyspace,
                batch_type=request.batch_type,
                timestamp=request.timestamp,
                context=self.node,
                user=self.user,
            )
        except Exception as exc:
            self.write(self._error_frame(stream, exc))
            return
        self.write(self._result_frame(stream, result, False))

    # -- faults -------------------------------------------------------------

    def _faulted(
        self,
        fault: Fault,
        stream: int,
        consistency: int,
        kind: str,
        query: str,
        statement_id: bytes | None,
        run: Callable[[], None],
    ) -> None:
        def act() -> None:
            if self.closed:
                return
            if fault.disconnect:
                self.abort()
            elif fault.no_response:
                pass
            elif fault.error is not None:
                self.write(
                    _fault_error(
                        fault.error,
                        fault.message,
                        stream,
                        consistency,
                        kind,
                        query,
                        statement_id,
                        self.node.address,
                        self.version or f.PROTOCOL_VERSION,
                    )
                )
            else:
                run()

        if fault.delay > 0:
            asyncio.get_running_loop().call_later(fault.delay, act)
        else:
            act()


def _split_widest_gap(tokens: list[int]) -> int:
    """A token halfway across the widest gap of the Murmur3 ring."""
    low, size = -(2**63), 2**64
    if not tokens:
        return low
    ring = sorted(tokens)
    gaps = [(b - a, a) for a, b in itertools.pairwise(ring)]
    gaps.append((ring[0] + size - ring[-1], ring[-1]))  # the wrap-around gap
    width, start = max(gaps)
    middle = start + width // 2
    return (middle - low) % size + low


def _bind_names(prepared: Prepared) -> list[str]:
    names = list(getattr(prepared, "bind_names", []) or [])
    if len(names) != len(prepared.bind):
        return [s.name for s in prepared.bind]
    return [n or s.name for n, s in zip(names, prepared.bind, strict=True)]


def _stream_of(data: bytes, pos: int, version: int) -> int:
    if version < 3:
        return (
            int.from_bytes(data[pos + 2 : pos + 3], "big", signed=True)
            if len(data) > pos + 2
            else 0
        )
    if len(data) >= pos + 4:
        return int.from_bytes(data[pos + 2 : pos + 4], "big", signed=True)
    return 0


def _fault_error(
    kind: ErrorKind,
    message: str | None,
    stream: int,
    consistency: int,
    write_type: str,
    query: str,
    statement_id: bytes | None,
    address: str = "127.0.0.1",
    version: int = f.PROTOCOL_VERSION,
) -> bytes:
    cl_name = f.CONSISTENCY_NAMES.get(consistency, str(consistency))
    if write_type not in ("BATCH_LOG", "UNLOGGED_BATCH"):
        write_type = "SIMPLE"
    if kind == "read_timeout":
        return f.error(
            stream,
            f.READ_TIMEOUT,
            message or "Operation timed out - received only 0 responses.",
            f.read_timeout_extra(consistency, 0, 1, False),
        )
    if kind == "write_timeout":
        return f.error(
            stream,
            f.WRITE_TIMEOUT,
            message or "Operation timed out - received only 0 responses.",
            f.write_timeout_extra(consistency, 0, 1, write_type),
        )
    if kind == "unavailable":
        return f.error(
            stream,
            f.UNAVAILABLE,
            message or f"Cannot achieve consistency level {cl_name}",
            f.unavailable_extra(consistency, 1, 0),
        )
    if kind == "read_failure":
        return f.error(
            stream,
            f.READ_FAILURE,
            message or "Operation failed - received 0 responses and 1 failures",
            f.read_failure_extra(consistency, 0, 1, [address], False, version),
        )
    if kind == "write_failure":
        return f.error(
            stream,
            f.WRITE_FAILURE,
            message or "Operation failed - received 0 responses and 1 failures",
            f.write_failure_extra(consistency, 0, 1, [address], write_type, version),
        )
    if kind == "unprepared":
        sid = statement_id or hashlib.md5(query.encode("utf-8")).digest()
        return f.error(
            stream,
            f.UNPREPARED,
            message or f"Prepared query with ID {sid.hex()} not found",
            f.unprepared_extra(sid),
        )
    simple = {
        "overloaded": (
            f.OVERLOADED,
            "Server is in overloaded state. Cannot accept more requests at this point",
        ),
        "server_error": (f.SERVER_ERROR, "Primed server error"),
        "invalid": (f.INVALID, "Primed invalid query"),
        "syntax_error": (f.SYNTAX_ERROR, "line 1:0 primed syntax error"),
        "is_bootstrapping": (f.IS_BOOTSTRAPPING, "Cannot read from a bootstrapping node"),
        "truncate_error": (f.TRUNCATE_ERROR, "Primed truncate error"),
    }
    code, default = simple[kind]
    return f.error(stream, code, message or default)


if TYPE_CHECKING:
    from ._runner import ServerProcess, ServerThread
