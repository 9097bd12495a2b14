"""The execution routes: start, read, list, progress, events; the shapes clients rely on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

RECORD_KEYS = {
    "execution_id",
    "pipeline",
    "status",
    "progress",
    "inputs",
    "created_at",
    "steps",
    "started_at",
    "finished_at",
    "outputs",
    "error",
    "last_seq",
}
SEED_PROGRESS_KEYS = {"current_step", "total_steps", "percentage", "current_step_name"}


async def test_start_returns_202_record_and_location(server: Any) -> None:
    response = await server.http.post(
        "/api/v1/executions", json={"pipeline": "quick", "inputs": {"items": 4}}
    )
    assert response.status_code == 202, response.text
    record = response.json()
    assert record.keys() >= RECORD_KEYS
    assert record["pipeline"] == "quick"
    assert record["status"] in ("pending", "running")
    assert record["inputs"]["items"] == 4  # defaults of the other inputs may be filled in
    assert [s["name"] for s in record["steps"]] == ["count", "double", "report"]
    assert response.headers["location"] == f"/api/v1/executions/{record['execution_id']}"


async def test_inputs_are_optional(server: Any) -> None:
    response = await server.http.post("/api/v1/executions", json={"pipeline": "quick"})
    assert response.status_code == 202, response.text
    assert response.json()["inputs"] in ({}, {"items": 5, "seconds_per_item": 0.005})
    assert (await server.wait_for(response.json()["execution_id"]))["status"] == "completed"


async def test_completed_record_has_outputs_steps_and_full_progress(server: Any) -> None:
    record = await server.finished("quick", items=5)
    assert record.keys() >= RECORD_KEYS
    assert record["status"] == "completed"
    assert record["outputs"] == {"total": 10}
    assert record["error"] is None
    assert record["started_at"] and record["finished_at"]
    created, started, finished = (
        datetime.fromisoformat(record[k]) for k in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished
    progress = record["progress"]
    assert progress.keys() >= SEED_PROGRESS_KEYS
    assert progress["percentage"] == 100.0
    assert progress["total_steps"] == 3
    assert progress["current_step"] == 2
    assert progress["current_step_name"] == "report"
    assert [(s["name"], s["index"], s["status"], s["weight"]) for s in record["steps"]] == [
        ("count", 0, "completed", 1.0),
        ("double", 1, "completed", 2.0),
        ("report", 2, "completed", 1.0),
    ]
    assert record["steps"][0]["items_done"] == record["steps"][0]["items_total"] == 5
    assert all(s["duration_seconds"] >= 0 and s["started_at"] for s in record["steps"])
    assert record["last_seq"] == (await server.events(record["execution_id"]))[-1]["seq"]


async def test_failed_record_names_step_type_and_message(server: Any) -> None:
    record = await server.finished("failing", n=7)
    assert record["status"] == "failed"
    assert record["outputs"] is None
    error = record["error"]
    assert error["step"] == "explode"
    assert error["type"] == "ValueError"
    assert error["message"] == "cannot handle 7"
    assert "ValueError" in error["traceback"]
    assert [s["status"] for s in record["steps"]] == ["completed", "failed"]


async def test_demo_pipelines_run_and_fail_on_request(server: Any) -> None:
    fast = {"seconds_per_step": 0.02, "items_per_step": 4}
    sync_id = (await server.submit("demo", **fast))["execution_id"]
    async_id = (await server.submit("demo_async", **fast))["execution_id"]
    failing_id = (await server.submit("demo", fail_at_step=1, **fast))["execution_id"]
    for execution_id in (sync_id, async_id):
        record = await server.wait_for(execution_id)
        assert record["status"] == "completed", record
        assert len(record["steps"]) == 5
        assert record["progress"]["percentage"] == 100.0
    failed = await server.wait_for(failing_id)
    assert failed["status"] == "failed"
    assert failed["error"]["step"] == failed["steps"][1]["name"]


@pytest.mark.parametrize("steps", [1, 3, 7])
async def test_the_demo_runs_as_many_steps_as_asked(server: Any, steps: int) -> None:
    record = await server.finished(
        "demo_async", steps=steps, seconds_per_step=0.01, items_per_step=2
    )
    assert record["status"] == "completed", record
    assert len(record["steps"]) == steps
    assert record["progress"]["total_steps"] == steps
    assert record["outputs"] == {"steps": steps, "items": steps * 2}


async def test_demo_limits_are_422_listing_each_field(server: Any) -> None:
    response = await server.http.post(
        "/api/v1/executions",
        json={"pipeline": "demo", "inputs": {"steps": 0, "items_per_step": 0}},
    )
    body = server.problem(response, 422)
    schema = (await server.http.get("/api/v1/pipelines/demo")).json()["input_schema"]
    assert {e["field"] for e in body["errors"]} == {"steps", "items_per_step"}
    assert schema["properties"]["steps"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 20,
        "default": 5,
    }


async def test_get_unknown_execution_is_404_problem(server: Any) -> None:
    body = server.problem(await server.http.get("/api/v1/executions/nope"), 404)
    assert "nope" in body["detail"]


async def test_progress_204_while_pending_200_while_running_kept_when_finished(
    start_server: Any,
) -> None:
    server = await start_server(max_concurrent=1)
    client = server.http
    gate = server.new_gate()
    blocker = (await server.submit("held", gate_name=gate))["execution_id"]
    waiting = (await server.submit("quick", items=3))["execution_id"]
    await server.wait_for(blocker, "running")
    pending = await client.get(f"/api/v1/executions/{waiting}/progress")
    assert pending.status_code == 204
    assert pending.content == b""

    running = await client.get(f"/api/v1/executions/{blocker}/progress")
    assert running.status_code == 200
    progress = running.json()
    assert progress.keys() >= SEED_PROGRESS_KEYS
    assert progress["current_step"] == 0
    assert progress["total_steps"] == 2
    assert progress["current_step_name"] == "wait_for_gate"
    assert 0.0 <= progress["percentage"] < 100.0

    server.open_gate(gate)
    await server.wait_for(waiting)
    for execution_id in (blocker, waiting):
        done = await client.get(f"/api/v1/executions/{execution_id}/progress")
        assert done.status_code == 200
        assert done.json()["percentage"] == 100.0


async def test_failed_execution_keeps_its_last_progress(server: Any) -> None:
    execution_id = (await server.finished("failing"))["execution_id"]
    response = await server.http.get(f"/api/v1/executions/{execution_id}/progress")
    assert response.status_code == 200
    assert response.json()["current_step_name"] == "explode"
    assert response.json()["percentage"] < 100.0


async def test_progress_of_unknown_execution_is_404_problem(server: Any) -> None:
    server.problem(await server.http.get("/api/v1/executions/nope/progress"), 404)


async def test_events_are_the_ordered_log_and_after_slices_it(server: Any) -> None:
    client = server.http
    execution_id = (await server.finished("quick", items=3))["execution_id"]
    response = await client.get(f"/api/v1/executions/{execution_id}/events")
    assert response.status_code == 200
    body = response.json()
    events = body["events"]
    seqs = [e["seq"] for e in events]
    assert body["execution_id"] == execution_id
    assert seqs == sorted(set(seqs)) and seqs[:2] == [1, 2]
    assert body["last_seq"] == seqs[-1] == (await server.record(execution_id))["last_seq"]
    assert all(e["execution_id"] == execution_id for e in events)
    assert events[0]["type"] == "status" and events[0]["status"] == "pending"
    assert events[1]["type"] == "started"
    # Between lifecycle events the log keeps only the latest progress; the record keeps
    # each step's state.
    assert [e["type"] for e in events[2:-1]] == ["progress"]
    assert events[-1]["type"] == "completed"
    assert events[-1]["outputs"] == {"total": 6}
    steps = (await server.record(execution_id))["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [
        ("count", "completed"),
        ("double", "completed"),
        ("report", "completed"),
    ]

    url = f"/api/v1/executions/{execution_id}/events"
    tail = (await client.get(url, params={"after": 3})).json()
    assert tail["events"] == [e for e in events if e["seq"] > 3]
    assert tail["last_seq"] == body["last_seq"]
    beyond = (await client.get(url, params={"after": body["last_seq"]})).json()
    assert beyond["events"] == []


async def test_events_bad_after_is_400_and_unknown_404(server: Any) -> None:
    execution_id = (await server.submit("quick"))["execution_id"]
    response = await server.http.get(
        f"/api/v1/executions/{execution_id}/events", params={"after": "soon"}
    )
    body = server.problem(response, 400)
    assert "after" in body["detail"]
    server.problem(await server.http.get("/api/v1/executions/nope/events"), 404)


async def test_list_is_newest_first_with_cursor_pages(server: Any) -> None:
    client = server.http
    ids = [(await server.submit("quick", items=1))["execution_id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "pipeline": "quick"}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/api/v1/executions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [r["execution_id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "next_cursor never ran out"
    assert seen == ids[::-1]
    assert pages == 3

    default = (await client.get("/api/v1/executions")).json()
    assert [r["execution_id"] for r in default["items"]] == ids[::-1]
    assert default["next_cursor"] is None
    assert default["items"][0].keys() >= RECORD_KEYS


async def test_list_filters_by_status_and_pipeline(server: Any) -> None:
    gate = server.new_gate()
    running = (await server.submit("held", gate_name=gate))["execution_id"]
    done = (await server.submit("quick", items=1))["execution_id"]
    await server.wait_for(running, "running")
    await server.wait_for(done)

    async def listed(**params: str) -> list[str]:
        response = await server.http.get("/api/v1/executions", params=params)
        assert response.status_code == 200, response.text
        return [r["execution_id"] for r in response.json()["items"]]

    assert await listed(status="running") == [running]
    assert await listed(status="completed") == [done]
    assert await listed(pipeline="held") == [running]
    assert await listed(pipeline="quick", status="running") == []
    assert await listed(status="failed") == []
    server.open_gate(gate)


async def test_list_rejects_bad_status_and_limit(server: Any) -> None:
    client = server.http
    body = server.problem(await client.get("/api/v1/executions", params={"status": "done"}), 400)
    assert "status" in body["detail"]
    for limit in ("0", "201", "-1", "many"):
        response = await client.get("/api/v1/executions", params={"limit": limit})
        body = server.problem(response, 400)
        assert "limit" in body["detail"], body
    assert (await client.get("/api/v1/executions", params={"limit": 200})).status_code == 200
    assert (await client.get("/api/v1/executions", params={"limit": 1})).status_code == 200


async def test_pipelines_list_and_detail(server: Any) -> None:
    client = server.http
    response = await client.get("/api/v1/pipelines")
    assert response.status_code == 200
    items = {p["name"]: p for p in response.json()["items"]}
    assert {"demo", "demo_async", "quick", "held", "failing"} <= items.keys()
    for pipeline in items.values():
        assert {"name", "description", "steps", "input_schema"} <= pipeline.keys()
        assert pipeline["input_schema"]["type"] == "object"

    quick = await client.get("/api/v1/pipelines/quick")
    assert quick.status_code == 200
    body = quick.json()
    assert body["description"] == "Three sync steps counting items; finishes fast"
    assert body["steps"] == [
        {"name": "count", "weight": 1.0, "upstream": []},
        {"name": "double", "weight": 2.0, "upstream": ["count"]},
        {"name": "report", "weight": 1.0, "upstream": ["double"]},
    ]
    assert body["outputs"] is None
    assert body["input_schema"]["properties"]["items"] == {"type": "integer", "default": 5}
    assert body == items["quick"]

    demo = (await client.get("/api/v1/pipelines/demo")).json()
    assert len(demo["steps"]) == 5
    assert {"seconds_per_step", "items_per_step", "fail_at_step"} <= set(
        demo["input_schema"]["properties"]
    )
    assert not demo["input_schema"].get("required")

    body = server.problem(await client.get("/api/v1/pipelines/nope"), 404)
    assert "nope" in body["detail"]


async def test_health_is_ok(server: Any) -> None:
    response = await server.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
