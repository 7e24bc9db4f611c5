"""A bounded read-ahead buffer between one producer and an async consumer.

`iterate` fills it with `next()` calls run in threads, the Cassandra page
stream with page requests completed by driver callbacks; the consumer logic is
the same, so it lives here once. The producer is started by the buffer itself
(`fetch`), one fetch at a time, and only while fewer than `prefetch` items
wait: a slow consumer never makes an unbounded pile of rows or pages.

Everything here runs on the loop thread: the producer reports what it fetched
with `put` / `fail` / `end` from a completion the loop's waker delivers.
`fetch` gets the buffer as its argument, so the buffer need not hold a
closure over itself (no reference cycle keeps a dropped stream alive).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bridge._waker import Slot, Waker, current_waker

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Items fetched ahead of an async consumer, never more than `prefetch` waiting."""

    __slots__ = ("_buffer", "_fetch", "_prefetch", "_waiter", "_what", "closed", "exhausted",
                 "fetching", "waker")

    def __init__(
        self, fetch: Callable[[ReadAhead[T]], object], *, prefetch: int = 1, what: str = "ReadAhead"
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (items read ahead), got {prefetch!r}")
        self._fetch = fetch
        self._prefetch = prefetch
        self._what = what
        self._buffer: deque[tuple[Any, BaseException | None]] = deque()
        self._waiter: Slot | None = None
        self.waker: Waker | None = None  #: the consumer's loop, once it has asked for an item
        self.fetching = False  #: a fetch was started and has not reported yet
        self.exhausted = False  #: the producer ended (or failed): no more fetches
        self.closed = False  #: the consumer stopped: no more fetches, items dropped

    @property
    def buffered(self) -> int:
        """Items fetched and not yet consumed (never more than `prefetch`)."""
        return len(self._buffer)

    # -- consumer side ----------------------------------------------------------

    async def get(self) -> T:
        """The next item; `StopAsyncIteration` at the end or once closed; a fetch's error once."""
        waker = self.waker = current_waker(self._what)
        buffer = self._buffer
        if not buffer:
            if self.exhausted or self.closed:
                raise StopAsyncIteration
            if not self.fetching:
                self._start_fetch()
            if self.fetching:
                await self._park(waker)
            if not buffer:
                raise StopAsyncIteration  # closed meanwhile
        value, error = buffer.popleft()
        if error is not None:
            raise error
        self._read_ahead()
        return value  # type: ignore[no-any-return]

    async def wait_fetched(self) -> None:
        """Park until the fetch in flight, if any, has reported: a generator can't close mid-run."""
        if self.fetching:
            await self._park(current_waker(self._what))

    def close(self) -> None:
        """Stop: drop what is buffered, start no more fetches, end a waiting `get()`."""
        self.closed = True
        self._buffer.clear()
        self._wake()

    @property
    def waiting(self) -> bool:
        """A task is parked on this buffer (in `get` or `wait_fetched`)."""
        return self._waiter is not None

    async def _park(self, waker: Waker) -> None:
        slot = self._waiter = Slot(waker)
        try:
            await waker.wait(slot)
        finally:
            if self._waiter is slot:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.complete()

    def _start_fetch(self) -> None:
        self.fetching = True
        try:
            self._fetch(self)
        except Exception as exc:  # e.g. its DedicatedThread was closed: the consumer gets it
            self.fetching = False
            self.exhausted = True
            self._buffer.append((None, exc))

    def _read_ahead(self) -> None:
        if not (self.fetching or self.exhausted or self.closed):
            if len(self._buffer) < self._prefetch:
                self._start_fetch()

    # -- producer side: on the loop, exactly one report per fetch -------------------

    def put(self, item: T, *, last: bool = False) -> None:
        """The fetch produced `item` (`last`: and nothing follows it)."""
        self.fetching = False
        if last:
            self.exhausted = True
        if not self.closed:
            self._buffer.append((item, None))
            self._read_ahead()
        self._wake()

    def fail(self, error: BaseException) -> None:
        """The fetch failed: the consumer gets `error` after the items before it, then the end."""
        self.fetching = False
        self.exhausted = True
        if not self.closed:
            self._buffer.append((None, error))
        self._wake()

    def end(self) -> None:
        """The fetch found nothing more: the consumer sees the end after the items buffered."""
        self.fetching = False
        self.exhausted = True
        self._wake()
