"""`strict()`: known blocking calls made on an event loop's thread raise `BlockingCallError`.

The watchdog finds a block after `threshold` seconds; strict mode finds it on
the first call, however short, and names the fix. While strict mode is on,
these calls raise when made on a thread that is running an asyncio/uvloop
loop or a trio task (worker threads run no loop, so they are never affected):

- `requests.Session.send`, `urllib3` pool `urlopen`
- `time.sleep` (with a positive delay)
- `socket.socket` connect, connect_ex, accept, recv*, send* on a *blocking*
  socket (timeout None or positive; the loops' own sockets are non-blocking),
  and `socket.getaddrinfo` / `gethostbyname` for names that are not IP literals
- `cassandra.cluster`: `ResponseFuture.result` (not yet done),
  `Session.execute`, `Session.prepare`, `Cluster.connect`
- `sqlite3`: execute, executemany, executescript, commit on connections made
  by `sqlite3.connect` (`sqlite3.Connection` is a C type that cannot be
  patched, so `sqlite3.connect` passes `factory=` a checking subclass, or a
  checking subclass of the caller's own factory)
- `subprocess.run`, `call`, `check_call`, `check_output`, and
  `Popen.wait` / `Popen.communicate` without timeout on a live process
- waits that would block forever: `queue.Queue.get()` on an empty queue,
  `threading.Event.wait()` on an unset event,
  `concurrent.futures.Future.result()` on a pending future, and an explicit
  `lock.acquire()` with no timeout on a `threading.Lock` held elsewhere.
  `with lock:` around a short critical section is not reported, and neither
  is `threading`'s own use of its locks, so the loops keep working. Only
  locks created while strict mode is on are checked (`threading.Lock` is a
  C type; it is swapped for a checking wrapper only while strict mode is on).

The patches are installed the first time strict mode is turned on and stay;
each checks one module-level flag first, so with strict mode off they cost a
Python call and nothing more. A call made inside another reported call (the
socket under `requests`) is not reported again.

Strict mode is process-wide. `BRIDGE_STRICT=1` turns it on for a whole
program (`BRIDGE_STRICT=warn` for warn-only, `BRIDGE_STRICT_ALLOW=a,b` for an
allow-list): `bridge.run()` and the pytest plugin call `enable_from_env()`.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import functools
import inspect
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from asyncio.events import _get_running_loop
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType, ModuleType, TracebackType
from typing import Any, TypeVar, cast

from bridge._callsite import CallSite, extract_stack, user_site
from bridge._exceptions import BlockingCallError
from bridge._import_hooks import when_imported

__all__ = [
    "Violation",
    "enable",
    "enable_from_env",
    "is_enabled",
    "reset_violations",
    "strict",
    "violations",
]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("bridge.strict")

ENV_VAR = "BRIDGE_STRICT"
ENV_ALLOW = "BRIDGE_STRICT_ALLOW"

# The one flag every patch reads first. Written only under _config_lock.
_active = False
_config_lock = threading.Lock()
_configs: list[_Config] = []
_installed = False
_tls = threading.local()
_real_lock_factory = threading.Lock

_TO_THREAD = "or move it to a worker thread with `await bridge.to_thread(...)`"
_FIX_HTTP = f"use bridge.adapters.requests.AsyncSession, {_TO_THREAD}"
_FIX_SLEEP = "use `await anyio.sleep(...)` (or asyncio.sleep / trio.sleep)"
_FIX_SOCKET = (
    "use the loop's own networking (anyio.connect_tcp, asyncio streams, trio.socket), " + _TO_THREAD
)
_FIX_DNS = "use `await anyio.getaddrinfo(...)` (or loop.getaddrinfo), " + _TO_THREAD
_FIX_CASSANDRA = (
    "use bridge.adapters.cassandra.AsyncSession, or `await bridge.wrap_future(response_future)`"
)
_FIX_SQLITE = (
    "run it on a bridge.DedicatedThread (sqlite3 objects must stay on the thread that made "
    "them): `await db_thread.run(conn.execute, ...)`"
)
_FIX_SUBPROCESS = "use `await anyio.run_process(...)` (or asyncio.create_subprocess_exec), " + (
    _TO_THREAD
)
_FIX_WAIT = "use a timeout, the non-blocking form, an async primitive (anyio.Event, anyio.Lock), "
_FIX_FUTURE = "use `await bridge.wrap_future(future)`"


@dataclass(frozen=True)
class _Config:
    allow: tuple[str, ...]
    warn_only: bool


@dataclass
class Violation:
    """A blocking call strict mode saw in warn-only mode: what, where, how often."""

    call: str
    site: CallSite
    count: int = 0
    stack: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"call": self.call, **self.site.to_json(), "count": self.count, "stack": self.stack}


_violations: dict[tuple[str, CallSite], Violation] = {}
_violations_lock = threading.Lock()


def violations() -> list[Violation]:
    """Blocking calls seen in warn-only (and allowed-but-counted) mode, most frequent first."""
    with _violations_lock:
        found = [Violation(v.call, v.site, v.count, list(v.stack)) for v in _violations.values()]
    return sorted(found, key=lambda v: v.count, reverse=True)


def reset_violations() -> None:
    """Forget the counted violations."""
    with _violations_lock:
        _violations.clear()


def is_enabled() -> bool:
    """True while strict mode is on."""
    return _active


class strict:
    """Make known blocking calls on an event loop's thread raise `BlockingCallError`.

    Use as `with strict(): ...`, as a decorator on a sync or async function,
    or `enable()` for the rest of the program. `allow` names calls
    (`"time.sleep"`, or a prefix such as `"socket"`) or modules whose frames
    on the stack make a call acceptable (`"myapp.legacy"`). `warn_only=True`
    logs each new call site once on the `bridge.strict` logger, with the
    stack, counts every call (`violations()`) and lets the call block.
    """

    def __init__(self, *, allow: Iterable[str] = (), warn_only: bool = False) -> None:
        if isinstance(allow, str):
            allow = (allow,)
        self._config = _Config(tuple(allow), bool(warn_only))

    @property
    def allow(self) -> tuple[str, ...]:
        return self._config.allow

    @property
    def warn_only(self) -> bool:
        return self._config.warn_only

    def __enter__(self) -> strict:
        _push(self._config)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _pop(self._config)

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(F, wrapper)


def enable(*, allow: Iterable[str] = (), warn_only: bool = False) -> strict:
    """Turn strict mode on for the rest of the program (or until the returned object exits)."""
    return strict(allow=allow, warn_only=warn_only).__enter__()


_env_enabled: strict | None = None


def enable_from_env() -> bool:
    """Turn strict mode on if `BRIDGE_STRICT` asks for it; True if it is on because of it.

    `BRIDGE_STRICT=1` (or true/yes/on/raise) raises, `BRIDGE_STRICT=warn` logs
    and counts; `BRIDGE_STRICT_ALLOW` is a comma-separated allow-list.
    Calling it again does nothing more.
    """
    global _env_enabled
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value or value in ("0", "false", "no", "off"):
        return False
    if _env_enabled is not None:
        return True
    if value not in ("1", "true", "yes", "on", "raise", "warn"):
        raise ValueError(f"{ENV_VAR}={value!r}: expected 1 (raise), warn, or 0 (off)")
    allow = [a.strip() for a in os.environ.get(ENV_ALLOW, "").split(",") if a.strip()]
    _env_enabled = enable(allow=allow, warn_only=value == "warn")
    return True


def _push(config: _Config) -> None:
    global _active
    _install()
    with _config_lock:
        _configs.append(config)
        _active = True
        threading.Lock = _StrictLock  # type: ignore[assignment]


def _pop(config: _Config) -> None:
    global _active
    with _config_lock:
        for i in range(len(_configs) - 1, -1, -1):
            if _configs[i] is config:
                del _configs[i]
                break
        if not _configs:
            _active = False
            threading.Lock = _real_lock_factory


# -- deciding --------------------------------------------------------------------------------


def _on_loop_thread() -> bool:
    """Is an asyncio/uvloop loop running on this thread, or a trio task?

    For trio the question is "is a task running", not "is a run active":
    in guest mode the host loop's own wait (a `queue.Queue.get` in anyio's
    test runner, say) happens on the same thread between trio's ticks.
    """
    if _get_running_loop() is not None:
        return True
    trio_run = sys.modules.get("trio._core._run")
    return trio_run is not None and hasattr(trio_run.GLOBAL_RUN_CONTEXT, "task")


def _running_backend() -> str:
    loop = _get_running_loop()
    if loop is None:
        return "trio"
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def _nested() -> bool:
    return getattr(_tls, "depth", 0) > 0


def _matches(name: str, entry: str) -> bool:
    return name == entry or name.startswith(entry + ".")


def _allowed(config: _Config, name: str, frame: FrameType | None) -> bool:
    if not config.allow:
        return False
    if any(_matches(name, entry) for entry in config.allow):
        return True
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if isinstance(module, str) and any(_matches(module, entry) for entry in config.allow):
            return True
        frame = frame.f_back
    return False


def _violation(name: str, fix: str, depth: int) -> None:
    """A blocking call on a loop thread: raise, or (warn-only/allowed) record and return."""
    with _config_lock:
        config = _configs[-1] if _configs else None
    if config is None:
        return
    frame: FrameType | None = sys._getframe(depth + 1)
    if _allowed(config, name, frame):
        return
    stack = extract_stack(frame)
    del frame
    site = user_site(stack)
    where = f"called at {site} on the thread running the {_running_backend()} event loop"
    if config.warn_only:
        key = (name, site)
        with _violations_lock:
            entry = _violations.get(key)
            first = entry is None
            if entry is None:
                entry = _violations[key] = Violation(name, site, stack=stack.format())
            entry.count += 1
        if first:
            logger.warning(
                "%s() blocks the event loop: %s. Fix: %s.\nStack (most recent call last):\n%s",
                name,
                where,
                fix,
                "".join(stack.format()).rstrip("\n"),
            )
        return
    raise BlockingCallError(
        f"{name}() blocks the event loop: {where}. Fix: {fix}. "
        f"If this call is acceptable here, allow it: strict(allow=[{name!r}])."
    )


def _guard(
    name: str,
    fix: str,
    original: Callable[..., Any],
    would_block: Callable[..., bool] | None = None,
) -> Callable[..., Any]:
    """Wrap `original` so that, with strict mode on, a call on a loop thread is reported."""

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        if (
            _active
            and _on_loop_thread()
            and not _nested()
            and (would_block is None or would_block(*args, **kwargs))
        ):
            _violation(name, fix, 1)
            _tls.depth = getattr(_tls, "depth", 0) + 1
            try:
                return original(*args, **kwargs)
            finally:
                _tls.depth -= 1
        return original(*args, **kwargs)

    patched.__bridge_strict__ = True  # type: ignore[attr-defined]
    return patched


def _patch(owner: Any, attr: str, name: str, fix: str, would_block: Any = None) -> None:
    original = getattr(owner, attr, None)
    if original is None or getattr(original, "__bridge_strict__", False):
        return
    setattr(owner, attr, _guard(name, fix, original, would_block))


# -- conditions: does this call really wait? --------------------------------------------------


def _positive_sleep(secs: float = 0, *args: Any) -> bool:
    return bool(secs > 0)


def _socket_blocks(sock: socket.socket, *args: Any, **kwargs: Any) -> bool:
    return sock.gettimeout() != 0.0


def _is_ip_literal(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # None (passive/wildcard) or a number: no lookup
    host = host.split("%", 1)[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


def _resolves(host: object = None, *args: Any, **kwargs: Any) -> bool:
    return not _is_ip_literal(host)


def _queue_get_blocks(
    q: queue.Queue[Any], block: bool = True, timeout: float | None = None
) -> bool:
    return bool(block) and timeout is None and q.empty()


def _caller_is_threading(depth: int) -> bool:
    """Is the frame `depth` levels above our caller in `threading` itself?

    threading's own waits (Thread.start waiting for the new thread to run,
    Condition re-acquiring its lock) are short, and the loops need them.
    """
    frame = sys._getframe(depth + 1)
    return frame.f_globals.get("__name__") == "threading"


def _event_wait_blocks(event: threading.Event, timeout: float | None = None) -> bool:
    # frames: _event_wait_blocks <- patched <- caller of Event.wait
    return timeout is None and not event.is_set() and not _caller_is_threading(2)


def _future_result_blocks(future: concurrent.futures.Future[Any], timeout: Any = None) -> bool:
    return timeout is None and not future.done()


def _popen_wait_blocks(proc: subprocess.Popen[Any], timeout: float | None = None) -> bool:
    return timeout is None and proc.poll() is None


def _popen_communicate_blocks(
    proc: subprocess.Popen[Any], input: Any = None, timeout: float | None = None
) -> bool:
    return timeout is None and proc.poll() is None


def _response_future_pending(future: Any, *args: Any, **kwargs: Any) -> bool:
    event = getattr(future, "_event", None)
    return not (isinstance(event, threading.Event) and event.is_set())


class _StrictLock:
    """`threading.Lock` while strict mode is on: reports `acquire()` that would wait forever."""

    __slots__ = ("__weakref__", "_at_fork_reinit", "_lock", "locked", "release")

    def __init__(self) -> None:
        lock = _thread.allocate_lock()
        self._lock = lock
        self.release = lock.release
        self.locked = lock.locked
        self._at_fork_reinit = lock._at_fork_reinit  # type: ignore[attr-defined]

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lock = self._lock
        if _active and blocking and timeout < 0:
            if lock.acquire(False):
                return True  # free: nothing waited
            if _on_loop_thread() and not _nested() and not _caller_is_threading(1):
                _violation(
                    "threading.Lock.acquire",
                    _FIX_WAIT + "or `await bridge.to_thread(lock.acquire)`",
                    1,
                )
            return lock.acquire()
        return lock.acquire(blocking, timeout)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        return f"<bridge strict {state} lock at {id(self):#x}>"


# -- installing ------------------------------------------------------------------------------


def _install() -> None:
    global _installed
    with _config_lock:
        if _installed:
            return
        _installed = True
    _patch(time, "sleep", "time.sleep", _FIX_SLEEP, _positive_sleep)
    for method in (
        "connect", "connect_ex", "accept", "recv", "recv_into", "recvfrom", "recvfrom_into",
        "recvmsg", "send", "sendall", "sendto", "sendmsg",
    ):  # fmt: skip
        _patch(socket.socket, method, f"socket.socket.{method}", _FIX_SOCKET, _socket_blocks)
    for function in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        _patch(socket, function, f"socket.{function}", _FIX_DNS, _resolves)
    _patch(
        queue.Queue, "get", "queue.Queue.get", _FIX_WAIT + "or `get_nowait()`", _queue_get_blocks
    )
    _patch(
        threading.Event,
        "wait",
        "threading.Event.wait",
        _FIX_WAIT + "or `await bridge.to_thread(event.wait)`",
        _event_wait_blocks,
    )
    _patch(
        concurrent.futures.Future,
        "result",
        "concurrent.futures.Future.result",
        _FIX_FUTURE,
        _future_result_blocks,
    )
    for function in ("run", "call", "check_call", "check_output"):
        _patch(subprocess, function, f"subprocess.{function}", _FIX_SUBPROCESS)
    _patch(subprocess.Popen, "wait", "subprocess.Popen.wait", _FIX_SUBPROCESS, _popen_wait_blocks)
    _patch(
        subprocess.Popen,
        "communicate",
        "subprocess.Popen.communicate",
        _FIX_SUBPROCESS,
        _popen_communicate_blocks,
    )
    when_imported("requests.sessions", _patch_requests)
    when_imported("urllib3.connectionpool", _patch_urllib3)
    when_imported("cassandra.cluster", _patch_cassandra)
    when_imported("sqlite3", _patch_sqlite3)


def _patch_requests(module: ModuleType) -> None:
    _patch(module.Session, "send", "requests.Session.send", _FIX_HTTP)


def _patch_urllib3(module: ModuleType) -> None:
    _patch(
        module.HTTPConnectionPool,
        "urlopen",
        "urllib3.HTTPConnectionPool.urlopen",
        _FIX_HTTP,
    )


def _patch_cassandra(module: ModuleType) -> None:
    _patch(
        module.ResponseFuture,
        "result",
        "cassandra.cluster.ResponseFuture.result",
        _FIX_CASSANDRA,
        _response_future_pending,
    )
    _patch(module.Session, "execute", "cassandra.cluster.Session.execute", _FIX_CASSANDRA)
    _patch(module.Session, "prepare", "cassandra.cluster.Session.prepare", _FIX_CASSANDRA)
    _patch(module.Cluster, "connect", "cassandra.cluster.Cluster.connect", _FIX_CASSANDRA)


_sqlite_factories: dict[type, type] = {}


def _patch_sqlite3(module: ModuleType) -> None:
    connection_type: type = module.Connection
    cursor_type: type = module.Cursor

    def checking(cls: type, methods: tuple[str, ...], prefix: str) -> type:
        namespace: dict[str, Any] = {"__slots__": (), "__module__": __name__}
        for method in methods:
            original = getattr(cls, method)
            namespace[method] = _guard(f"{prefix}.{method}", _FIX_SQLITE, original)
        return type(f"Strict{cls.__name__}", (cls,), namespace)

    strict_cursor = checking(
        cursor_type, ("execute", "executemany", "executescript"), "sqlite3.Cursor"
    )

    def factory_for(base: type) -> type:
        made = _sqlite_factories.get(base)
        if made is None:
            made = checking(
                base, ("execute", "executemany", "executescript", "commit"), "sqlite3.Connection"
            )
            original_cursor = base.cursor  # type: ignore[attr-defined]

            def cursor(self: Any, factory: Any = None) -> Any:
                return original_cursor(self, strict_cursor if factory is None else factory)

            made.cursor = cursor  # type: ignore[attr-defined]
            _sqlite_factories[base] = made
        return made

    original_connect = module.connect
    if getattr(original_connect, "__bridge_strict__", False):
        return

    @functools.wraps(original_connect)
    def connect(*args: Any, **kwargs: Any) -> Any:
        factory = kwargs.get("factory", connection_type)
        if isinstance(factory, type) and issubclass(factory, connection_type):
            kwargs["factory"] = factory_for(factory)
        return original_connect(*args, **kwargs)

    connect.__bridge_strict__ = True  # type: ignore[attr-defined]
    setattr(module, "connect", connect)  # noqa: B010
    dbapi2 = sys.modules.get("sqlite3.dbapi2")
    if dbapi2 is not None:
        setattr(dbapi2, "connect", connect)  # noqa: B010


# The module's controls, reachable from the one public name: bridge.strict.enable(), ...
strict.enable = staticmethod(enable)  # type: ignore[attr-defined]
strict.enable_from_env = staticmethod(enable_from_env)  # type: ignore[attr-defined]
strict.is_enabled = staticmethod(is_enabled)  # type: ignore[attr-defined]
strict.violations = staticmethod(violations)  # type: ignore[attr-defined]
strict.reset_violations = staticmethod(reset_violations)  # type: ignore[attr-defined]
