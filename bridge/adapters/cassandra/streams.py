"""`PageStream` and `RowStream`: every page of a query, read ahead by a bounded number of pages."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bridge.lowlevel import ReadAhead

from ._requests import _Request
from .results import AsyncResultSet, _with_paging_state

if TYPE_CHECKING:
    from .session import AsyncSession


class _Pages:
    """The producer side: which page comes next, and the request fetching it.

    Separate from `PageStream` so that a request in flight holds this, never
    the stream itself: a stream dropped mid-iteration goes at once, and its
    `__del__` stops the reading ahead.
    """

    __slots__ = ("args", "fetching", "next_state", "requested", "session", "started")

    def __init__(self, session: AsyncSession, args: tuple[Any, ...]) -> None:
        self.session = session
        self.args = args
        self.next_state: bytes | None = None
        self.started = False
        self.fetching: _Request | None = None
        self.requested = 0

    def fetch(self, buffer: ReadAhead[AsyncResultSet]) -> None:
        """Request the next page (on the loop); `fetched` files it in `buffer`."""
        self.session._check_open()  # ClosedError: the consumer gets it, then the end
        args = self.args
        if self.started:
            assert self.next_state is not None
            args = _with_paging_state(args, self.next_state)
        self.started = True
        self.requested += 1
        waker = buffer.waker
        assert waker is not None
        request = self.fetching = _Request(
            self.session, waker, args, functools.partial(self.fetched, buffer)
        )
        request.start()

    def fetched(self, buffer: ReadAhead[AsyncResultSet], request: _Request) -> None:
        self.fetching = None
        error = request.error
        if error is not None:
            request.error = None
            buffer.fail(error)
            return
        page = request.page()
        page._in_stream = True
        self.next_state = page.paging_state
        buffer.put(page, last=self.next_state is None)

    def stop(self) -> None:
        if self.fetching is not None:
            self.fetching.cancel()  # queued for a token: dropped; sent: finishes, dropped


class PageStream:
    """Every page of a query, read ahead in the background by at most `prefetch` pages.

    Pages requested never run more than `prefetch` ahead of the pages handed
    to the consumer (0: fetch only on demand). Each page is its own request
    resumed at the previous page's `paging_state`, behind the session's
    limiter. `aclose()` (or leaving `async with`) stops fetching; a page
    already requested finishes in the background and is dropped.
    """

    _buffer: ReadAhead[AsyncResultSet] | None = None  # __del__ before __init__ ran

    def __init__(self, session: AsyncSession, args: tuple[Any, ...], prefetch: int) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0 (pages read ahead), got {prefetch!r}")
        self._pages = _Pages(session, args)
        self._buffer = ReadAhead(self._pages.fetch, prefetch=prefetch, what="PageStream")
        self.delivered = 0  #: pages handed to the consumer so far

    @property
    def requested(self) -> int:
        """Pages requested so far."""
        return self._pages.requested

    @property
    def buffered(self) -> int:
        """Pages fetched and not yet consumed."""
        assert self._buffer is not None
        return self._buffer.buffered

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> AsyncResultSet:
        assert self._buffer is not None
        page = await self._buffer.get()
        self.delivered += 1
        return page

    async def aclose(self) -> None:
        """Stop fetching; a page in flight is dropped when it arrives."""
        self.close()

    def close(self) -> None:
        buffer = self._buffer
        if buffer is None or buffer.closed:
            return
        buffer.close()
        self._pages.stop()

    def __del__(self) -> None:
        # Dropped mid-iteration (a `break` without `async with`): stop reading ahead.
        self.close()

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
