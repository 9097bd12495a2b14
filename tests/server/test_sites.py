"""Other web sites cannot drive the server: Host and Origin checks, CORS for allowed origins.

Any page a user opens can send requests to a server on their machine. These
requests used to work: a `text/plain` POST from a foreign Origin started an
execution, a foreign Host (DNS rebinding) was served, and a WebSocket from a
foreign Origin streamed every execution.
"""

from __future__ import annotations

from typing import Any

import pytest
from httpx_ws import WebSocketDisconnect

from stepstream_server.app import create_app
from stepstream_server.sites import LOOPBACK_HOSTS

from server_support import make_engine

pytestmark = pytest.mark.anyio

EVIL = "https://evil.example"
OWN = "http://testserver"  # the in-process client's base URL: the server's own origin
APP = "https://app.example.com"
START = {"pipeline": "quick", "inputs": {"items": 1}}


async def count_executions(server: Any) -> int:
    return len(server.engine.list(limit=200))


async def ws_outcome(server: Any, path: str, headers: dict[str, str]) -> tuple[list[Any], int]:
    """The messages and close code of a WebSocket opened with these headers."""
    async with server.ws(path, headers={**server.headers, **headers}) as ws:
        return await server.read_to_close(ws)


# -- Host ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"]
)
@pytest.mark.parametrize("path", ["/health", "/api/v1/pipelines", "/", "/static/app.js"])
async def test_a_foreign_host_is_403_everywhere(server: Any, host: str, path: str) -> None:
    response = await server.http.get(path, headers={"Host": host})
    problem = server.problem(response, 403)
    assert problem["type"] == "host-not-allowed"
    assert "--allow-host" in problem["detail"]


@pytest.mark.parametrize("host", ["", "a b", "exa mple.com", "x@y", "host:99999", "[zz]"])
async def test_a_malformed_host_is_400(server: Any, host: str) -> None:
    response = await server.http.get("/health", headers={"Host": host})
    assert server.problem(response, 400)["type"] == "host-not-allowed"


async def test_a_foreign_host_cannot_start_anything_even_with_the_token(
    start_server: Any,
) -> None:
    server = await start_server(token="t0ken")
    response = await server.http.post("/api/v1/executions", json=START, headers={"Host": "evil"})
    server.problem(response, 403)
    assert await count_executions(server) == 0


async def test_a_foreign_host_websocket_is_closed_4403(server: Any) -> None:
    execution_id = (await server.finished("quick", items=1))["execution_id"]
    messages, code = await ws_outcome(
        server, f"/api/v1/executions/{execution_id}/progress/ws", {"Host": "evil.example"}
    )
    assert (messages, code) == ([], 4403)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8000", "localhost.", "127.0.0.1:1", "[::1]", "[::1]:8000"]
)
async def test_loopback_names_with_any_port_are_allowed_by_default(
    start_server: Any, host: str
) -> None:
    server = await start_server(allowed_hosts=LOOPBACK_HOSTS)  # create_app's default
    response = await server.http.get("/health", headers={"Host": host})
    assert response.status_code == 200, response.text
    refused = await server.http.get("/health")  # `testserver` is not a loopback name
    server.problem(refused, 403)


async def test_allowed_hosts_with_and_without_port_and_the_wildcard(start_server: Any) -> None:
    server = await start_server(allowed_hosts=["example.com:8443", "Other.Example", "::1"])
    for host, status in [
        ("example.com:8443", 200),
        ("example.com", 403),
        ("example.com:80", 403),
        ("other.example:1234", 200),
        ("[::1]:9", 200),
        ("localhost", 403),
    ]:
        response = await server.http.get("/health", headers={"Host": host})
        assert response.status_code == status, (host, response.text)
    anything = await start_server(allowed_hosts=["*"])
    assert (await anything.http.get("/health", headers={"Host": "a.b"})).status_code == 200


@pytest.mark.parametrize(
    ("hosts", "origins"),
    [(["a b"], []), (["http://x"], []), ([], ["*"]), ([], ["app.example.com"]), ([], ["x://y"])],
)
def test_bad_host_or_origin_entries_are_refused(hosts: list[str], origins: list[str]) -> None:
    with pytest.raises(ValueError, match="is not a"):
        create_app(make_engine(), allowed_hosts=hosts, allowed_origins=origins)


# -- Origin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"pipeline": "quick"}'),
        ("text/plain", b'{"pipeline": "quick"}'),  # no preflight: what a page sends
        ("application/x-www-form-urlencoded", b"pipeline=quick"),
    ],
)
@pytest.mark.parametrize("origin", [EVIL, "null", "http://testserver.evil.example"])
async def test_a_post_from_a_foreign_origin_starts_nothing(
    server: Any, content_type: str, body: bytes, origin: str
) -> None:
    response = await server.http.post(
        "/api/v1/executions", content=body, headers={"Origin": origin, "content-type": content_type}
    )
    problem = server.problem(response, 403)
    assert problem["type"] == "origin-not-allowed" and "--allow-origin" in problem["detail"]
    assert "access-control-allow-origin" not in response.headers
    assert await count_executions(server) == 0


async def test_a_cancel_from_a_foreign_origin_cancels_nothing(server: Any) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    response = await server.http.post(
        f"/api/v1/executions/{execution_id}/cancel", headers={"Origin": EVIL}
    )
    server.problem(response, 403)
    assert (await server.record(execution_id))["status"] in ("pending", "running")
    server.open_gate(gate)


async def test_a_get_from_a_foreign_origin_gets_no_cors_headers(server: Any) -> None:
    response = await server.http.get("/api/v1/executions", headers={"Origin": EVIL})
    assert response.status_code == 200  # the browser does not let the page read it
    assert "access-control-allow-origin" not in response.headers


async def test_the_servers_own_pages_and_clients_without_origin_work(server: Any) -> None:
    own = await server.http.post("/api/v1/executions", json=START, headers={"Origin": OWN})
    assert own.status_code == 202, own.text
    plain = await server.http.post("/api/v1/executions", json=START)
    assert plain.status_code == 202
    execution_id = own.json()["execution_id"]
    for headers in ({"Origin": OWN}, {}):
        messages, code = await ws_outcome(
            server, f"/api/v1/executions/{execution_id}/progress/ws", headers
        )
        assert code == 1000 and messages[0]["type"] == "status"


@pytest.mark.parametrize("path", ["/api/v1/executions/ws", "/api/v1/executions/{id}/progress/ws"])
@pytest.mark.parametrize("origin", [EVIL, "null"])
async def test_a_websocket_from_a_foreign_origin_is_closed_4403(
    start_server: Any, path: str, origin: str
) -> None:
    server = await start_server(token="t0ken")  # the token does not replace the check
    execution_id = (await server.finished("quick", items=1))["execution_id"]
    try:
        messages, code = await ws_outcome(
            server, path.format(id=execution_id) + "?token=t0ken", {"Origin": origin}
        )
    except WebSocketDisconnect as closed:  # closed before the first read
        messages, code = [], closed.code
    assert (messages, code) == ([], 4403)


# -- allowed origins: CORS ----------------------------------------------------------


async def test_an_allowed_origin_gets_cors_and_preflights_need_no_token(
    start_server: Any,
) -> None:
    server = await start_server(token="t0ken", allowed_origins=[APP + "/"])
    async with server.client(auth=False) as client:
        preflight = await client.options(
            "/api/v1/executions",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "idempotency-key" in preflight.headers["access-control-allow-headers"]
        refused = await client.get("/api/v1/executions", headers={"Origin": APP})
        assert refused.status_code == 401  # the token is still needed, and the page can see why
        assert refused.headers["access-control-allow-origin"] == APP
    started = await server.http.post("/api/v1/executions", json=START, headers={"Origin": APP})
    assert started.status_code == 202
    assert started.headers["access-control-allow-origin"] == APP
    assert "Location" in started.headers["access-control-expose-headers"]
    assert "Origin" in started.headers["vary"]
    execution_id = started.json()["execution_id"]
    messages, code = await ws_outcome(
        server, f"/api/v1/executions/{execution_id}/progress/ws", {"Origin": APP}
    )
    assert code == 1000 and messages[0]["type"] == "status"
    other = await server.http.post("/api/v1/executions", json=START, headers={"Origin": EVIL})
    server.problem(other, 403)


async def test_a_preflight_from_a_foreign_origin_is_403(start_server: Any) -> None:
    server = await start_server(allowed_origins=[APP])
    response = await server.http.options(
        "/api/v1/executions", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    server.problem(response, 403)
    assert "access-control-allow-origin" not in response.headers
