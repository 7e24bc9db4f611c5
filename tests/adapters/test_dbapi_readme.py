"""The README's DB-API examples run as written, against the real servers and a sqlite3 file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import psycopg2
import pymysql
import pytest

import bridge
from tests.adapters.dbapi_servers import mariadb, postgres, unique_table

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text.split("## DB-API drivers", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run(code: str, table: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("orders", table), "README.md", "exec"), namespace)
    return bridge.run(namespace["main"])


def test_the_section_has_one_example_per_driver() -> None:
    drivers = [re.search(r"create_pool\((\w+)", code).group(1) for code in examples()]  # type: ignore[union-attr]
    assert drivers == ["psycopg2", "pymysql", "connect"]


def test_postgres_example() -> None:
    pg = postgres()
    code = examples()[0].replace('user="postgres"', f'user="{pg["user"]}"')
    table = unique_table()
    admin = psycopg2.connect(**pg)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"create table {table} (id serial primary key, item text)")
        assert run(code, table) == {"id": 1, "item": "tea"}
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop table if exists {table}")
        admin.close()


def test_mariadb_example() -> None:
    my = mariadb()
    table = unique_table()
    admin = pymysql.connect(autocommit=True, **my)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"create table {table} (id serial primary key, item text)")
        assert run(examples()[1], table) == (("tea",),)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop table if exists {table}")
        admin.close()


def test_sqlite_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the example opens "app.db" in the working directory
    import sqlite3

    with sqlite3.connect("app.db") as conn:
        conn.execute("create table orders (item text)")
        conn.executemany("insert into orders values (?)", [("tea",), ("cup",)])
    assert run(examples()[2], "orders") == 2
    assert os.path.exists(tmp_path / "app.db")
