"""Cassandra request latency per coordinator host and error type, while metrics are on.

Kept apart from the adapter so that its hooks there stay one line each: the
request notes `time.perf_counter()` just before `execute_async` (only while
`bridge.metrics.recording()`), and its own driver callbacks call `record`.
Only the public `bridge.metrics` API is used, as a user's adapter would.
"""

from __future__ import annotations

import time
from typing import Any

from bridge import metrics


def record(future: Any, started: float, error: BaseException | None) -> None:
    """One request answered (or failed) `started` (a perf_counter) ago."""
    elapsed = time.perf_counter() - started
    # The host that answered; None when none did (NoHostAvailable, a timeout, a send error).
    endpoint = getattr(getattr(future, "coordinator_host", None), "endpoint", None)
    metrics.db_client_duration.record(
        elapsed,
        (
            "cassandra",
            None,  # db.operation.name: not known without parsing the CQL
            getattr(endpoint, "address", None),
            getattr(endpoint, "port", None),
            None if error is None else metrics.error_type(error),
        ),
    )
