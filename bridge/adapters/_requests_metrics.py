"""HTTP request duration per host, status class and error type, while metrics are on.

Kept apart from the adapter so that its hooks there stay one line each. The
duration is measured in the worker thread around `requests`' own send: the
time on the wire and in `requests`, not the wait for a token (that is the
limiter's `bridge.limiter.wait.duration`). Only the public `bridge.metrics`
API is used, as a user's adapter would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from bridge import metrics

Send = Callable[..., requests.Response]


def track(session: object) -> None:
    """Count the session's requests in flight and its threads in the gauges (weakly)."""
    metrics.track_http_session(session)


def timed(send: Send) -> Send:
    """`send` itself while metrics are off; else `send` recording each call's duration."""
    if not metrics.recording():
        return send

    def timed_send(*args: Any, **kwargs: Any) -> requests.Response:
        start = time.perf_counter()
        try:
            response = send(*args, **kwargs)
        except BaseException as error:
            record(args, time.perf_counter() - start, None, metrics.error_type(error))
            raise
        record(args, time.perf_counter() - start, response.status_code, None)
        return response

    return timed_send


def record(args: tuple[Any, ...], seconds: float, status: int | None, error: str | None) -> None:
    """One request sent with `args` (`Session.request`'s or `Session.send`'s) took `seconds`."""
    if len(args) == 2:  # Session.request(method, url)
        method, url = args
    else:  # Session.send(prepared)
        method, url = args[0].method, args[0].url
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or {"https": 443}.get(parts.scheme.lower(), 80)
    except ValueError:
        host, port = None, None
    status_class = metrics.status_class(status) if status is not None else None
    metrics.http_client_duration.record(
        seconds, (str(method).upper(), host, port, status_class, error)
    )
