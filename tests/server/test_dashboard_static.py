"""The dashboard's files: served without a token, nothing else opened, nothing from elsewhere."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from stepstream_server.dashboard import STATIC

TOKEN = "s3cret-token"
FILES = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
URL = re.compile(r"""(?:https?|wss?)://[^\s"'`<>)]*""", re.IGNORECASE)


pytestmark = pytest.mark.anyio


@pytest.fixture
async def secured(start_server: Any) -> Any:
    return await start_server(token=TOKEN)


async def test_the_package_ships_the_dashboard() -> None:
    assert {"index.html", "app.js", "stepstream.js", "dashboard.css"} <= set(FILES)


@pytest.mark.parametrize("path", ["/", *(f"/static/{name}" for name in FILES)])
async def test_the_page_and_its_files_need_no_token(secured: Any, path: str) -> None:
    async with secured.client(auth=False) as client:
        response = await client.get(path)
        head = await client.head(path)  # `/` answered 405, and 401 with a token
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-cache"
    assert head.status_code == 200 and head.content == b""
    kind = response.headers["content-type"]
    if path.endswith(".js"):
        assert "javascript" in kind
    elif path.endswith(".css"):
        assert kind.startswith("text/css")
    else:
        assert kind.startswith("text/html")


async def test_the_page_tells_the_browser_to_load_nothing_from_elsewhere(server: Any) -> None:
    policy = (await server.http.get("/")).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/executions"),
        ("GET", "/api/v1/pipelines"),
        ("GET", "/schema/openapi.json"),
        ("GET", "/schema"),
        ("POST", "/static/app.js"),
        ("PUT", "/static/app.js"),
        ("DELETE", "/static/app.js"),
        ("OPTIONS", "/static/app.js"),
        ("POST", "/"),
        ("GET", "/static"),
        ("GET", "/static/../api/v1/executions"),
        ("GET", "/static/./../api/v1/pipelines"),
        ("GET", "/static/%2e%2e/api/v1/executions"),
        ("GET", "/staticx/app.js"),
        ("GET", "/index.html"),
    ],
)
async def test_everything_else_still_needs_the_token(secured: Any, method: str, path: str) -> None:
    async with secured.client(auth=False) as client:
        # Sent as written: no client-side normalisation of '..' segments.
        request = client.build_request(method, "/")
        request.url = request.url.copy_with(raw_path=path.encode())
        response = await client.send(request)
    secured.problem(response, 401)


async def test_a_missing_file_is_a_problem_not_a_page(secured: Any) -> None:
    async with secured.client(auth=False) as client:
        response = await client.get("/static/nope.js")
    secured.problem(response, 404)


async def test_the_static_router_never_serves_outside_its_folder(server: Any) -> None:
    """With the token, the auth wrapper lets '..' through: the file router must refuse it."""
    request = server.http.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=b"/static/../__init__.py")
    response = await server.http.send(request)
    assert response.status_code == 404
    assert "STATIC" not in response.text


def _hosts(text: str) -> set[str]:
    return {urlsplit(url).netloc for url in URL.findall(text)}


async def test_nothing_served_names_another_host(server: Any) -> None:
    """No CDN, no fonts, no analytics: every URL in what a browser loads stays on this server."""
    own = server.http.base_url.netloc.decode()
    pages = ["/", "/schema", *(f"/static/{name}" for name in FILES)]
    found = {path: _hosts((await server.http.get(path)).text) - {own} for path in pages}
    openapi = await server.http.get("/schema/openapi.json")
    assert not {path: hosts for path, hosts in found.items() if hosts}
    assert openapi.status_code == 200 and openapi.json()["openapi"].startswith("3.")


async def test_the_schema_page_links_the_documents_and_no_ui_from_a_cdn(server: Any) -> None:
    page = await server.http.get("/schema")
    yaml = await server.http.get("/schema/openapi.yaml")
    for ui in ("/schema/swagger", "/schema/redoc", "/schema/rapidoc", "/schema/elements"):
        server.problem(await server.http.get(ui), 404)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/schema/openapi.json"' in page.text
    assert yaml.status_code == 200 and "openapi:" in yaml.text


async def test_the_files_are_the_ones_in_the_package(server: Any) -> None:
    for name in FILES:
        content = (await server.http.get(f"/static/{name}")).content
        assert content == (STATIC / name).read_bytes(), name
    assert (await server.http.get("/")).content == Path(STATIC / "index.html").read_bytes()


async def test_the_wheel_carries_every_static_file(tmp_path: Path) -> None:
    server_project = Path(__file__).resolve().parents[2] / "server"
    subprocess.run(
        ["uv", "build", "--wheel", str(server_project), "-o", str(tmp_path), "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("stepstream_server-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {f"stepstream_server/dashboard/static/{name}" for name in FILES} <= names
