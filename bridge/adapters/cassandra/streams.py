"""`PageStream` and `RowStream`: every page of a query, read ahead by a bounded number of pages."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import bridge

from ._kit import Slot, Waker, current_waker
from ._requests import _Request
from .results import AsyncResultSet, _with_paging_state

if TYPE_CHECKING:
    from .session import AsyncSession


class PageStream:
    """Every page of a query, read ahead in the background by at most `prefetch` pages.

    Pages requested never run more than `prefetch` ahead of the pages handed
    to the consumer (0: fetch only on demand). Each page is its own request
    resumed at the previous page's `paging_state`, behind the session's
    limiter. `aclose()` (or leaving `async with`) stops fetching; a page
    already requested finishes in the background and is dropped.
    """

    def __init__(self, session: AsyncSession, args: tuple[Any, ...], prefetch: int) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (pages read ahead), got {prefetch!r}")
        self._session = session
        self._args = args
        self._prefetch = prefetch
        self._buffer: deque[AsyncResultSet | BaseException] = deque()
        self._fetching: _Request | None = None
        self._next_state: bytes | None = None
        self._started = False
        self._exhausted = False
        self._closed = False
        self._waker: Waker | None = None
        self._waiter: Slot | None = None
        self.requested = 0  #: pages requested so far
        self.delivered = 0  #: pages handed to the consumer so far

    @property
    def buffered(self) -> int:
        """Pages fetched and not yet consumed."""
        return len(self._buffer)

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> AsyncResultSet:
        waker = current_waker("PageStream")
        self._waker = waker
        if not self._buffer:
            if self._exhausted or self._closed:
                raise StopAsyncIteration
            if self._fetching is None:
                self._fetch(waker)
            slot = self._waiter = Slot(waker)
            try:
                await waker.wait(slot)
            finally:
                self._waiter = None
            if not self._buffer:
                raise StopAsyncIteration  # closed meanwhile
        page = self._buffer.popleft()
        if isinstance(page, BaseException):
            raise page
        self.delivered += 1
        self._read_ahead(waker)
        return page

    def _read_ahead(self, waker: Waker) -> None:
        if self._fetching is None and not (self._exhausted or self._closed):
            if len(self._buffer) < self._prefetch:
                self._fetch(waker)

    def _fetch(self, waker: Waker) -> None:
        session = self._session
        try:
            session._check_open()
        except bridge.ClosedError as exc:
            self._buffer.append(exc)
            self._exhausted = True
            return
        args = self._args
        if self._started:
            assert self._next_state is not None
            args = _with_paging_state(args, self._next_state)
        self._started = True
        self.requested += 1
        request = self._fetching = _Request(session, waker, args, self._fetched)
        request.start()

    def _fetched(self, request: _Request) -> None:
        """On the loop: file the page, read further ahead, wake the consumer."""
        self._fetching = None
        if self._closed:
            return
        error = request.error
        if error is not None:
            request.error = None
            self._buffer.append(error)
            self._exhausted = True
        else:
            page = request.page()
            page._in_stream = True
            self._next_state = page.paging_state
            if self._next_state is None:
                self._exhausted = True
            self._buffer.append(page)
        self._read_ahead(request.waker)
        if self._waiter is not None:
            self._waiter.complete()

    async def aclose(self) -> None:
        """Stop fetching; a page in flight is dropped when it arrives."""
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        if self._fetching is not None:
            self._fetching.cancel()  # queued for a token: dropped; sent: finishes, dropped
        if self._waiter is not None:
            self._waiter.complete()

    def __del__(self) -> None:
        # Dropped mid-iteration (a `break` without `async with`): stop reading ahead.
        if not self._closed and self._fetching is not None:
            self._closed = True
            self._fetching.cancel()

    async def __aenter__(self) -> PageStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class RowStream:
    """Every row of every page of a query, pages read ahead as `PageStream` does."""

    def __init__(self, pages: PageStream) -> None:
        self.pages = pages
        self._rows: Iterator[Any] = iter(())

    def __aiter__(self) -> RowStream:
        return self

    async def __anext__(self) -> Any:
        for row in self._rows:
            return row
        while True:
            page = await self.pages.__anext__()
            rows = iter(page.rows)
            for row in rows:
                self._rows = rows
                return row

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop: no more rows, no more fetching."""
        self._rows = iter(())
        self.pages.close()

    async def __aenter__(self) -> RowStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
