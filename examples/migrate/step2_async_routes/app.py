"""Step 2: every route's work is async; the Flask views are one-line `bridge.syncify` calls.

All of `Links` now runs on bridge's shared portal loop, so the Flask views
are thin and the service is ready to leave Flask. One call was missed on the
way, as in the blog post this project answers: `Links.check` still fetches
with the blocking `check_url`, which stalls the loop for as long as the page
takes. Every behaviour test passes; `python -m bridge watch` finds the line.

    python examples/migrate/step2_async_routes/app.py [--cassandra HOST[:PORT]] [--demo]
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from cassandra.cluster import Cluster, Session  # type: ignore[import-untyped]
from flask import Flask, Response, jsonify, request

import bridge
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


def check_url(http: requests.Session, url: str) -> Check:
    """Fetch `url`; a failure to connect is a result to store, not an error to raise."""
    try:
        response = http.get(url, timeout=FETCH_TIMEOUT)
    except requests.RequestException as exc:
        return Check(None, None, type(exc).__name__, now())
    return Check(response.status_code, title_of(response.content), None, now())


async def fetch(web: AsyncHTTP, url: str) -> Check:
    """`check_url`, awaitable: the request runs in a thread of the adapter's own pool."""
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
    """The service: links in Cassandra, checked with `requests`; async now, but for one call."""

    def __init__(self, session: Session, http: requests.Session, web: AsyncHTTP) -> None:
        self.session = session
        self.http = http
        self.db = AsyncCassandra(session)  # the same connections, awaited
        self.web = web
        self.insert = session.prepare(
            "INSERT INTO links (id, url, status, title, error, checked_at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.select_one = session.prepare("SELECT url FROM links WHERE id = ?")

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
        # Missed in the move: the step-0 helper, a blocking requests.get on the loop.
        return await self.save(id, row.url, check_url(self.http, row.url))


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


def create_app(links: Links) -> Flask:
    app = Flask(__name__)

    @app.post("/links")
    def add_link() -> tuple[Response, int]:
        url = parse_url(request.get_json(silent=True))
        if url is None:
            return jsonify(error='POST a JSON object with an http(s) "url"'), 400
        return jsonify(bridge.syncify(links.add)(url)), 201

    @app.get("/links")
    def list_links() -> Response:
        return jsonify(bridge.syncify(links.all)())

    @app.get("/check/<text>")
    def check_link(text: str) -> tuple[Response, int]:
        id = parse_id(text)
        link = bridge.syncify(links.check)(id) if id is not None else None
        if link is None:
            return jsonify(error=f"no link {text}"), 404
        return jsonify(link), 200

    return app


@contextmanager
def open_app(contact_points: list[str], port: int, keyspace: str) -> Iterator[Flask]:
    """Connect, create the schema if needed, and give the app; shut down after."""
    cluster = Cluster(contact_points, port=port)
    try:
        session = cluster.connect()
        for statement in SCHEMA:
            session.execute(statement.format(keyspace=keyspace))
        session.set_keyspace(keyspace)
        web = AsyncHTTP(timeout=FETCH_TIMEOUT)
        try:
            with requests.Session() as http:
                yield create_app(Links(session, http, web))
        finally:
            bridge.syncify(web.close)()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for examples.
    from examples.migrate.launch import main

    main(open_app)
