"""wrap: whole legacy objects from async code, thread-bound ones included."""

from __future__ import annotations

import io
import sqlite3
import threading

import pytest

from bridge import DedicatedThread, Limiter, unwrap, wrap

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
        with pytest.raises(sqlite3.ProgrammingError):
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
