"""wrap: whole legacy objects from async code, thread-bound ones included."""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterator, Mapping

import pytest

import bridge
from bridge import AsyncProxy, DedicatedThread, Limiter, unwrap, wrap

pytestmark = pytest.mark.anyio


async def test_sqlite_connection_made_on_a_dedicated_thread() -> None:
    with DedicatedThread(name="sqlite") as thread:
        raw = await thread.run(sqlite3.connect, ":memory:")
        conn = wrap(raw, thread=thread)
        await conn.execute("create table users (id integer primary key, name text)")
        await conn.executemany("insert into users (name) values (?)", [("ada",), ("bob",)])
        await conn.commit()
        cursor = await conn.execute("select id, name from users order by id")
        assert await cursor.fetchone() == (1, "ada")
        assert [row async for row in cursor] == [(2, "bob")]
        async with conn:  # sqlite3's own transaction context manager
            await conn.execute("insert into users (name) values ('cy')")
        cursor = await conn.execute("select count(*) from users")
        assert await cursor.fetchone() == (3,)
        assert conn.in_transaction is False  # plain attributes pass through
        # The raw connection refuses any other thread: the proxy never strays.
        # (Called on the loop on purpose: it fails at once, so strict mode may allow it.)
        with bridge.strict(allow=["sqlite3"]), pytest.raises(sqlite3.ProgrammingError):
            unwrap(conn).execute("select 1")


async def test_methods_run_off_the_loop() -> None:
    class Legacy:
        def where(self) -> int:
            return threading.get_ident()

    assert await wrap(Legacy()).where() != threading.get_ident()


async def test_async_with_and_async_for_map_to_the_sync_protocols() -> None:
    buffer = io.StringIO("a\nb\n")
    async with wrap(buffer) as f:
        assert [line async for line in f] == ["a\n", "b\n"]
    assert buffer.closed


async def test_limiter_applies_to_every_call() -> None:
    limiter = Limiter(1)
    proxy = wrap(io.BytesIO(b"xyz"), limiter=limiter)
    assert await proxy.read() == b"xyz"
    assert limiter.statistics().total == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="DedicatedThread"):
        wrap(object(), thread=3)  # type: ignore[arg-type]


async def test_exit_still_runs_when_the_task_is_cancelled() -> None:
    import anyio

    from tests.support import eventually

    entered = threading.Event()
    exited = threading.Event()

    class Resource:
        def __enter__(self) -> Resource:
            return self

        def __exit__(self, *exc: object) -> None:
            entered.wait(30)
            exited.set()

    with anyio.CancelScope() as scope:
        async with wrap(Resource()):
            scope.cancel()  # cancelled inside the block: __exit__ is owed
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    entered.set()
    await eventually(exited.is_set)


async def test_driver_rows_come_back_as_rows_not_proxies() -> None:
    with DedicatedThread(name="sqlite-rows") as thread:
        raw = await thread.run(sqlite3.connect, ":memory:")
        raw.row_factory = sqlite3.Row  # a plain attribute: no call on the connection
        conn = wrap(raw, thread=thread)
        cursor = await conn.execute("select 1 as a, 'x' as b union all select 2, 'y'")
        first = await cursor.fetchone()
        assert isinstance(first, sqlite3.Row)
        assert (first["a"], dict(first)) == (1, {"a": 1, "b": "x"})
        rows = [row async for row in cursor]
        assert [dict(row) for row in rows] == [{"a": 2, "b": "y"}]
        await conn.close()


async def test_a_mapping_with_close_is_a_resource_and_stays_wrapped() -> None:
    class Pages(list[int]):
        def close(self) -> None:
            pass

    class Source:
        def pages(self) -> Pages:
            return Pages([1, 2])

        def mapping(self) -> dict[str, int]:
            return {"a": 1}

    source = wrap(Source())
    assert isinstance(await source.pages(), Pages)  # a list subclass is data, close() or not
    assert await source.mapping() == {"a": 1}

    class Shelf(Mapping[str, int]):
        def __getitem__(self, key: str) -> int:
            return 1

        def __iter__(self) -> Iterator[str]:
            return iter(["k"])

        def __len__(self) -> int:
            return 1

        def close(self) -> None:
            pass

    class Opener:
        def open(self) -> Shelf:
            return Shelf()

    shelf = await wrap(Opener()).open()
    assert isinstance(shelf, AsyncProxy)  # a mapping with close() holds something: wrapped
    assert isinstance(unwrap(shelf), Shelf)


def test_wrap_none_says_what_went_wrong() -> None:
    with pytest.raises(TypeError, match=r"wrap\(None\).*did a connect or factory call return None"):
        wrap(None)
