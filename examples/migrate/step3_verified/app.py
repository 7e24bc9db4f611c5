"""Step 3: an async app (Starlette on uvicorn), the missed call fixed, and `bridge watch` clean.

The routes are the same coroutines as in step 2, now called by Starlette
directly: no Flask, no portal, no thread per request. The cluster and the
HTTP session belong to the app's lifespan, on its loop. `Links.check` fetches
with the adapter like `add` does, and `python -m bridge watch` reports nothing
blocking. uvicorn runs asyncio (uvloop when installed); Starlette and both
adapters also run on trio, which the tests check in-process.

    python examples/migrate/step3_verified/app.py [--cassandra HOST[:PORT]] [--demo]
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.adapters.cassandra import AsyncCluster
from bridge.adapters.cassandra import AsyncSession as AsyncCassandra
from bridge.adapters.requests import AsyncSession as AsyncHTTP

FETCH_TIMEOUT = 5.0
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)

SCHEMA = [
    "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
    "{{'class': 'SimpleStrategy', 'replication_factor': 1}}",
    "CREATE TABLE IF NOT EXISTS {keyspace}.links (id uuid PRIMARY KEY, url text, "
    "status int, title text, error text, checked_at timestamp)",
]


@dataclass(frozen=True)
class Check:
    """What fetching a URL found: a status and title, or the error that stopped it."""

    status: int | None
    title: str | None
    error: str | None
    checked_at: datetime


def now() -> datetime:
    """UTC now, to the millisecond: what a Cassandra timestamp keeps."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=None)


def link_id(url: str) -> uuid.UUID:
    """One id per URL, so adding a URL twice updates one link."""
    return uuid.uuid5(uuid.NAMESPACE_URL, url)


def title_of(body: bytes) -> str | None:
    match = _TITLE.search(body)
    return html.unescape(match.group(1).decode("utf-8", "replace")).strip() if match else None


async def fetch(web: AsyncHTTP, url: str) -> Check:
    """Fetch `url` in a thread of the adapter's own pool; a failure is a result to store."""
    try:
        response = await web.get(url)
    except requests.RequestException as exc:
        return Check(None, None, type(exc).__name__, now())
    return Check(response.status_code, title_of(response.content), None, now())


def as_json(link_id: uuid.UUID, url: str, check: Check) -> dict[str, Any]:
    fields = asdict(check)
    fields["checked_at"] = check.checked_at.isoformat(timespec="milliseconds") + "Z"
    return {"id": str(link_id), "url": url, **fields}


class Links:
    """The service: links in Cassandra, checked with `requests`; async all the way."""

    def __init__(self, db: AsyncCassandra, web: AsyncHTTP, insert: Any, select_one: Any) -> None:
        self.db = db
        self.web = web
        self.insert = insert
        self.select_one = select_one

    @classmethod
    async def open(cls, db: AsyncCassandra, web: AsyncHTTP) -> Links:
        """Prepare the statements (the driver blocks to prepare, so the adapter uses a thread)."""
        insert = await db.prepare(
            "INSERT INTO links (id, url, status, title, error, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        select_one = await db.prepare("SELECT url FROM links WHERE id = ?")
        return cls(db, web, insert, select_one)

    async def save(self, id: uuid.UUID, url: str, check: Check) -> dict[str, Any]:
        await self.db.execute(
            self.insert, (id, url, check.status, check.title, check.error, check.checked_at)
        )
        return as_json(id, url, check)

    async def add(self, url: str) -> dict[str, Any]:
        return await self.save(link_id(url), url, await fetch(self.web, url))

    async def all(self) -> list[dict[str, Any]]:
        result = await self.db.execute(
            "SELECT id, url, status, title, error, checked_at FROM links"
        )
        rows = await result.all()  # every page, each fetched through the driver's callbacks
        links = [
            as_json(r.id, r.url, Check(r.status, r.title, r.error, r.checked_at)) for r in rows
        ]
        return sorted(links, key=lambda link: link["url"])

    async def check(self, id: uuid.UUID) -> dict[str, Any] | None:
        row = (await self.db.execute(self.select_one, (id,))).one()
        if row is None:
            return None
        return await self.save(id, row.url, await fetch(self.web, row.url))


def parse_url(body: Any) -> str | None:
    """The "url" of a POST body, if it is an http(s) URL."""
    url = body.get("url") if isinstance(body, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url
    return None


def parse_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def add_link(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    url = parse_url(body)
    if url is None:
        return JSONResponse({"error": 'POST a JSON object with an http(s) "url"'}, 400)
    return JSONResponse(await request.state.links.add(url), 201)


async def list_links(request: Request) -> JSONResponse:
    return JSONResponse(await request.state.links.all())


async def check_link(request: Request) -> JSONResponse:
    text = request.path_params["text"]
    id = parse_id(text)
    link = await request.state.links.check(id) if id is not None else None
    if link is None:
        return JSONResponse({"error": f"no link {text}"}, 404)
    return JSONResponse(link)


def create_app(contact_points: list[str], port: int, keyspace: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Links]]:
        """Connect, create the schema if needed, serve; shut down after."""
        async with AsyncCluster(contact_points, port=port) as cluster:
            db = await cluster.connect()
            for statement in SCHEMA:
                await db.execute(statement.format(keyspace=keyspace))
            await db.set_keyspace(keyspace)
            async with AsyncHTTP(timeout=FETCH_TIMEOUT) as web:
                yield {"links": await Links.open(db, web)}  # request.state.links

    routes = [
        Route("/links", add_link, methods=["POST"]),
        Route("/links", list_links, methods=["GET"]),
        Route("/check/{text}", check_link, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@contextmanager
def open_app(contact_points: list[str], port: int, keyspace: str) -> Iterator[Starlette]:
    """The app; its lifespan, run by the server, connects and shuts down."""
    yield create_app(contact_points, port, keyspace)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for examples.
    from examples.migrate.launch import main

    main(open_app)
