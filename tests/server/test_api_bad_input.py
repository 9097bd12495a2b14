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


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"pipeline": "\xff"}', id="0xff-in-a-string"),
        pytest.param(b'{"pipeline": "quick", "inputs": {"items\xc3": 1}}', id="truncated-sequence"),
        pytest.param(b'{"pipeline": "\xc0\xaf"}', id="overlong"),
        pytest.param(b'{"pipeline": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'\xff{"pipeline": "quick"}', id="before-the-json"),
    ],
)
async def test_a_body_that_is_not_utf8_is_400_not_500(server: Any, body: bytes) -> None:
    response = await server.http.post("/api/v1/executions", content=body, headers=JSON)
    problem = server.problem(response, 400)
    assert "not valid UTF-8" in problem["detail"], problem
    assert await count_executions(server) == 0


def nested(depth: int) -> bytes:
    """A start request whose body nests arrays and objects `depth` levels deep in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)  # the body and `inputs` are two levels
    return f'{{"pipeline": "quick", "inputs": {{"items": {inner}}}}}'.encode()


@pytest.mark.parametrize("depth", [65, 200, 1_000, 100_000])
async def test_a_body_nested_too_deep_is_400_naming_the_limit(server: Any, depth: int) -> None:
    response = await server.http.post("/api/v1/executions", content=nested(depth), headers=JSON)
    problem = server.problem(response, 400)
    assert "more than 64 levels deep" in problem["detail"], problem
    assert await count_executions(server) == 0


async def test_a_body_at_the_depth_limit_is_read(server: Any) -> None:
    response = await server.http.post("/api/v1/executions", content=nested(64), headers=JSON)
    problem = server.problem(response, 422)  # read and validated: `items` wants an int
    assert problem["errors"][0]["field"] == "items"
    wide = {"pipeline": "demo", "inputs": {"steps": 1, "fail_at_step": None}}
    response = await server.http.post("/api/v1/executions", json=wide)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a web page on another site can send without a preflight
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        None,
    ],
)
async def test_a_body_that_is_not_declared_json_is_415(
    server: Any, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await server.http.post(
        "/api/v1/executions", content=b'{"pipeline": "quick"}', headers=headers
    )
    problem = server.problem(response, 415)
    assert "Content-Type: application/json" in problem["detail"], problem
    assert await count_executions(server) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/x+json",
    ],
)
async def test_json_content_types_are_accepted(server: Any, content_type: str) -> None:
    response = await server.http.post(
        "/api/v1/executions",
        content=b'{"pipeline": "quick", "inputs": {"items": 1}}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 202, response.text


async def test_a_422_stays_small_however_many_fields_are_bad(server: Any) -> None:
    """1 MiB of unknown inputs used to get a 422 of 8.9 MB: every field, every message."""
    inputs: dict[str, Any] = {f"k{i}": 0 for i in range(80_000)}
    inputs["items"] = "many"  # a declared input with the wrong type: listed before the rest
    body = json.dumps({"pipeline": "chatty", "inputs": inputs}).encode()
    assert 900_000 < len(body) < 1_048_576
    response = await server.http.post("/api/v1/executions", content=body, headers=JSON)
    problem = server.problem(response, 422)
    assert len(response.content) < 10_000, len(response.content)
    fields = [e["field"] for e in problem["errors"]]
    assert len(fields) == 20
    assert set(fields[:2]) == {"items", "gate_name"}  # gate_name is missing
    assert "and 79982 more" in problem["detail"], problem["detail"]
    assert await count_executions(server) == 0


async def test_long_names_and_messages_are_clipped(server: Any) -> None:
    huge = "k" * 200_000
    response = await server.http.post(
        "/api/v1/executions", json={"pipeline": "quick", "inputs": {huge: 1}}
    )
    problem = server.problem(response, 422)
    assert len(response.content) < 2_000
    assert problem["errors"][0]["field"].startswith("kkk")
    assert problem["errors"][0]["field"].endswith("…")
    for body in ({"pipeline": huge}, {"pipeline": "quick", huge: 1}, {"pipeline": [huge]}):
        response = await server.http.post("/api/v1/executions", json=body)
        assert response.status_code in (400, 404), response.text[:200]
        assert len(response.content) < 3_000, (body.keys(), len(response.content))
        server.problem(response, response.status_code)
