"""`iterate`: a sync iterator as an async one, each `next()` run off the loop.

Read-ahead is bounded: at most `prefetch` items wait in the buffer, and a
fetch is started only when there is room, so a slow consumer never makes an
unbounded pile of rows (or pages, or lines). Fetches run one at a time, in
order, because a generator may not be resumed from two threads at once.

When the consumer stops early (`break`, an exception, cancellation) the
underlying iterator is closed on a thread, after any fetch still running, so
a generator's `finally:` (closing a cursor, a file, a response) really runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from bridge._exceptions import ClosedError
from bridge._job import Executor, Job
from bridge._pool import default_pool
from bridge._waker import Slot, Waker, current_waker
from bridge.limiter import Limiter

T = TypeVar("T")

_END = object()


class _FetchJob(Job):
    """A `next()` whose outcome goes to the iterator, whether or not a task waits for it."""

    __slots__ = ("on_done",)
    on_done: Callable[[Any, BaseException | None], None]

    def complete(self) -> None:
        error, self.error = self.error, None
        self.on_done(self.result, error)


class AsyncIterator(Generic[T]):
    """The async iterator `iterate` returns; also an async context manager that closes it."""

    _closing = True  # until __init__ has finished, there is nothing for __del__ to close

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        prefetch: int = 1,
        executor: Executor | None = None,
        limiter: Limiter | None = None,
        convert: Callable[[Any], Any] | None = None,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (items read ahead), got {prefetch!r}")
        self._iterable: Iterable[T] | None = iterable
        self._iterator: Iterator[T] | None = None
        self._prefetch = prefetch
        self._executor = executor or default_pool()
        self._limiter = limiter
        self._convert = convert
        self._buffer: deque[tuple[Any, BaseException | None]] = deque()
        self._fetching = False
        self._exhausted = False
        self._closing = False
        self._closed = False
        self._waker: Waker | None = None
        self._waiter: Slot | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        waker = current_waker("iterate()")
        self._waker = waker
        if not self._buffer:
            if self._exhausted or self._closing:
                raise StopAsyncIteration
            if not self._fetching:
                self._fetch(waker)
            if self._fetching:
                slot = self._waiter = Slot(waker)
                try:
                    await waker.wait(slot)
                finally:
                    self._waiter = None
            if not self._buffer:
                raise StopAsyncIteration
        value, error = self._buffer.popleft()
        if error is not None:
            raise error
        self._read_ahead(waker)
        return value if self._convert is None else self._convert(value)  # type: ignore[no-any-return]

    @property
    def buffered(self) -> int:
        """Items fetched and not yet consumed (never more than `prefetch`)."""
        return len(self._buffer)

    def _read_ahead(self, waker: Waker) -> None:
        if not (self._fetching or self._exhausted or self._closing):
            if len(self._buffer) < self._prefetch:
                self._fetch(waker)

    def _fetch(self, waker: Waker) -> None:
        self._fetching = True
        job = _FetchJob(self._next_item, (), {}, waker, self._executor, self._limiter)
        job.on_done = self._fetched
        try:
            job.start()
        except Exception as exc:  # e.g. its DedicatedThread was closed: the consumer gets it
            self._fetching = False
            self._exhausted = True
            self._buffer.append((None, exc))

    def _next_item(self) -> Any:
        if self._iterator is None:
            assert self._iterable is not None
            self._iterator = iter(self._iterable)  # iter() may block too (a DB cursor)
            self._iterable = None
        return next(self._iterator, _END)

    def _fetched(self, value: Any, error: BaseException | None) -> None:
        """On the loop: file the item, read further ahead, wake the consumer."""
        self._fetching = False
        if error is not None:
            self._buffer.append((None, error))
            self._exhausted = True
        elif value is _END:
            self._exhausted = True
        else:
            self._buffer.append((value, None))
        waker = self._waker
        if self._closing:
            if self._waiter is None and not self._closed:
                self._close_in_background()  # the aclose() that waited for us was cancelled
        elif waker is not None:
            self._read_ahead(waker)
        if self._waiter is not None:
            self._waiter.complete()

    async def aclose(self) -> None:
        """Stop: close the underlying iterator on a thread, after any fetch in progress."""
        if self._closing:
            return
        self._closing = True
        self._buffer.clear()
        waker = current_waker("AsyncIterator.aclose()")
        if self._fetching:
            slot = self._waiter = Slot(waker)
            try:
                await waker.wait(slot)  # a generator cannot be closed while it runs
            finally:
                self._waiter = None
        self._buffer.clear()
        await waker.wait(_CloseJob(self._close_iterator, waker, self._executor))

    def _close_iterator(self) -> None:
        self._closed = True
        iterator = self._iterator or self._iterable
        self._iterator = self._iterable = None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()

    def _close_in_background(self) -> None:
        if self._waker is None or self._iterator is None:
            self._close_iterator()  # never started: closing runs no code of the iterator's
            return
        job = _CloseJob(self._close_iterator, self._waker, self._executor)
        job.executor.submit(job)

    def __del__(self) -> None:
        # The consumer broke out of `async for` (or was cancelled) and dropped us.
        if not (self._closing or self._closed or self._exhausted):
            self._closing = True
            try:
                self._close_in_background()
            except ClosedError:
                pass  # its DedicatedThread is gone, and the objects that lived there with it

    async def __aenter__(self) -> AsyncIterator[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


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
