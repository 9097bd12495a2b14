"""With a token, every route but /health wants `Authorization: Bearer`; WebSockets take ?token=."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

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
def secured(start_server: Any) -> Any:
    return start_server(token=TOKEN)


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
def test_missing_or_wrong_token_is_401_problem(
    secured: Any, method: str, path: str, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=secured.base_url, headers=headers, timeout=20) as client:
        body = {"pipeline": "quick"} if method == "POST" else None
        response = client.request(method, path, json=body)
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
def test_no_path_answers_without_the_token(secured: Any, method: str, path: str) -> None:
    """Unknown paths and methods too: nothing tells a stranger which routes exist."""
    with secured.client(auth=False) as client:
        response = client.request(method, path)
    secured.problem(response, 401)


def test_with_the_token_unknown_paths_and_methods_are_problems(secured: Any) -> None:
    with secured.client() as client:
        secured.problem(client.get("/api/v1/nope"), 404)
        secured.problem(client.delete("/api/v1/executions"), 405)


def test_http_does_not_take_the_token_from_the_query(secured: Any) -> None:
    """Only WebSockets, which browsers cannot give headers, read ?token= (URLs end up in logs)."""
    with secured.client(auth=False) as client:
        response = client.get("/api/v1/pipelines", params={"token": TOKEN})
    secured.problem(response, 401)


def test_nothing_happens_for_an_unauthorised_start(secured: Any) -> None:
    with secured.client(auth=False) as client:
        assert client.post("/api/v1/executions", json={"pipeline": "quick"}).status_code == 401
    with secured.client() as client:
        assert client.get("/api/v1/executions").json()["items"] == []


def test_right_token_works_everywhere(secured: Any) -> None:
    with secured.client() as client:
        response = client.post(
            "/api/v1/executions", json={"pipeline": "quick", "inputs": {"items": 1}}
        )
        assert response.status_code == 202
        execution_id = response.json()["execution_id"]
        secured.wait_for(execution_id)
        for path in (
            "/api/v1/executions",
            f"/api/v1/executions/{execution_id}",
            f"/api/v1/executions/{execution_id}/progress",
            f"/api/v1/executions/{execution_id}/events",
            "/api/v1/pipelines",
            "/api/v1/pipelines/quick",
            "/schema/openapi.json",
        ):
            assert client.get(path).status_code == 200, path
        assert client.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 409


def test_health_needs_no_token(secured: Any) -> None:
    with secured.client(auth=False) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def _close_code(
    secured: Any, path: str, **kwargs: Any
) -> tuple[list[dict[str, Any]], int | None]:
    """Connect, read until the server closes, return (messages, close code)."""
    try:
        async with secured.ws(path, **kwargs) as ws:
            return await secured.read_to_close(ws)
    except ConnectionClosed as exc:  # closed during the handshake's aftermath
        return [], exc.rcvd.code if exc.rcvd else None


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/api/v1/executions/{id}/progress/ws", "/api/v1/executions/ws"])
@pytest.mark.parametrize(
    "how",
    [{"header": False}, {"header": False, "token": "wrong"}],
    ids=["no-token", "wrong-query-token"],
)
async def test_websocket_without_the_right_token_closes_4401(
    secured: Any, path: str, how: dict[str, Any]
) -> None:
    execution_id = secured.submit("quick", items=1)["execution_id"]
    messages, code = await _close_code(secured, path.format(id=execution_id), **how)
    assert code == 4401
    assert all(m["type"] == "error" for m in messages), messages


@pytest.mark.anyio
async def test_websocket_with_wrong_header_closes_4401(secured: Any) -> None:
    execution_id = secured.submit("quick", items=1)["execution_id"]
    url = f"{secured.ws_url}/api/v1/executions/{execution_id}/progress/ws"
    async with connect(url, additional_headers={"Authorization": "Bearer wrong"}) as ws:
        messages, code = await secured.read_to_close(ws)
    assert code == 4401
    assert all(m["type"] == "error" for m in messages), messages


@pytest.mark.anyio
@pytest.mark.parametrize(
    "how", [{"header": True}, {"header": False, "token": TOKEN}], ids=["header", "query"]
)
async def test_websocket_with_the_token_streams(secured: Any, how: dict[str, Any]) -> None:
    execution_id = secured.wait_for(secured.submit("quick", items=1)["execution_id"])[
        "execution_id"
    ]
    async with secured.progress_ws(execution_id, **how) as ws:
        messages, code = await secured.read_to_close(ws)
    assert [m["type"] for m in messages] == ["status", "completed"]
    assert code == 1000
    watched = secured.submit("quick", items=1)["execution_id"]
    async with secured.ws(f"/api/v1/executions/ws?ids={watched}", **how) as ws:
        first = await secured.recv_json(ws)
    assert first["type"] == "status" and first["execution_id"] == watched


@pytest.mark.anyio
async def test_tokens_with_any_characters_work_in_header_and_query(start_server: Any) -> None:
    """The scheme is case-insensitive; the query token is URL-decoded."""
    token = "p@ss word+/&=?%"
    server = start_server(token=token)
    with server.client(auth=False) as client:
        response = client.get("/api/v1/pipelines", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200
    execution_id = server.wait_for(server.submit("quick", items=1)["execution_id"])["execution_id"]
    async with server.progress_ws(execution_id, header=False, token=quote(token, safe="")) as ws:
        messages, code = await server.read_to_close(ws)
    assert [m["type"] for m in messages] == ["status", "completed"]
    assert code == 1000
