"""Bad requests get problem details to act on; none is a 500, makes a record or hurts a run."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}

MALFORMED_BODIES = [
    pytest.param(b'{"pipeline": "quick",', "json", id="truncated-json"),
    pytest.param(b"not json at all", "json", id="not-json"),
    pytest.param(b"", "body", id="empty-body"),
    pytest.param(b"[]", "object", id="array"),
    pytest.param(b'"quick"', "object", id="string"),
    pytest.param(b"42", "object", id="number"),
    pytest.param(b"null", "object", id="null"),
    pytest.param(b"{}", "pipeline", id="missing-pipeline"),
    pytest.param(b'{"inputs": {"items": 1}}', "pipeline", id="only-inputs"),
    pytest.param(b'{"pipeline": 5}', "pipeline", id="pipeline-number"),
    pytest.param(b'{"pipeline": null}', "pipeline", id="pipeline-null"),
    pytest.param(b'{"pipeline": ["quick"]}', "pipeline", id="pipeline-array"),
]


async def count_executions(server: Any) -> int:
    response = await server.http.get("/api/v1/executions", params={"limit": 200})
    return len(response.json()["items"])


@pytest.mark.parametrize(("body", "mentions"), MALFORMED_BODIES)
async def test_malformed_start_request_is_400_problem(
    server: Any, body: bytes, mentions: str
) -> None:
    response = await server.http.post("/api/v1/executions", content=body, headers=JSON)
    problem = server.problem(response, 400)
    assert mentions in problem["detail"].lower(), problem
    assert await count_executions(server) == 0


async def test_inputs_of_the_wrong_type_are_rejected(server: Any) -> None:
    for inputs in ([1, 2], "items=3", 7):
        response = await server.http.post(
            "/api/v1/executions", json={"pipeline": "quick", "inputs": inputs}
        )
        assert response.status_code in (400, 422), response.text
        problem = server.problem(response, response.status_code)
        assert "inputs" in json.dumps(problem), problem
    assert await count_executions(server) == 0


async def test_inputs_that_do_not_fit_list_every_bad_field_at_once(server: Any) -> None:
    response = await server.http.post(
        "/api/v1/executions",
        json={"pipeline": "chatty", "inputs": {"items": "many", "colour": "red"}},
    )
    problem = server.problem(response, 422)
    errors = {e["field"]: e["message"] for e in problem["errors"]}
    assert errors.keys() == {"items", "colour", "gate_name"}
    assert "int" in errors["items"]
    assert "unknown" in errors["colour"]
    assert "missing" in errors["gate_name"]
    assert await count_executions(server) == 0


async def test_unknown_pipeline_is_404_listing_known_ones(server: Any) -> None:
    response = await server.http.post("/api/v1/executions", json={"pipeline": "nope"})
    problem = server.problem(response, 404)
    assert "nope" in problem["detail"]
    assert "quick" in problem["detail"] and "demo" in problem["detail"]
    assert await count_executions(server) == 0


async def test_oversized_body_is_413_problem(start_server: Any) -> None:
    small = await start_server(max_body_size=2_000)
    body = {"pipeline": "quick", "inputs": {"items": 1}, "padding": "x" * 3_000}
    problem = small.problem(await small.http.post("/api/v1/executions", json=body), 413)
    assert "large" in problem["detail"].lower() or "limit" in problem["detail"].lower()
    response = await small.http.post("/api/v1/executions", json={"pipeline": "quick"})
    assert response.status_code == 202


async def test_default_body_limit_is_about_a_megabyte(server: Any) -> None:
    body = json.dumps({"pipeline": "quick", "inputs": {"pad": "x" * 1_100_000}}).encode()
    server.problem(await server.http.post("/api/v1/executions", content=body, headers=JSON), 413)
    assert await count_executions(server) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing"),
        ("GET", "/nothing"),
        ("POST", "/api/v1/executions/x/y/z"),
        ("GET", "/api/v2/executions"),
    ],
)
async def test_unknown_route_is_404_problem(server: Any, method: str, path: str) -> None:
    server.problem(await server.http.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/executions"),
        ("PUT", "/health"),
        ("PATCH", "/api/v1/pipelines"),
        ("GET", "/api/v1/executions/x/cancel"),
        ("DELETE", "/api/v1/executions/x"),
    ],
)
async def test_wrong_method_is_405_problem(server: Any, method: str, path: str) -> None:
    server.problem(await server.http.request(method, path), 405)


@pytest.mark.parametrize(
    "execution_id", ["a%20b", "%F0%9F%98%80", "x" * 5000, "..%2F..%2Fetc", "%00"]
)
async def test_odd_execution_ids_are_404_not_500(server: Any, execution_id: str) -> None:
    for suffix in ("", "/progress", "/events"):
        response = await server.http.get(f"/api/v1/executions/{execution_id}{suffix}")
        assert response.status_code in (400, 404), (suffix, response.status_code, response.text)
        server.problem(response, response.status_code)


async def test_bad_requests_leave_a_running_execution_alone(server: Any) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(execution_id, "running")
    client = server.http
    responses = [
        await client.post("/api/v1/executions", content=body, headers=JSON)
        for body in (
            b"{",
            b"[]",
            b'{"pipeline": 1}',
            b'{"pipeline": "nope"}',
            b'{"pipeline": "held", "inputs": {"gate_name": 3}}',
            b"x" * 2_000_000,
        )
    ]
    responses.append(await client.get("/api/v1/executions", params={"limit": "x"}))
    responses.append(await client.delete(f"/api/v1/executions/{execution_id}"))
    responses.append(await client.get(f"/api/v1/executions/{execution_id}/events?after=x"))
    statuses = [response.status_code for response in responses]
    assert statuses == [400, 400, 400, 404, 422, 413, 400, 405, 400]
    assert await count_executions(server) == 1
    assert (await server.record(execution_id))["status"] == "running"
    server.open_gate(gate)
    record = await server.wait_for(execution_id)
    assert record["status"] == "completed"
    assert record["outputs"] == {"gate": gate}
    events = await server.events(execution_id)
    assert [e["type"] for e in events if e["type"] != "progress"] == [
        "status",
        "started",
        "completed",
    ]
    assert events[-1]["seq"] == record["last_seq"]
