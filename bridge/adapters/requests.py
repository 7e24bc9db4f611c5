"""`requests`, awaitable: `AsyncSession` runs each call in a thread of its own pool.

`requests` will never be async, and most services still call something through
it. This adapter keeps its API (and its exceptions) and adds what a blocking
library lacks when it is driven from an event loop:

* a bound: a `Limiter` caps calls in flight; the session's threads and its
  urllib3 connection pool are sized to it, so no thread waits for a pooled
  connection and no connection is opened that a thread cannot use;
* a default timeout, because a request without one can hold a thread forever;
* deadlines that reach `requests`: under `anyio.fail_after(t)` (or trio's, or
  `asyncify(timeout=...)`) each call gets `min(its own timeout, time left)`,
  so a call given up on ends by requests' own timeout, in its thread;
* cancellation that frees the thread: the in-flight connection's socket is shut
  down from the loop, so the worker returns at once instead of waiting for the
  server, and that connection is never reused (unless the cancellation is the
  deadline's, which the socket's own timeout ends just as soon);
* streamed bodies as async iterators, read in threads one chunk ahead.

How the socket is found: the session mounts an `HTTPAdapter` whose urllib3
pools and connections are subclasses that report, to a per-request `_Flight`
held in a contextvar (contextvars follow each job into its thread), which
connection the request took from the pool and when it connected. The flight
forgets the connection when it goes back to the pool, so a late cancellation
can never cut a connection another request is using.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypedDict
from urllib.parse import urlsplit

import anyio
import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.poolmanager import PoolManager

from bridge import ClosedError, Limiter, PoolStatistics, current_deadline
from bridge.adapters import _requests_metrics
from bridge.lowlevel import Job, Waker, WorkerPool, current_waker, run_job, yield_to_deadline

# anyio loads a backend's module on its first use; here that first use would be
# on the loop (a ~70 ms import, which the watchdog rightly reports), so load the
# asyncio one now, at import time.
with contextlib.suppress(ImportError):
    import anyio._backends._asyncio

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "AsyncResponse",
    "AsyncSession",
    "RequestOptions",
]

DEFAULT_CONCURRENCY: Final = 100
"""Requests in flight per session when no `limiter=` is given (each holds a thread)."""

DEFAULT_TIMEOUT: Final = (10.0, 60.0)
"""(connect, read) seconds; `requests` has no default, so a silent server would hold a thread."""

CHUNK_SIZE: Final = 64 * 1024
"""`aiter_content`/`aiter_lines` default; requests' default (1 byte) costs a thread hop a byte."""

TimeoutType = float | tuple[float | None, float | None] | None


def _check_timeout(timeout: object) -> None:
    """requests would only fail at the first call (or wait forever): refuse a bad timeout now."""
    parts = timeout if isinstance(timeout, tuple) else (timeout,)
    if len(parts) in (1, 2) and all(
        part is None
        or (not isinstance(part, bool) and isinstance(part, int | float) and 0 < part < math.inf)
        for part in parts
    ):
        return
    raise ValueError(
        f"AsyncSession(timeout=...) must be seconds > 0, a (connect, read) pair of them, or "
        f"None for no timeout at all; got {timeout!r}"
    )

MIN_TIMEOUT: Final = 0.001
"""urllib3 refuses a timeout of 0: a deadline already passed becomes this."""


class _NotGiven:
    def __repr__(self) -> str:
        return "<default>"


_NOT_GIVEN: Final = _NotGiven()

# Session attributes that `AsyncSession(**session_options)` may set. `adapters`
# is ours (the pool must match the limiter) and `stream` is per call, through
# `AsyncSession.stream`.
_SESSION_OPTIONS: Final = frozenset(
    {
        "auth",
        "cert",
        "cookies",
        "headers",
        "hooks",
        "max_redirects",
        "params",
        "proxies",
        "trust_env",
        "verify",
    }
)


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of `requests.Session.request`, except `stream`."""

    params: Any
    data: Any
    headers: Mapping[str, str | bytes | None] | None
    cookies: Any
    files: Any
    auth: Any
    timeout: TimeoutType
    allow_redirects: bool
    proxies: Mapping[str, str] | None
    hooks: Any
    verify: bool | str | None
    cert: str | tuple[str, str] | None
    json: Any


# -- finding the socket of a request in flight -------------------------------

_current_flight: contextvars.ContextVar[_Flight | None] = contextvars.ContextVar(
    "bridge_requests_flight", default=None
)

_PENDING, _RUNNING, _DONE = range(3)


def _shutdown(sock: object) -> None:
    """Cut a socket both ways, waking any thread blocked on it; never raises."""
    # TLS-in-TLS wraps the socket in an SSLTransport; the real one is inside.
    while sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)
    if sock is None:
        return
    try:
        # The base method, not SSLSocket.shutdown, which would drop the TLS
        # object under the feet of the thread still reading through it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing to wake


class _Flight:
    """One request's hold on its connection, so that the loop can cut it from outside.

    It also owns the request's per-host token: released by whoever ends the
    request (the thread, or the task if the thread never started it, or the
    stream when its body is closed), exactly once.
    """

    __slots__ = ("_conn", "_host", "_kept", "_lock", "_state", "aborted", "ends_at")

    def __init__(self, host: Limiter | None) -> None:
        self._lock = threading.Lock()
        self._host = host
        self._conn: _TrackingConnection | None = None
        self._state = _PENDING
        self._kept: requests.Response | None = None  # a streamed response not yet handed over
        self.aborted = False
        self.ends_at = math.inf  # monotonic: the caller's deadline, when it bounds the timeouts

    # thread side

    def begin(self) -> bool:
        """The worker is about to send; False if the caller gave up first."""
        with self._lock:
            if self.aborted:
                return False
            self._state = _RUNNING
            return True

    def attach(self, conn: _TrackingConnection) -> None:
        with self._lock:
            self._conn = conn
            conn.bridge_flight = self
            if self.aborted and not self._times_out():
                _shutdown(conn.sock)

    def connected(self, conn: _TrackingConnection) -> None:
        # Cancelled while the TCP connect or TLS handshake ran: cut it now.
        with self._lock:
            if self.aborted and self._conn is conn and not self._times_out():
                _shutdown(conn.sock)

    def _times_out(self) -> bool:
        """The caller's deadline has passed and bounds this request's timeouts: requests'
        own timeout ends the thread as soon as a cut would, and says why (a `Timeout`)."""
        return time.monotonic() >= self.ends_at - MIN_TIMEOUT

    def detach(self, conn: _TrackingConnection) -> bool:
        """The connection goes back to the pool; False if it was cut and must not be reused."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
            conn.bridge_flight = None
            return not self.aborted

    def finish(self, streamed: requests.Response | None) -> None:
        with self._lock:
            self._state = _DONE
            orphan = self.aborted
            if streamed is not None and not orphan:
                self._kept = streamed  # its body still holds the connection (and the host token)
                return
        if streamed is not None:
            streamed.close()  # succeeded, but nobody is waiting for it any more
        self.release_host()

    # loop side

    def take(self) -> None:
        """The task got the streamed response: from now on its stream owns it."""
        with self._lock:
            self._kept = None

    def abort(self) -> None:
        """Cancelled: cut the connection in use (the thread returns at once), drop the rest."""
        with self._lock:
            self.aborted = True
            state = self._state
            if self._conn is not None and not self._times_out():
                _shutdown(self._conn.sock)
            kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()  # the thread finished after the task gave up; the socket is already cut
        if state == _PENDING or kept is not None:
            self.release_host()

    def release_host(self) -> None:
        with self._lock:
            host, self._host = self._host, None
        if host is not None:
            host.release()


class _TrackingConnection(HTTPConnection):
    """Mixed into urllib3's connection classes: tells the flight when it has connected."""

    bridge_flight: _Flight | None = None

    def connect(self) -> None:
        super().connect()
        flight = _current_flight.get()
        if flight is not None:
            flight.connected(self)


class _TrackingPool(HTTPConnectionPool):
    """Mixed into urllib3's pool classes: hands each connection to the current flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ConnectionCls = _tracking(self.ConnectionCls, _TrackingConnection)

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        flight = _current_flight.get()
        if flight is not None and isinstance(conn, _TrackingConnection):
            flight.attach(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        flight = getattr(conn, "bridge_flight", None)
        if flight is not None and not flight.detach(conn):
            conn.close()  # its socket was shut down on cancellation
        super()._put_conn(conn)


_subclasses: dict[tuple[type, type], type] = {}
_subclasses_lock = threading.Lock()


def _tracking(cls: Any, mixin: type) -> Any:
    """`cls` with `mixin` in front; one class per pair, so pools of a scheme share it."""
    if issubclass(cls, mixin):
        return cls
    with _subclasses_lock:
        sub = _subclasses.get((cls, mixin))
        if sub is None:
            sub = _subclasses[cls, mixin] = type(f"Tracking{cls.__name__}", (mixin, cls), {})
        return sub


def _track(manager: PoolManager) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _tracking(cls, _TrackingPool)
        for scheme, cls in manager.pool_classes_by_scheme.items()
    }


class _TrackingAdapter(HTTPAdapter):
    """`HTTPAdapter` whose pools (direct and through proxies) report connections to flights."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        _track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _track(manager)
        return manager


def _fly(
    flight: _Flight,
    send: Callable[..., requests.Response],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stream: bool,
) -> requests.Response | None:
    """In the worker thread: send the request with `flight` visible to the adapter."""
    if not flight.begin():
        return None  # the caller was cancelled before we started: never send it
    left = current_deadline()
    if left is not None:
        kwargs = {**kwargs, "timeout": _within(kwargs.get("timeout"), left, flight)}
    token = _current_flight.set(flight)
    try:
        response = send(*args, **kwargs)
    except BaseException:
        flight.finish(None)
        raise
    finally:
        _current_flight.reset(token)
    flight.finish(response if stream else None)
    return response


def _within(timeout: Any, left: float, flight: _Flight) -> Any:
    """`timeout` (a number, `(connect, read)` or None) cut to the `left` seconds of the deadline.

    When the deadline is the shorter bound, the flight remembers it: a
    cancellation at the deadline then lets requests' timeout end the call.
    """
    left = max(left, MIN_TIMEOUT)
    if timeout is None:
        connect = read = None
    elif isinstance(timeout, int | float):
        connect = read = timeout
    elif isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
    else:
        return timeout  # a urllib3 Timeout object: the caller's own, left alone
    if read is None or left < read:
        flight.ends_at = time.monotonic() + left
    return (
        left if connect is None else min(connect, left),
        left if read is None else min(read, left),
    )


# -- the session -------------------------------------------------------------


class AsyncSession:
    """The `requests.Session` API, awaitable; each call runs in a thread of the session's own pool.

    `limiter` caps requests in flight (default: `DEFAULT_CONCURRENCY`, 100); the
    session's threads and its connection pool are sized to it. `per_host` caps
    requests in flight to one scheme://host:port. `timeout` is the default for
    every call, `(connect, read)` seconds; pass `timeout=None` to allow calls
    that may never end. Other keywords set attributes of the underlying
    `requests.Session` (`headers`, `auth`, `verify`, `proxies`, ...).

        async with AsyncSession(limiter=bridge.Limiter(20), headers={"User-Agent": "me"}) as s:
            response = await s.get("https://example.org", params={"q": "x"})
            response.raise_for_status()

    Calls return real `requests.Response` objects and raise `requests`' own
    exceptions. Cancelling a call shuts its connection down so the thread is
    freed at once.
    """

    def __init__(
        self,
        *,
        limiter: Limiter | None = None,
        per_host: int | None = None,
        timeout: TimeoutType | _NotGiven = _NOT_GIVEN,
        max_retries: Any = 0,
        **session_options: Any,
    ) -> None:
        if limiter is not None and not isinstance(limiter, Limiter):
            raise TypeError(f"AsyncSession(limiter=...) needs a bridge.Limiter, got {limiter!r}")
        if per_host is not None and (
            isinstance(per_host, bool) or not isinstance(per_host, int) or per_host < 1
        ):
            raise ValueError(
                f"AsyncSession(per_host=...) must be a positive int (requests in flight to "
                f"one host), or None for no cap per host; got {per_host!r}"
            )
        unknown = sorted(set(session_options) - _SESSION_OPTIONS)
        if unknown:
            raise TypeError(
                f"AsyncSession() got unknown option(s) {', '.join(unknown)}. Session options "
                f"are: {', '.join(sorted(_SESSION_OPTIONS))}; per-request arguments (json=, "
                "data=, stream=...) go to each call, e.g. `await session.get(url, json=...)`."
            )
        self._limiter = limiter if limiter is not None else Limiter(DEFAULT_CONCURRENCY)
        tokens = self._limiter.max_tokens  # an adaptive limiter may grow to this
        if not isinstance(timeout, _NotGiven):
            _check_timeout(timeout)
        self.timeout: TimeoutType = DEFAULT_TIMEOUT if isinstance(timeout, _NotGiven) else timeout
        self.per_host = per_host
        self._hosts: dict[str, Limiter] = {}
        self._closed = False
        # Its own threads: the default pool's bound (for short calls) must not
        # throttle a limiter that allows more requests than that.
        self._pool = WorkerPool(max_workers=tokens, core=tokens, name="bridge-requests")

        session = requests.Session()
        adapter = _TrackingAdapter(
            pool_connections=DEFAULT_POOLSIZE,  # hosts kept; each keeps up to pool_maxsize
            pool_maxsize=min(tokens, per_host or tokens),
            # Never block a thread on the pool: an open stream holds its
            # connection without a thread, so more connections than threads
            # may be in use; the extra ones are closed when they come back.
            pool_block=False,
            max_retries=max_retries,
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        for name, value in session_options.items():
            if name == "headers":
                session.headers.update(value)  # keep requests' User-Agent and friends
            elif name == "cookies":
                session.cookies.update(value)
            else:
                setattr(session, name, value)
        self.session: requests.Session = session
        _requests_metrics.track(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncSession {state} limiter={self._limiter!r}>"

    @property
    def limiter(self) -> Limiter:
        return self._limiter

    @property
    def closed(self) -> bool:
        return self._closed

    def thread_statistics(self) -> PoolStatistics:
        """The session's worker threads: how many, how many idle."""
        return self._pool.statistics()

    # -- calls

    async def request(
        self, method: str, url: str, **kwargs: Unpack[RequestOptions]
    ) -> requests.Response:
        """`Session.request` in a thread, body included, so the response is complete."""
        if "stream" in kwargs:
            raise TypeError(
                "AsyncSession calls read the whole body in the thread, so `stream=` would "
                "leave blocking reads for the event loop. Use "
                "`async with session.stream(method, url) as response:` and "
                "`async for chunk in response.aiter_content():` instead."
            )
        response, _ = await self._send(
            self.session.request, (method, url), dict(kwargs), url, False, "AsyncSession.request()"
        )
        return response

    async def get(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("GET", url, **kwargs)

    async def options(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def head(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)  # as requests does
        return await self.request("HEAD", url, **kwargs)

    async def post(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Unpack[RequestOptions]) -> requests.Response:
        return await self.request("DELETE", url, **kwargs)

    async def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """`Session.send` for a prepared request (`session.session.prepare_request(...)`)."""
        if kwargs.get("stream"):
            raise TypeError("use `async with session.stream(...)` for streamed bodies")
        url = request.url or ""
        response, _ = await self._send(
            self.session.send, (request,), kwargs, url, False, "AsyncSession.send()"
        )
        return response

    def stream(self, method: str, url: str, **kwargs: Unpack[RequestOptions]) -> _StreamContext:
        """`async with session.stream("GET", url) as response:` reads the body as you iterate.

        Leaving the block closes the response; an unread rest of the body is
        not drained: its connection is shut down and not reused.
        """
        return _StreamContext(self, method, url, dict(kwargs))

    async def _send(
        self,
        send: Callable[..., requests.Response],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        url: str | bytes,
        stream: bool,
        api: str,
    ) -> tuple[requests.Response, _Flight]:
        if self._closed:
            raise ClosedError(
                f"{api} on a closed AsyncSession: it was closed by `await session.close()` or "
                "by leaving its `async with` block. Create a new AsyncSession for more requests."
            )
        kwargs.setdefault("timeout", self.timeout)
        kwargs["stream"] = stream
        host = self._host_limiter(url)
        if host is not None:
            await host.acquire()  # held until the request (or its streamed body) ends
        flight = _Flight(host)
        send = _requests_metrics.timed(send)  # itself unless metrics are on
        try:
            response = await run_job(
                _fly, flight, send, args, kwargs, stream, executor=self._pool, limiter=self._limiter
            )
        except anyio.get_cancelled_exc_class():
            flight.abort()
            raise
        except requests.exceptions.Timeout:
            if flight.ends_at < math.inf:
                # requests' timeout was cut to the caller's deadline and can end the thread
                # just before a late loop runs the deadline's own cancellation: wait for
                # it, so the caller sees its deadline's TimeoutError.
                await yield_to_deadline()
            raise
        assert response is not None  # None only when cancelled first: then nobody gets here
        return response, flight

    def _host_limiter(self, url: str | bytes) -> Limiter | None:
        if self.per_host is None:
            return None
        if isinstance(url, bytes):
            url = url.decode("utf-8", "replace")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None  # requests will reject the URL with its own error
        scheme = parts.scheme.lower()
        key = f"{scheme}://{parts.hostname}:{port or {'https': 443}.get(scheme, 80)}"
        limiter = self._hosts.get(key)
        if limiter is None:
            limiter = self._hosts[key] = Limiter(self.per_host, name=key)
        return limiter

    # -- lifetime

    async def close(self) -> None:
        """Close the pooled connections. Idempotent; calls made afterwards raise ClosedError."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):  # finish closing even when leaving on cancellation
            await run_job(self.session.close)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# -- streamed responses ------------------------------------------------------


class _StreamContext:
    def __init__(
        self, session: AsyncSession, method: str, url: str, kwargs: dict[str, Any]
    ) -> None:
        if "stream" in kwargs:
            raise TypeError("session.stream() always streams; drop the `stream=` argument")
        self._session = session
        self._method = method
        self._url = url
        self._kwargs = kwargs
        self._response: AsyncResponse | None = None

    async def __aenter__(self) -> AsyncResponse:
        session = self._session
        response, flight = await session._send(
            session.session.request,
            (self._method, self._url),
            self._kwargs,
            self._url,
            True,
            "AsyncSession.stream()",
        )
        flight.take()
        self._response = AsyncResponse(response, flight, session)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


_END: Final = object()

# Reading these on a streamed response would read the body on the event loop.
_BODY_ATTRIBUTES: Final = frozenset(
    {"content", "text", "json", "apparent_encoding", "iter_content", "iter_lines"}
)


class AsyncResponse:
    """A streamed `requests.Response`: its body as async iterators, read in threads.

    Everything else is the real response's (`status_code`, `headers`, `url`,
    `raise_for_status()`, ...); it is also at `.response`. At most one chunk
    is read ahead of the consumer, so memory stays bounded however large the
    body.
    """

    def __init__(self, response: requests.Response, flight: _Flight, session: AsyncSession) -> None:
        self.response = response
        self._flight = flight
        self._session = session
        self._io = threading.Lock()  # one thread at a time touches the body
        self._started = False
        self._consumed = False
        self._closed = False
        self._pending: _Read | None = None

    def __repr__(self) -> str:
        return f"<AsyncResponse [{self.response.status_code}] {self.response.url}>"

    def __getattr__(self, name: str) -> Any:
        if name in _BODY_ATTRIBUTES and not self._consumed:
            raise RuntimeError(
                f"response.{name} would read the streamed body on the event loop and block it. "
                "Use `async for chunk in response.aiter_content()` (or `aiter_lines()`), "
                f"or `await response.aread()` first; `.{name}` works after that."
            )
        return getattr(self.response, name)

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> Any:
        return self.response.headers

    @property
    def url(self) -> str:
        return self.response.url

    @property
    def ok(self) -> bool:
        return self.response.ok

    def raise_for_status(self) -> None:
        self.response.raise_for_status()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aread(self) -> bytes:
        """Read the rest of the body in a thread; `.content`, `.text`, `.json()` work afterwards."""
        self._begin("aread()")
        content: bytes = await self._in_thread(lambda: self.response.content, "aread()")
        self._consumed = True
        return content

    async def aiter_content(
        self, chunk_size: int | None = CHUNK_SIZE, decode_unicode: bool = False
    ) -> AsyncIterator[Any]:
        """`iter_content`, each chunk read in a thread while you use the one before."""
        self._begin("aiter_content()")
        chunks = self.response.iter_content(chunk_size, decode_unicode)
        waker = current_waker("AsyncResponse.aiter_content()")
        read = self._read_ahead(chunks, waker)
        while True:
            chunk = await read.value()
            if chunk is _END:
                self._consumed = True
                return
            read = self._read_ahead(chunks, waker)
            yield chunk

    async def aiter_lines(
        self,
        chunk_size: int | None = CHUNK_SIZE,
        decode_unicode: bool = False,
        delimiter: str | bytes | None = None,
    ) -> AsyncIterator[Any]:
        """`iter_lines`, split on the loop from chunks read in threads (same splitting rules)."""
        pending: Any = None
        async for chunk in self.aiter_content(chunk_size, decode_unicode):
            if pending is not None:
                chunk = pending + chunk
            lines = chunk.split(delimiter) if delimiter else chunk.splitlines()
            if lines and lines[-1] and chunk and lines[-1][-1] == chunk[-1]:
                pending = lines.pop()  # may continue in the next chunk
            else:
                pending = None
            for line in lines:
                yield line
        if pending is not None:
            yield pending

    async def aclose(self) -> None:
        """Close the response; an unread body is cut off, not drained. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done:
            pending.cancel()  # the read-ahead nobody will consume
        if not self._consumed:
            self._flight.abort()  # cut the connection: the thread still reading returns at once
        with anyio.CancelScope(shield=True):
            await run_job(self._close)
        self._flight.release_host()

    def _close(self) -> None:
        with self._io:  # after a read that the shutdown has just ended
            self.response.close()

    def _begin(self, api: str) -> None:
        if self._closed:
            raise ClosedError(
                f"AsyncResponse.{api} after the response was closed (its `async with "
                "session.stream(...)` block has ended). Read the body inside the block."
            )
        if self._started:
            raise requests.exceptions.StreamConsumedError(
                f"AsyncResponse.{api}: the body of a streamed response can be read once, and "
                "it was already read (or partly read) by an earlier aiter_content(), "
                "aiter_lines() or aread()."
            )
        self._started = True

    async def _in_thread(self, fn: Callable[[], Any], api: str) -> Any:
        def locked() -> Any:
            with self._io:
                return fn()

        try:
            session = self._session
            return await run_job(locked, executor=session._pool, limiter=session._limiter)
        except anyio.get_cancelled_exc_class():
            self._flight.abort()
            raise

    def _read_ahead(self, chunks: Any, waker: Waker) -> _Read:
        def next_chunk() -> Any:
            with self._io:
                return next(chunks, _END)

        read = _Read(next_chunk, waker, self._session, self._flight)
        self._pending = read
        return read


class _Read(Job):
    """One chunk being read in a thread, started now and awaited later: the read-ahead.

    `run_job` parks the caller at once; a read-ahead must run while the
    caller is busy with the previous chunk. So this job starts when it is
    made, comes back through the waker like any other, and is parked on only
    if the consumer gets to it before the chunk does.
    """

    __slots__ = ("done", "flight")

    def __init__(
        self, fn: Callable[[], Any], waker: Waker, session: AsyncSession, flight: _Flight
    ) -> None:
        super().__init__(fn, (), {}, waker, session._pool, session._limiter)
        self.flight = flight
        self.done = False  # set on the loop only, so checking it there is race-free
        Job.start(self)

    def start(self) -> None:
        pass  # `waker.wait` calls this when the consumer parks; the job began at creation

    def complete(self) -> None:
        self.done = True
        super().complete()

    def cancel(self) -> None:
        super().cancel()  # not started yet: never runs
        self.flight.abort()  # running: its socket is cut and the thread returns

    async def value(self) -> Any:
        if not self.done:
            return await self.waker.wait(self)
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.result
