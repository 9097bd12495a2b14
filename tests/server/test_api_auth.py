"""With a token, every route but /health wants `Authorization: Bearer`; WebSockets take ?token=."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from stepstream_server.app import create_app

from server_support import make_engine

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"

PROTECTED = [
    ("GET", "/api/v1/executions"),
    ("POST", "/api/v1/executions"),
    ("GET", "/api/v1/executions/nope"),
    ("GET", "/api/v1/executions/nope/progress"),
    ("POST", "/api/v1/executions/nope/cancel"),
    ("GET", "/api/v1/executions/nope/events"),
    ("GET", "/api/v1/pipelines"),
    ("GET", "/api/v1/pipelines/quick"),
    ("GET", "/schema/openapi.json"),
]


@pytest.fixture
async def secured(start_server: Any) -> Any:
    return await start_server(token=TOKEN)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["none", "wrong", "no-scheme", "basic", "longer"],
)
async def test_missing_or_wrong_token_is_401_problem(
    secured: Any, method: str, path: str, headers: dict[str, str]
) -> None:
    async with secured.client(auth=False) as client:
        body = {"pipeline": "quick"} if method == "POST" else None
        response = await client.request(method, path, json=body, headers=headers)
    secured.problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/api/v1/nope"),
        ("DELETE", "/api/v1/executions"),
        ("POST", "/health"),
        ("GET", "/schema"),
        ("GET", "/schema/swagger"),
        ("GET", "/schema/nope"),
        ("GET", "/api/v1/executions/ws"),
    ],
)
async def test_no_path_answers_without_the_token(secured: Any, method: str, path: str) -> None:
    """Unknown paths and methods too: nothing tells a stranger which routes exist."""
    async with secured.client(auth=False) as client:
        response = await client.request(method, path)
    secured.problem(response, 401)


async def test_with_the_token_unknown_paths_and_methods_are_problems(secured: Any) -> None:
    secured.problem(await secured.http.get("/api/v1/nope"), 404)
    secured.problem(await secured.http.delete("/api/v1/executions"), 405)


async def test_http_does_not_take_the_token_from_the_query(secured: Any) -> None:
    """Only WebSockets, which browsers cannot give headers, read ?token= (URLs end up in logs)."""
    async with secured.client(auth=False) as client:
        response = await client.get("/api/v1/pipelines", params={"token": TOKEN})
    secured.problem(response, 401)


async def test_nothing_happens_for_an_unauthorised_start(secured: Any) -> None:
    async with secured.client(auth=False) as client:
        response = await client.post("/api/v1/executions", json={"pipeline": "quick"})
    assert response.status_code == 401
    assert (await secured.http.get("/api/v1/executions")).json()["items"] == []


async def test_right_token_works_everywhere(secured: Any) -> None:
    client = secured.http
    response = await client.post(
        "/api/v1/executions", json={"pipeline": "quick", "inputs": {"items": 1}}
    )
    assert response.status_code == 202
    execution_id = response.json()["execution_id"]
    await secured.wait_for(execution_id)
    for path in (
        "/api/v1/executions",
        f"/api/v1/executions/{execution_id}",
        f"/api/v1/executions/{execution_id}/progress",
        f"/api/v1/executions/{execution_id}/events",
        "/api/v1/pipelines",
        "/api/v1/pipelines/quick",
        "/schema/openapi.json",
    ):
        assert (await client.get(path)).status_code == 200, path
    assert (await client.post(f"/api/v1/executions/{execution_id}/cancel")).status_code == 409


async def test_health_needs_no_token(secured: Any) -> None:
    async with secured.client(auth=False) as client:
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
async def test_head_of_a_probe_needs_no_token_either(secured: Any, path: str) -> None:
    """HEAD /health answered 401 while GET /health was public."""
    async with secured.client(auth=False) as client:
        response = await client.head(path)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/v1/executions/{id}/progress/ws", "/api/v1/executions/ws"])
@pytest.mark.parametrize(
    "how",
    [{"headers": {}}, {"headers": {}, "token": "wrong"}],
    ids=["no-token", "wrong-query-token"],
)
async def test_websocket_without_the_right_token_closes_4401(
    secured: Any, path: str, how: dict[str, Any]
) -> None:
    execution_id = (await secured.submit("quick", items=1))["execution_id"]
    async with secured.ws(path.format(id=execution_id), **how) as ws:
        messages, code = await secured.read_to_close(ws)
    assert code == 4401
    assert all(m["type"] == "error" for m in messages), messages


async def test_websocket_with_wrong_header_closes_4401(secured: Any) -> None:
    execution_id = (await secured.submit("quick", items=1))["execution_id"]
    wrong = {"Authorization": "Bearer wrong"}
    async with secured.progress_ws(execution_id, headers=wrong) as ws:
        messages, code = await secured.read_to_close(ws)
    assert code == 4401
    assert all(m["type"] == "error" for m in messages), messages


@pytest.mark.parametrize("how", [{}, {"headers": {}, "token": TOKEN}], ids=["header", "query"])
async def test_websocket_with_the_token_streams(secured: Any, how: dict[str, Any]) -> None:
    execution_id = (await secured.finished("quick", items=1))["execution_id"]
    async with secured.progress_ws(execution_id, **how) as ws:
        messages, code = await secured.read_to_close(ws)
    assert [m["type"] for m in messages] == ["status", "completed"]
    assert code == 1000
    watched = (await secured.submit("quick", items=1))["execution_id"]
    async with secured.ws(f"/api/v1/executions/ws?ids={watched}", **how) as ws:
        first = await secured.recv_json(ws)
    assert first["type"] == "status" and first["execution_id"] == watched


async def test_tokens_with_any_characters_work_in_header_and_query(start_server: Any) -> None:
    """The scheme is case-insensitive; the query token is URL-decoded."""
    token = "p@ss word+/&=?%"
    server = await start_server(token=token)
    async with server.client(auth=False) as client:
        response = await client.get(
            "/api/v1/pipelines", headers={"Authorization": f"bearer {token}"}
        )
    assert response.status_code == 200
    execution_id = (await server.finished("quick", items=1))["execution_id"]
    async with server.progress_ws(execution_id, headers={}, token=quote(token, safe="")) as ws:
        messages, code = await server.read_to_close(ws)
    assert [m["type"] for m in messages] == ["status", "completed"]
    assert code == 1000


@pytest.mark.parametrize("token", ["", "  ", " padded", "new\nline"])
def test_create_app_refuses_a_token_that_cannot_work(token: str) -> None:
    """An empty token used to serve without authentication, silently."""
    with pytest.raises(ValueError, match="the token"):
        create_app(make_engine(), token=token)
