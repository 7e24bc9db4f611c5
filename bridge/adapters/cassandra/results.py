"""`AsyncResultSet`: one page of rows, and the means to fetch the next pages without blocking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from cassandra.cluster import ResponseFuture, ResultSet  # type: ignore[import-untyped]

import bridge

if TYPE_CHECKING:
    from .session import AsyncSession

_MORE_PAGES = (
    "this result has more pages than the one fetched ({rows} rows so far); {what} would "
    "silently stop at the end of the first page. Use `async for row in result` or "
    "`await result.all()` for every row, `result.current_rows` for this page only, or "
    "`session.stream(...)` to read a large result page by page"
)


class MorePagesError(bridge.BridgeError, TypeError):
    """A sync iteration (or `len()`) of a result that has more pages than the one fetched."""


class AsyncResultSet:
    """One page of a result: `rows`, and the means to fetch the next pages without blocking.

    `async for row in result` and `await result.all()` cover every page,
    fetched one at a time through driver callbacks. `for row in result` and
    `len(result)` work when this page is the whole result; when more pages
    exist they raise `MorePagesError` instead of passing the first page off
    as all the data (the trap of porting `for row in session.execute(q)`).
    """

    __slots__ = (
        "_args",
        "_in_stream",
        "_session",
        "column_names",
        "column_types",
        "response_future",
        "rows",
    )

    def __init__(
        self, session: AsyncSession, future: Any, rows: Any, args: tuple[Any, ...]
    ) -> None:
        self._session = session
        self._args = args
        self._in_stream = False  # a page handed out by a PageStream, which fetches the rest
        self.response_future: ResponseFuture = future
        if rows is None:
            rows = []
        elif not isinstance(rows, list):
            rows = [rows] if isinstance(rows, dict) else list(rows)
        self.rows: list[Any] = rows
        self.column_names: list[str] | None = future._col_names
        self.column_types: list[Any] | None = future._col_types

    @property
    def current_rows(self) -> list[Any]:
        """This page's rows (the driver's `ResultSet.current_rows`)."""
        return self.rows

    @property
    def paging_state(self) -> bytes | None:
        """Where the next page starts; pass to `execute(..., paging_state=...)` to resume."""
        return self.response_future._paging_state  # type: ignore[no-any-return]

    @property
    def has_more_pages(self) -> bool:
        return self.response_future._paging_state is not None

    @property
    def was_applied(self) -> bool:
        """For a lightweight transaction, whether it was applied (as the driver decides)."""
        return ResultSet(self.response_future, self.rows).was_applied  # type: ignore[no-any-return]

    @property
    def warnings(self) -> list[str] | None:
        return self.response_future.warnings  # type: ignore[no-any-return]

    def one(self) -> Any:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[Any]:
        if self.response_future._paging_state is not None and not self._in_stream:
            raise MorePagesError(
                _MORE_PAGES.format(rows=len(self.rows), what="`for row in result`")
            )
        return iter(self.rows)

    def __len__(self) -> int:
        if self.response_future._paging_state is not None:
            raise MorePagesError(_MORE_PAGES.format(rows=len(self.rows), what="`len(result)`"))
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __getitem__(self, index: int) -> Any:
        return self.rows[index]

    def __repr__(self) -> str:
        more = ", more pages" if self.has_more_pages else ""
        return f"<AsyncResultSet {len(self.rows)} rows{more}>"

    async def next_page(self) -> AsyncResultSet:
        """The page after this one (the same query, resumed at `paging_state`).

        Raises `LookupError` on the last page; check `has_more_pages` first.
        """
        paging_state = self.paging_state
        if paging_state is None:
            raise LookupError("this is the last page; check `result.has_more_pages` first")
        args = _with_paging_state(self._args, paging_state)
        return await self._session._run(args, "AsyncResultSet.next_page()")

    async def __aiter__(self) -> AsyncIterator[Any]:
        page: AsyncResultSet = self
        while True:
            for row in page.rows:
                yield row
            if not page.has_more_pages:
                return
            page = await page.next_page()

    async def all(self) -> list[Any]:
        """Every row of this page and the pages after it."""
        return [row async for row in self]


def _with_paging_state(args: tuple[Any, ...], paging_state: bytes) -> tuple[Any, ...]:
    query, parameters, trace, payload, timeout, profile, _, host, execute_as = args
    return (query, parameters, trace, payload, timeout, profile, paging_state, host, execute_as)
