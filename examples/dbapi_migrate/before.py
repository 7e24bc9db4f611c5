"""Before: a small stock service on sqlite3, written the sync way many apps are.

One connection, rows as `sqlite3.Row`, `with conn:` for transactions. Called
from async code as it is, every method would block the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

SCHEMA = (
    "create table if not exists stock ("
    " sku text primary key, name text not null, qty integer not null check (qty >= 0))"
)
ADD = (
    "insert into stock (sku, name, qty) values (?, ?, ?) "
    "on conflict (sku) do update set qty = qty + excluded.qty"
)
TAKE = "update stock set qty = qty - ? where sku = ?"
PUT = "update stock set qty = qty + ? where sku = ?"


def connect(path: str) -> sqlite3.Connection:
    """The app's own connect function; the async version keeps it as it is."""
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


class Stock:
    def __init__(self, path: str) -> None:
        self.conn = connect(path)
        with self.conn:
            self.conn.execute(SCHEMA)

    def add(self, sku: str, name: str, qty: int) -> None:
        with self.conn:
            self.conn.execute(ADD, (sku, name, qty))

    def get(self, sku: str) -> dict[str, Any] | None:
        row = self.conn.execute("select * from stock where sku = ?", (sku,)).fetchone()
        return dict(row) if row else None

    def move(self, source: str, target: str, qty: int) -> None:
        """Both updates or neither: taking more than there is fails the CHECK and rolls back."""
        with self.conn:
            self.conn.execute(TAKE, (qty, source))
            self.conn.execute(PUT, (qty, target))

    def report(self) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute("select * from stock order by sku"):
            yield dict(row)

    def close(self) -> None:
        self.conn.close()
