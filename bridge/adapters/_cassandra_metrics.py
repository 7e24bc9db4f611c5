"""Cassandra request latency per coordinator host and error type, while metrics are on.

Kept apart from the adapter so that its hooks there stay one line each: the
request notes `time.perf_counter()` just before `execute_async` (only while
`bridge.metrics.recording()`), and its own driver callbacks call `record`.
Only the public `bridge.metrics` API is used, as a user's adapter would.

A request that succeeds (nearly all of them) reuses its host's attribute
values, cached by the driver's `Host` object: reading them again through
three attribute lookups, two of them properties, and building a new
five-value key cost as much as the recording itself (bench/RESULTS.md,
"Metrics", run G).
"""

from __future__ import annotations

import time
from typing import Any

from bridge import metrics

_perf_counter = time.perf_counter
_duration = metrics.db_client_duration

#: id(host) -> (host, its endpoint then, its key for a success). The host is held, so its
#: id stays its own; the endpoint is compared because the driver replaces a host's when its
#: address changes; a cluster has few hosts, and the cache is dropped whole past `_MAX_HOSTS`.
_ok_keys: dict[int, tuple[Any, Any, tuple[Any, ...]]] = {}
_MAX_HOSTS = 1024


def record(future: Any, started: float, error: BaseException | None) -> None:
    """One request answered (or failed) `started` (a perf_counter) ago."""
    elapsed = _perf_counter() - started
    # The host that answered; None when none did (NoHostAvailable, a timeout, a send error).
    host = None if future is None else future.coordinator_host
    if error is None:
        # Read and written from the reactor thread and the loop's: a race only builds
        # the same key twice (dict get and set are each atomic under the GIL, and
        # per-object locked on free-threaded builds).
        endpoint = getattr(host, "endpoint", None)
        cached = _ok_keys.get(id(host))
        if cached is None or cached[0] is not host or cached[1] is not endpoint:
            cached = (host, endpoint, _key(endpoint, None))
            if len(_ok_keys) >= _MAX_HOSTS:
                _ok_keys.clear()
            _ok_keys[id(host)] = cached
        _duration.record(elapsed, cached[2])
    else:
        endpoint = getattr(host, "endpoint", None)
        _duration.record(elapsed, _key(endpoint, metrics.error_type(error)))


def _key(endpoint: Any, error_type: str | None) -> tuple[Any, ...]:
    return (
        "cassandra",
        None,  # db.operation.name: not known without parsing the CQL
        getattr(endpoint, "address", None),
        getattr(endpoint, "port", None),
        error_type,
    )
