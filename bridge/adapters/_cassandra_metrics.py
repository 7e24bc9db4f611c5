"""Cassandra request latency per coordinator host and error type, while metrics are on.

Kept apart from the adapter so that its hook there is two lines: time the
request from just before `execute_async`, and let the driver's own callbacks
(on its reactor thread, or the loop's) record when it answers. Only the
public `bridge.metrics` API is used, as a user's adapter would.
"""

from __future__ import annotations

import time
from typing import Any

from bridge import metrics


def observe(future: Any, started: float) -> None:
    """Record `future`'s duration (since `started`, a perf_counter) when the driver answers."""
    future.add_callbacks(
        _answered, _failed, callback_args=(future, started), errback_args=(future, started)
    )


def _answered(rows: Any, future: Any, started: float) -> None:
    _record(future, started, None)


def _failed(error: BaseException, future: Any, started: float) -> None:
    _record(future, started, metrics.error_type(error))


def _record(future: Any, started: float, error: str | None) -> None:
    elapsed = time.perf_counter() - started
    # The host that answered; None when none did (NoHostAvailable, a timeout).
    endpoint = getattr(future.coordinator_host, "endpoint", None)
    address = getattr(endpoint, "address", None)
    port = getattr(endpoint, "port", None)
    metrics.db_client_duration.record(elapsed, ("cassandra", address, port, error))
