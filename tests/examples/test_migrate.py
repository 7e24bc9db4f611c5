"""examples/migrate: every step answers the same requests alike; `bridge watch` tells them apart.

Each step runs in this process against one shared CQL server (its own
keyspace) and one local website, served the way `app.py` serves it (werkzeug
for the Flask steps, uvicorn for step 3), and is driven over real HTTP.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from bridge.testing.cqlserver import CQLServer
from bridge.testing.httpserver import unused_port
from examples.migrate.launch import serve
from examples.migrate.website import Website

ROOT = Path(__file__).resolve().parents[2]
MIGRATE = ROOT / "examples" / "migrate"
STEPS = ["step0_sync", "step1_wrap_drivers", "step2_async_routes", "step3_verified"]


@pytest.fixture(scope="module")
def cql() -> Iterator[Any]:
    with CQLServer.start_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def site() -> Iterator[Website]:
    with Website() as website:
        yield website


@dataclass(frozen=True)
class Service:
    """One step, served; `page` gives each test pages of its own on the shared website."""

    step: str
    url: str
    site: Website

    def page(self, name: str, status: int = 200, title: str = "") -> str:
        path = f"/{self.step}/{name}"
        self.site.set_page(path, status, title or name)
        return self.site.url(path)

    def post(self, body: Any) -> requests.Response:
        return requests.post(f"{self.url}/links", json=body, timeout=10)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=10)

    def links(self) -> list[dict[str, Any]]:
        response = self.get("/links")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=STEPS)
def service(request: pytest.FixtureRequest, cql: Any, site: Website) -> Iterator[Service]:
    step: str = request.param
    app_module = importlib.import_module(f"examples.migrate.{step}.app")
    with (
        app_module.open_app(cql.contact_points, cql.port, step) as app,
        serve(app) as server,
    ):
        yield Service(step, server.url, site)


def expected(
    url: str, status: int | None, title: str | None, error: str | None = None
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, url)),
        "url": url,
        "status": status,
        "title": title,
        "error": error,
    }


def without_time(link: dict[str, Any]) -> dict[str, Any]:
    checked_at = link.pop("checked_at")
    assert checked_at.endswith("Z") and "T" in checked_at
    return link


def test_adding_a_link_stores_its_status_and_title(service: Service) -> None:
    url = service.page("home", title="Home & away")  # escaped in the HTML
    response = service.post({"url": url})
    assert response.status_code == 201
    assert without_time(response.json()) == expected(url, 200, "Home & away")
    [listed] = [link for link in service.links() if link["url"] == url]
    assert listed == response.json() | {"checked_at": listed["checked_at"]}


def test_a_missing_page_is_stored_with_its_status(service: Service) -> None:
    url = service.page("gone", status=404, title="Not found")
    response = service.post({"url": url})
    assert response.status_code == 201
    assert without_time(response.json()) == expected(url, 404, "Not found")


def test_an_unreachable_url_is_stored_with_its_error(service: Service) -> None:
    url = f"http://127.0.0.1:{unused_port()}/"
    response = service.post({"url": url})
    assert response.status_code == 201
    assert without_time(response.json()) == expected(url, None, None, "ConnectionError")


def test_adding_a_url_twice_keeps_one_link(service: Service) -> None:
    url = service.page("twice")
    service.post({"url": url})
    service.post({"url": url})
    assert [link["url"] for link in service.links()].count(url) == 1


def test_links_are_listed_by_url(service: Service) -> None:
    for name in ("b", "c", "a"):
        service.post({"url": service.page(f"sorted-{name}")})
    urls = [link["url"] for link in service.links()]
    assert urls == sorted(urls)
    mine = [url for url in urls if "/sorted-" in url and service.step in url]
    assert [url.rsplit("-", 1)[1] for url in mine] == ["a", "b", "c"]


def test_check_fetches_the_page_again_and_stores_it(service: Service) -> None:
    url = service.page("news", title="Old news")
    added = service.post({"url": url}).json()
    service.page("news", status=410, title="Gone for good")
    response = service.get(f"/check/{added['id']}")
    assert response.status_code == 200
    checked = response.json()
    assert checked["checked_at"] >= added["checked_at"]
    assert without_time(checked) == expected(url, 410, "Gone for good")
    [listed] = [link for link in service.links() if link["url"] == url]
    assert without_time(listed) == expected(url, 410, "Gone for good")


@pytest.mark.parametrize("text", [str(uuid.uuid4()), "not-a-uuid"])
def test_check_of_an_unknown_link_is_404(service: Service, text: str) -> None:
    response = service.get(f"/check/{text}")
    assert response.status_code == 404
    assert response.json() == {"error": f"no link {text}"}


@pytest.mark.parametrize("body", [{}, {"url": "ftp://example.org/"}, {"url": 7}, ["http://x/"]])
def test_posting_without_an_http_url_is_400(service: Service, body: Any) -> None:
    response = service.post(body)
    assert response.status_code == 400
    assert "url" in response.json()["error"]


# -- step 3 in-process, on every backend ----------------------------------------


@pytest.mark.anyio
async def test_final_app_runs_on_every_backend(cql: Any, site: Website, anyio_backend: Any) -> None:
    """uvicorn is asyncio-only; the app itself (Starlette, both adapters) also runs on trio."""
    from examples.migrate.step3_verified.app import create_app

    backend = "uvloop" if anyio_backend[1].get("use_uvloop") else anyio_backend[0]
    app = create_app(cql.contact_points, cql.port, f"step3_{backend}")
    url = site.url(f"/in-process/{backend}")
    site.set_page(f"/in-process/{backend}", 200, backend)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state or {})}, receive, send)  # as servers do

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            added = (await client.post("/links", json={"url": url})).json()
            site.set_page(f"/in-process/{backend}", 200, f"{backend}, again")
            checked = (await client.get(f"/check/{added['id']}")).json()
            listed = (await client.get("/links")).json()
    assert without_time(added) == expected(url, 200, backend)
    assert without_time(checked) == expected(url, 200, f"{backend}, again")
    assert [without_time(link) for link in listed] == [checked]


# -- bridge watch ------------------------------------------------------------------


def watch(step: str, tmp_path: Path, *options: str) -> tuple[dict[str, Any], str]:
    """Run `python -m bridge watch -- examples/migrate/<step>/app.py --demo`; report and stderr."""
    report = tmp_path / "report.json"
    app = str(MIGRATE / step / "app.py")
    command = [sys.executable, "-m", "bridge", "watch", *options, "--report", str(report)]
    done = subprocess.run(
        [*command, "--", app, "--demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "'Slow page, updated'" in done.stdout  # the demo ran to its end
    return json.loads(report.read_text()), done.stderr


def test_bridge_watch_names_the_forgotten_requests_get_of_step2(tmp_path: Path) -> None:
    app = MIGRATE / "step2_async_routes" / "app.py"
    lines = app.read_text().splitlines()
    lineno = next(n for n, line in enumerate(lines, 1) if "= http.get(url" in line)
    report, stderr = watch("step2_async_routes", tmp_path)
    site = report["sites"][0]  # ranked worst first; a loaded machine may add small ones
    assert (Path(site["filename"]), site["lineno"]) == (app, lineno)
    assert site["worst"] >= 0.05
    [call] = report["strict"]
    assert (call["call"], call["lineno"]) == ("requests.Session.send", lineno)
    assert f"app.py:{lineno} in check_url()" in stderr


def test_bridge_watch_finds_nothing_blocking_in_step3(tmp_path: Path) -> None:
    # A loaded test machine can stall any loop for a tick (one-off imports
    # included); strict mode still catches any known blocking call, however short.
    report, stderr = watch("step3_verified", tmp_path, "--threshold", "0.25")
    assert report["sites"] == [], stderr
    assert report["strict"] == [], stderr
    assert "no event loop was blocked longer than 0.25 s" in stderr
