"""examples/dbapi_migrate: the sync stock service and its async version agree, on every loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import bridge
from examples.dbapi_migrate import after, before

pytestmark = pytest.mark.anyio


def run_before(path: str) -> list[Any]:
    stock = before.Stock(path)
    try:
        stock.add("tea", "green tea", 10)
        stock.add("tea", "green tea", 5)
        stock.add("cup", "mug", 2)
        stock.move("tea", "cup", 4)
        with pytest.raises(sqlite3.IntegrityError):
            stock.move("cup", "tea", 100)  # more than there is: neither update stays
        return [stock.get("tea"), stock.get("nothing"), list(stock.report())]
    finally:
        stock.close()


async def run_after(path: str) -> list[Any]:
    stock = await after.Stock.open(path)
    try:
        await stock.add("tea", "green tea", 10)
        await stock.add("tea", "green tea", 5)
        await stock.add("cup", "mug", 2)
        await stock.move("tea", "cup", 4)
        with pytest.raises(sqlite3.IntegrityError):
            await stock.move("cup", "tea", 100)
        return [
            await stock.get("tea"),
            await stock.get("nothing"),
            [r async for r in stock.report()],
        ]
    finally:
        await stock.close()


async def test_the_async_version_gives_the_same_answers(tmp_path: Path) -> None:
    # The sync version blocks: it runs in a thread (sqlite3 made and used there).
    expected = await bridge.to_thread(run_before, str(tmp_path / "before.db"))
    assert expected[0] == {"sku": "tea", "name": "green tea", "qty": 11}
    assert await run_after(str(tmp_path / "after.db")) == expected


async def test_many_tasks_use_the_async_version_at_once(tmp_path: Path) -> None:
    stock = await after.Stock.open(str(tmp_path / "busy.db"), connections=4)
    try:
        await stock.add("tea", "green tea", 0)
        await stock.add("cup", "mug", 1000)
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(stock.move, "cup", "tea", 3)
                tg.start_soon(stock.add, "pot", "teapot", 1)
        assert [row["qty"] for row in [r async for r in stock.report()]] == [700, 100, 300]
        assert stock.pool.statistics().opened <= 4
    finally:
        await stock.close()
