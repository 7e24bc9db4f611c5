"""`iterate`: a sync iterator as an async one, each `next()` run off the loop.

Read-ahead is bounded (see `ReadAhead`): at most `prefetch` items wait, and
fetches run one at a time, in order, because a generator may not be resumed
from two threads at once.

When the consumer stops early (`break`, an exception, cancellation) the
underlying iterator is closed on a thread, after any fetch still running, so
a generator's `finally:` (closing a cursor, a file, a response) really runs.
A `break` out of `async for` only drops the iterator, so that case relies on
`__del__`: nothing but the consumer may hold the `AsyncIterator` (fetch jobs
hold the buffer and the source, never the `AsyncIterator` itself), so it goes
the moment the consumer lets go.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from bridge._exceptions import ClosedError
from bridge._job import Executor, Job
from bridge._pool import default_pool
from bridge._readahead import ReadAhead
from bridge._waker import Waker, current_waker
from bridge.limiter import Limiter

T = TypeVar("T")

_END = object()


class _Source:
    """The sync side: the iterable, the iterator made from it lazily, and how to close it."""

    __slots__ = ("iterable", "iterator")

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.iterable: Iterable[Any] | None = iterable
        self.iterator: Iterator[Any] | None = None

    def next_item(self) -> Any:
        if self.iterator is None:
            assert self.iterable is not None
            self.iterator = iter(self.iterable)  # iter() may block too (a DB cursor)
            self.iterable = None
        return next(self.iterator, _END)

    @property
    def started(self) -> bool:
        return self.iterator is not None

    def close(self) -> None:
        iterator = self.iterator or self.iterable
        self.iterator = self.iterable = None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class _FetchJob(Job):
    """A `next()` whose outcome goes to the buffer, whether or not a task waits for it."""

    __slots__ = ("buffer", "owner")
    buffer: ReadAhead[Any] | None
    owner: _Closer | None

    def complete(self) -> None:
        buffer, owner = self.buffer, self.owner
        assert buffer is not None and owner is not None
        self.buffer = self.owner = None
        error, self.error = self.error, None
        result, self.result = self.result, None
        if error is not None:
            buffer.fail(error)
        elif result is _END:
            buffer.end()
        else:
            buffer.put(result)
        if buffer.closed and not buffer.waiting:
            owner.close_in_background()  # the consumer left (or its aclose was cancelled)


class _Closer:
    """Closes the source once, on a thread; shared by the iterator and its fetch jobs."""

    __slots__ = ("done", "executor", "source", "waker")

    def __init__(self, source: _Source, executor: Executor) -> None:
        self.source = source
        self.executor = executor
        self.waker: Waker | None = None
        self.done = False

    def close_now(self) -> None:
        if not self.done:
            self.done = True
            self.source.close()

    def close_in_background(self) -> None:
        if self.done:
            return
        if self.waker is None or not self.source.started:
            self.close_now()  # never started: closing runs none of the iterator's code
            return
        job = _CloseJob(self.close_now, self.waker, self.executor)
        job.executor.submit(job)


class AsyncIterator(Generic[T]):
    """The async iterator `iterate` returns; also an async context manager that closes it."""

    _buffer: ReadAhead[Any] | None = None  # until __init__ has finished, __del__ has nothing to do

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        prefetch: int = 1,
        executor: Executor | None = None,
        limiter: Limiter | None = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> None:
        executor = executor or default_pool()
        source = _Source(iterable)
        closer = _Closer(source, executor)
        buffer: ReadAhead[Any] = ReadAhead(
            functools.partial(_fetch, closer=closer, limiter=limiter),
            prefetch=prefetch,
            what="iterate()",
        )
        self._closer = closer
        self._convert = convert
        self._buffer = buffer

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        assert self._buffer is not None
        value = await self._buffer.get()
        return value if self._convert is None else self._convert(value)  # type: ignore[no-any-return]

    @property
    def buffered(self) -> int:
        """Items fetched and not yet consumed (never more than `prefetch`)."""
        assert self._buffer is not None
        return self._buffer.buffered

    @property
    def _fetching(self) -> bool:
        assert self._buffer is not None
        return self._buffer.fetching

    async def aclose(self) -> None:
        """Stop: close the underlying iterator on a thread, after any fetch in progress."""
        buffer = self._buffer
        assert buffer is not None
        if buffer.closed:
            return
        buffer.close()
        await buffer.wait_fetched()  # a generator cannot be closed while it runs
        closer = self._closer
        if closer.done:
            return
        waker = current_waker("AsyncIterator.aclose()")
        await waker.wait(_CloseJob(closer.close_now, waker, closer.executor))

    def __del__(self) -> None:
        # The consumer broke out of `async for` (or was cancelled) and dropped us.
        buffer = self._buffer
        if buffer is None or buffer.closed or buffer.exhausted:
            return
        buffer.close()
        if buffer.fetching:
            return  # the fetch job closes the source when it lands
        try:
            self._closer.close_in_background()
        except ClosedError:
            pass  # its DedicatedThread is gone, and the objects that lived there with it

    async def __aenter__(self) -> AsyncIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _fetch(buffer: ReadAhead[Any], *, closer: _Closer, limiter: Limiter | None) -> None:
    waker = buffer.waker
    assert waker is not None
    closer.waker = waker
    job = _FetchJob(closer.source.next_item, (), {}, waker, closer.executor, limiter)
    job.buffer = buffer
    job.owner = closer
    job.start()


class _CloseJob(Job):
    __slots__ = ()

    def __init__(self, fn: Callable[[], None], waker: Waker, executor: Executor) -> None:
        super().__init__(fn, (), {}, waker, executor, None)
        self.cleanup = True  # a cancelled aclose() still closes the iterator


def iterate(iterable: Iterable[T], *, prefetch: int = 1) -> AsyncIterator[T]:
    """Iterate a blocking iterable from async code; each `next()` runs in a thread.

    At most `prefetch` items are read ahead of the consumer (0: fetch only on
    demand). Stopping early closes the iterable (a generator's `finally` runs).

    >>> import bridge
    >>> async def main():
    ...     return [line async for line in bridge.iterate(iter(["a", "b"]))]
    >>> bridge.run(main)
    ['a', 'b']
    """
    if not isinstance(iterable, Iterable):
        raise TypeError(f"iterate() needs a sync iterable, got {iterable!r}")
    if hasattr(iterable, "__aiter__"):
        raise TypeError(
            "iterate() got an async iterable; use `async for` on it directly, "
            "iterate() is for blocking sync iterators"
        )
    return AsyncIterator(iterable, prefetch=prefetch)
