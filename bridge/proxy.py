"""`wrap`: a whole legacy object, usable from async code.

Method calls become awaitables that run off the loop, `async with` maps to
`__enter__`/`__exit__`, `async for` to iteration with each `next()` off the
loop, and plain attributes pass through.

The rule for what a call returns: data comes back as it is, and any other
object comes back wrapped the same way, on the same thread and behind the
same limiter, because it may hold the same resource. Data is None, bools,
numbers, strings, bytes, dates, UUIDs, enums, the builtin containers, and any
sequence or mapping that has no `close()`: that is how drivers' row types
(`sqlite3.Row`, psycopg2's `DictRow`, PyMySQL's dicts) look, and a row must
answer `row["a"]` and `dict(row)`, not hand back awaitables. So a cursor that a
wrapped sqlite3 connection returns works without the user knowing that
sqlite3 objects must stay on the thread that made them. `unwrap(proxy)` gives
the raw object back.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from bridge._job import Executor, Job
from bridge._pool import default_pool
from bridge._waker import current_waker
from bridge.iterate import AsyncIterator
from bridge.limiter import Limiter
from bridge.threads import DedicatedThread, _check_sync, _run_job

T = TypeVar("T")

_PLAIN = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    memoryview,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    tuple,
    list,
    dict,
    set,
    frozenset,
    BaseException,
    type,
    enum.Enum,
)

_data_types: dict[type, bool] = {}  # per type, the answer of _is_data


def _is_data(value: object) -> bool:
    """Plain data, or a row-like sequence or mapping that holds no resource (no `close()`)."""
    kind = type(value)
    known = _data_types.get(kind)
    if known is None:
        known = isinstance(value, _PLAIN) or (
            isinstance(value, (Sequence, Mapping)) and not hasattr(kind, "close")
        )
        if len(_data_types) < 1024:  # a cache, not a leak, however many classes pass by
            _data_types[kind] = known
    return known


class AsyncProxy(Generic[T]):
    """The object `wrap` returns: the wrapped object's API, awaitable."""

    __slots__ = ("__weakref__", "_bridge_executor", "_bridge_limiter", "_bridge_target")

    def __init__(self, target: T, executor: Executor, limiter: Limiter | None) -> None:
        object.__setattr__(self, "_bridge_target", target)
        object.__setattr__(self, "_bridge_executor", executor)
        object.__setattr__(self, "_bridge_limiter", limiter)

    def __repr__(self) -> str:
        return f"<AsyncProxy of {self._bridge_target!r}>"

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._bridge_target, name)
        if callable(value) and not isinstance(value, type):
            return self._bridge_method(value, name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._bridge_target, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._bridge_target, name)

    def __dir__(self) -> list[str]:
        return dir(self._bridge_target)

    def _bridge_method(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        _check_sync(method, f"wrap(...).{name}")
        api = f"{type(self._bridge_target).__name__}.{name}()"

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return self._bridge_adopt(await self._bridge_run(method, args, kwargs, api))

        return call

    async def _bridge_run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], api: str
    ) -> Any:
        return await _run_job(fn, args, kwargs, self._bridge_limiter, self._bridge_executor, api)

    def _bridge_adopt(self, value: Any) -> Any:
        """Apply the module's rule to a call's result."""
        if value is self._bridge_target:
            return self
        if isinstance(value, AsyncProxy) or _is_data(value):
            return value
        return AsyncProxy(value, self._bridge_executor, self._bridge_limiter)

    async def __aenter__(self) -> Any:
        target = self._bridge_target
        enter = type(target).__enter__
        return self._bridge_adopt(await self._bridge_run(enter, (target,), {}, "__enter__()"))

    async def __aexit__(self, *exc_info: Any) -> Any:
        target = self._bridge_target
        exit_ = type(target).__exit__
        # Cleanup: if this task is cancelled (a timeout), __exit__ still runs in the background.
        waker = current_waker("__aexit__()")
        executor, limiter = self._bridge_executor, self._bridge_limiter
        job = Job(exit_, (target, *exc_info), {}, waker, executor, limiter)
        job.cleanup = True
        return await waker.wait(job)

    def __aiter__(self) -> AsyncIterator[Any]:
        return AsyncIterator(
            self._bridge_target,
            executor=self._bridge_executor,
            limiter=self._bridge_limiter,
            convert=self._bridge_adopt,
        )


def wrap(obj: T, *, limiter: Limiter | None = None, thread: DedicatedThread | None = None) -> Any:
    """Wrap a blocking object so that async code can use it without blocking the loop.

    `thread=` pins every call (and every call on objects it returns) to one
    `DedicatedThread`, for thread-bound objects; `limiter=` caps concurrent calls.

    >>> import bridge, io
    >>> async def main():
    ...     f = bridge.wrap(io.StringIO("one\\ntwo\\n"))
    ...     return [line async for line in f]
    >>> bridge.run(main)
    ['one\\n', 'two\\n']
    """
    if isinstance(obj, AsyncProxy):
        return obj
    if obj is None:
        raise TypeError(
            "wrap(None): there is no object to wrap. Pass the blocking object itself "
            "(a connection, a client, a file); did a connect or factory call return None?"
        )
    if limiter is not None and not isinstance(limiter, Limiter):
        raise TypeError(f"wrap(limiter=...) needs a bridge.Limiter, got {limiter!r}")
    if thread is not None and not isinstance(thread, DedicatedThread):
        raise TypeError(f"wrap(thread=...) needs a bridge.DedicatedThread, got {thread!r}")
    executor: Executor = thread if thread is not None else default_pool()
    return AsyncProxy(obj, executor, limiter)


def unwrap(proxy: Any) -> Any:
    """The raw object behind a proxy (for code not yet migrated); other values as they are."""
    if isinstance(proxy, AsyncProxy):
        return proxy._bridge_target
    return proxy
