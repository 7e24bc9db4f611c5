"""Primed faults and the activity log: what tests make a node do, and what it saw.

Both are read on the server's loop thread and written from any thread (a test
primes a fault while the server runs in a background thread), so each guards
its state with a lock held only for a few list operations.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, get_args

ErrorKind = Literal[
    "read_timeout",
    "write_timeout",
    "unavailable",
    "overloaded",
    "server_error",
    "unprepared",
    "invalid",
    "syntax_error",
    "is_bootstrapping",
    "truncate_error",
    "read_failure",
    "write_failure",
]
"""Errors a fault can answer with; each becomes the driver's own exception."""

ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

Opcode = Literal["QUERY", "PREPARE", "EXECUTE", "BATCH"]
"""Requests that carry CQL text and so can match a fault's pattern."""

DEFAULT_OPCODES: tuple[Opcode, ...] = ("QUERY", "EXECUTE", "BATCH")


@dataclass(eq=False)
class Fault:
    """One primed fault; ``hits`` counts the requests it has answered."""

    pattern: re.Pattern[str] | str
    delay: float = 0.0
    error: ErrorKind | None = None
    message: str | None = None
    no_response: bool = False
    disconnect: bool = False
    times: int | None = None
    node: int | None = None
    opcodes: frozenset[str] = frozenset(DEFAULT_OPCODES)
    hits: int = 0
    _registry: FaultRegistry | None = field(default=None, repr=False)

    def matches(self, text: str) -> bool:
        if isinstance(self.pattern, str):
            return self.pattern in text
        return self.pattern.search(text) is not None

    def cancel(self) -> None:
        """Stop this fault from matching further requests."""
        if self._registry is not None:
            self._registry.remove(self)


class FaultRegistry:
    """The faults primed on a server, matched first-primed first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

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
        opcodes: Iterable[Opcode] = DEFAULT_OPCODES,
    ) -> Fault:
        """Make requests whose CQL text matches ``pattern`` misbehave.

        ``pattern`` is a substring of the CQL text, or a regular expression
        (``regex=True`` or a compiled pattern); EXECUTE matches the prepared
        statement's text and BATCH matches when any statement does. The fault
        waits ``delay`` seconds, then answers ``error`` (see ``ErrorKind``),
        never answers (``no_response``), drops the connection
        (``disconnect``), or, with none of these, runs the request normally.
        ``times`` limits it to the next N matches; ``node`` to one node.
        """
        if error is not None and error not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {error!r}; use one of {', '.join(ERROR_KINDS)}")
        if sum([error is not None, no_response, disconnect]) > 1:
            raise ValueError("choose at most one of error=, no_response=, disconnect=")
        if times is not None and times < 1:
            raise ValueError("times must be a positive number of matches (or None for always)")
        if delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        compiled: re.Pattern[str] | str = pattern
        if regex and isinstance(pattern, str):
            compiled = re.compile(pattern)
        ops = frozenset(opcodes)
        unknown = ops - {"QUERY", "PREPARE", "EXECUTE", "BATCH"}
        if unknown:
            raise ValueError(
                f"faults match QUERY, PREPARE, EXECUTE or BATCH, not {sorted(unknown)}"
            )
        fault = Fault(
            pattern=compiled,
            delay=delay,
            error=error,
            message=message,
            no_response=no_response,
            disconnect=disconnect,
            times=times,
            node=node,
            opcodes=ops,
            _registry=self,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        """Forget every primed fault."""
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)

    def match(self, opcode: str, node: int, texts: Iterable[str]) -> Fault | None:
        """The first fault for this request, counted as used; None when none applies."""
        if not self._faults:  # the common case: no lock, no work
            return None
        with self._lock:
            for fault in self._faults:
                if opcode not in fault.opcodes:
                    continue
                if fault.node is not None and fault.node != node:
                    continue
                if not any(fault.matches(t) for t in texts):
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None


class Activity(NamedTuple):
    """One request a node received (a tuple: cheap to record on the hot path)."""

    node: int
    address: str
    connection: int
    opcode: str
    stream: int
    query: str | None
    page_size: int | None
    has_paging_state: bool
    consistency: int | None
    time: float  # time.monotonic() when the frame was decoded


class ActivityLog:
    """What each node received, newest last, bounded to ``maxlen`` entries."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self._entries: deque[Activity] = deque(maxlen=maxlen)
        self.enabled = True

    def record(
        self,
        node: int,
        address: str,
        connection: int,
        opcode: str,
        stream: int,
        query: str | None,
        page_size: int | None = None,
        has_paging_state: bool = False,
        consistency: int | None = None,
    ) -> None:
        if self.enabled:
            # No lock: deque.append, clear and list(deque) each run under the
            # GIL in one C call, so readers in other threads see whole entries.
            self._entries.append(
                Activity(
                    node,
                    address,
                    connection,
                    opcode,
                    stream,
                    query,
                    page_size,
                    has_paging_state,
                    consistency,
                    _monotonic(),
                )
            )

    def entries(
        self,
        *,
        node: int | None = None,
        opcode: str | None = None,
        contains: str | None = None,
        include_system: bool = False,
    ) -> list[Activity]:
        """A snapshot, filtered; driver housekeeping on system tables is left out unless asked."""
        items = list(self._entries)
        out = []
        for a in items:
            if node is not None and a.node != node:
                continue
            if opcode is not None and a.opcode != opcode:
                continue
            if contains is not None and (a.query is None or contains not in a.query):
                continue
            if not include_system and _is_system(a):
                continue
            out.append(a)
        return out

    def clear(self) -> None:
        self._entries.clear()


_monotonic = time.monotonic

_SYSTEM_RE = re.compile(r"\bFROM\s+(system|system_schema|system_virtual_schema)\.", re.IGNORECASE)


def _is_system(entry: Activity) -> bool:
    if entry.opcode in ("OPTIONS", "STARTUP", "REGISTER"):
        return True
    return entry.query is not None and _SYSTEM_RE.search(entry.query) is not None


def parse_fault_spec(spec: str) -> dict[str, object]:
    """Keyword arguments for :meth:`FaultRegistry.prime` from a command-line spec.

    The spec is ``OPTIONS:PATTERN``; OPTIONS is a comma-separated list of
    ``delay=SECONDS``, ``error=KIND``, ``no_response``, ``disconnect``,
    ``times=N``, ``node=I``, ``regex`` and ``on=QUERY|EXECUTE|...``; the
    pattern is everything after the first colon, e.g.
    ``error=read_timeout,times=2:SELECT * FROM ks.users``.
    """
    options, sep, pattern = spec.partition(":")
    if not sep or not pattern:
        raise ValueError(
            f"fault spec {spec!r} must look like OPTIONS:PATTERN, e.g. delay=0.5:SELECT"
        )
    kwargs: dict[str, object] = {"pattern": pattern}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, _, value = item.partition("=")
        if key == "delay":
            kwargs["delay"] = float(value)
        elif key == "error":
            if value not in ERROR_KINDS:
                raise ValueError(
                    f"unknown error kind {value!r}; use one of {', '.join(ERROR_KINDS)}"
                )
            kwargs["error"] = value
        elif key == "message":
            kwargs["message"] = value
        elif key in ("no_response", "disconnect", "regex"):
            kwargs[key] = True
        elif key == "times":
            kwargs["times"] = int(value)
        elif key == "node":
            kwargs["node"] = int(value)
        elif key == "on":
            kwargs["opcodes"] = tuple(v.strip().upper() for v in value.split("|"))
        else:
            raise ValueError(f"unknown fault option {key!r} in {spec!r}")
    return kwargs
