"""Query tracing: a request sent with the tracing flag gets a session in ``system_traces``.

The driver's ``ResultSet.get_query_trace()`` reads ``system_traces.sessions`` and
``system_traces.events`` for the id the response carried; a session here is
complete as soon as its response is written (there is no asynchronous trace
flush to wait for), with an event when the request arrives and one when it ends.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

SESSION_COLUMNS = [
    ("session_id", "uuid", "partition_key"),
    ("client", "inet", "regular"),
    ("command", "text", "regular"),
    ("coordinator", "inet", "regular"),
    ("coordinator_port", "int", "regular"),
    ("duration", "int", "regular"),
    ("parameters", "map<text, text>", "regular"),
    ("request", "text", "regular"),
    ("started_at", "timestamp", "regular"),
]
EVENT_COLUMNS = [
    ("session_id", "uuid", "partition_key"),
    ("event_id", "timeuuid", "clustering"),
    ("activity", "text", "regular"),
    ("source", "inet", "regular"),
    ("source_elapsed", "int", "regular"),
    ("source_port", "int", "regular"),
    ("thread", "text", "regular"),
]
_REQUESTS = {
    "QUERY": "Execute CQL3 query",
    "EXECUTE": "Execute CQL3 prepared query",
    "PREPARE": "Preparing CQL3 query",
    "BATCH": "Execute batch of CQL3 queries",
}


@dataclass
class TraceSession:
    id: uuid.UUID
    opcode: str
    client: str
    coordinator: str
    port: int
    started: float = field(default_factory=time.time)
    query: str | None = None
    consistency: str | None = None
    duration_us: int | None = None
    events: list[tuple[uuid.UUID, str, int]] = field(default_factory=list)

    def event(self, activity: str) -> None:
        elapsed = int((time.time() - self.started) * 1_000_000)
        self.events.append((uuid.uuid1(), activity, elapsed))

    def finish(self) -> None:
        if self.duration_us is None:
            self.event("Request complete")
            self.duration_us = max(1, int((time.time() - self.started) * 1_000_000))


class Traces:
    """The latest ``maxlen`` trace sessions of a cluster, served as ``system_traces`` rows."""

    def __init__(self, maxlen: int = 1000) -> None:
        self.maxlen = maxlen
        self._sessions: OrderedDict[uuid.UUID, TraceSession] = OrderedDict()

    def start(self, opcode: str, client: str, coordinator: str, port: int) -> TraceSession:
        session = TraceSession(uuid.uuid1(), opcode, client, coordinator, port)
        session.event(f"{_REQUESTS.get(opcode, opcode)} received")
        self._sessions[session.id] = session
        while len(self._sessions) > self.maxlen:
            self._sessions.popitem(last=False)
        return session

    def session_rows(self, _context: object = None) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for s in self._sessions.values():
            if s.duration_us is None:
                continue  # in flight: Cassandra writes the duration when it completes
            parameters = {"query": s.query or ""}
            if s.consistency:
                parameters["consistency_level"] = s.consistency
            rows.append(
                {
                    "session_id": s.id,
                    "client": ipaddress.ip_address(s.client),
                    "command": s.opcode,
                    "coordinator": ipaddress.ip_address(s.coordinator),
                    "coordinator_port": s.port,
                    "duration": s.duration_us,
                    "parameters": parameters,
                    "request": _REQUESTS.get(s.opcode, s.opcode),
                    "started_at": int(s.started * 1000),
                }
            )
        return rows

    def event_rows(self, _context: object = None) -> list[dict[str, object]]:
        return [
            {
                "session_id": s.id,
                "event_id": event_id,
                "activity": activity,
                "source": ipaddress.ip_address(s.coordinator),
                "source_elapsed": elapsed,
                "source_port": s.port,
                "thread": "Native-Transport-Requests-1",
            }
            for s in self._sessions.values()
            if s.duration_us is not None
            for event_id, activity, elapsed in s.events
        ]
