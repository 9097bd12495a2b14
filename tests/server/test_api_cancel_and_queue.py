"""Cancelling executions (sync and async steps, pending, finished) and the concurrency limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stepstream import ExecutionRecord, StepState, status_of
from stepstream.model.ids import new_execution_id

pytestmark = pytest.mark.anyio


def at(timestamp: str) -> datetime:
    """A record's ISO 8601 timestamp as a datetime, so comparisons are by time, not by text."""
    return datetime.fromisoformat(timestamp)


@pytest.mark.parametrize("pipeline", ["held", "held_async"])
async def test_cancel_while_running_ends_cancelled_and_ws_says_so(
    server: Any, pipeline: str
) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit(pipeline, gate_name=gate))["execution_id"]
    async with server.progress_ws(execution_id) as ws:
        first = await server.recv_json(ws)
        assert first["type"] == "status"
        if first["status"] == "pending":
            assert (await server.recv_json(ws))["type"] == "started"

        # `started` comes before the first step begins; cancelled in between, it never would.
        async def first_step_running() -> bool:
            return (await server.record(execution_id))["steps"][0]["status"] == "running"

        await server.wait_until(first_step_running, "the first step to start")
        response = await server.http.post(f"/api/v1/executions/{execution_id}/cancel")
        assert response.status_code == 202, response.text
        assert response.json()["execution_id"] == execution_id
        assert response.json()["status"] in ("running", "cancelled")
        messages, code = await server.read_to_close(ws)
    assert messages[-1]["type"] == "cancelled"
    assert [m["type"] for m in messages[:-1]] == ["progress"] * (len(messages) - 1)
    assert code == 1000
    record = await server.record(execution_id)
    assert record["status"] == "cancelled"
    assert record["finished_at"] is not None
    assert record["outputs"] is None
    assert record["steps"][0]["status"] == "cancelled"
    assert (await server.events(execution_id))[-1]["type"] == "cancelled"


async def test_cancel_finished_is_409_naming_its_status_and_unknown_404(server: Any) -> None:
    done = (await server.finished("quick", items=1))["execution_id"]
    failed = (await server.finished("failing"))["execution_id"]
    for execution_id, status in ((done, "completed"), (failed, "failed")):
        response = await server.http.post(f"/api/v1/executions/{execution_id}/cancel")
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["title"] and status in body["detail"], body
        # RFC 9457's `status` is the HTTP code, so the execution's travels beside it.
        assert body["status"] == 409
        assert body["execution_status"] == status, body
    server.problem(await server.http.post("/api/v1/executions/nope/cancel"), 404)
    assert (await server.record(done))["status"] == "completed"


async def test_concurrency_limit_queues_first_in_first_out(start_server: Any) -> None:
    server = await start_server(max_concurrent=1)
    gates = [server.new_gate() for _ in range(3)]
    first, second, third = [
        (await server.submit("held", gate_name=g))["execution_id"] for g in gates
    ]
    await server.wait_for(first, "running")
    assert (await server.record(second))["status"] == "pending"
    assert (await server.record(third))["status"] == "pending"
    pending = (await server.http.get("/api/v1/executions", params={"status": "pending"})).json()
    assert [r["execution_id"] for r in pending["items"]] == [third, second]

    server.open_gate(gates[1])  # the second may not finish before it has even started
    server.open_gate(gates[0])
    assert (await server.wait_for(first))["status"] == "completed"
    assert (await server.wait_for(second))["status"] == "completed"
    assert (await server.wait_for(third, "running"))["status"] == "running"
    one, two, three = [await server.record(i) for i in (first, second, third)]
    assert at(one["finished_at"]) <= at(two["started_at"])
    assert at(two["finished_at"]) <= at(three["started_at"])
    server.open_gate(gates[2])
    assert (await server.wait_for(third))["status"] == "completed"


async def test_cancel_pending_is_cancelled_at_once_and_never_runs(start_server: Any) -> None:
    server = await start_server(max_concurrent=1)
    gate = server.new_gate()
    blocker = (await server.submit("held", gate_name=gate))["execution_id"]
    queued = (await server.submit("quick", items=1))["execution_id"]
    after = (await server.submit("quick", items=1))["execution_id"]
    await server.wait_for(blocker, "running")
    response = await server.http.post(f"/api/v1/executions/{queued}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"
    server.open_gate(gate)
    assert (await server.wait_for(after))["status"] == "completed"
    record = await server.record(queued)
    assert record["status"] == "cancelled"
    assert record["started_at"] is None
    assert [e["type"] for e in await server.events(queued)] == ["status", "cancelled"]
    # It never had progress, and never will.
    progress = await server.http.get(f"/api/v1/executions/{queued}/progress")
    assert progress.status_code == 204 and progress.content == b""


async def test_shutting_down_cancels_running_executions_and_closes_streams(server: Any) -> None:
    running = (await server.submit("held", gate_name=server.new_gate()))["execution_id"]
    await server.wait_for(running, "running")
    async with server.progress_ws(running) as ws:
        assert (await server.recv_json(ws))["type"] == "status"
        await server.stop()
        messages, code = await server.read_to_close(ws)
    assert code is not None and code != 1006, "the stream was dropped, not closed"
    assert all(m["type"] == "progress" for m in messages if m["type"] != "cancelled")
    engine = server.engine
    assert engine.get(running).status == "cancelled"
    assert engine.get(running).finished_at is not None


async def test_cancelling_an_execution_this_server_does_not_run_is_409_saying_so(
    server: Any,
) -> None:
    """A record another process sharing the store made: in the store, not run here."""
    record = ExecutionRecord(
        execution_id=new_execution_id(),
        pipeline="elsewhere",
        status="pending",
        progress=None,
        inputs={},
        created_at=datetime.now(UTC),
        steps=[StepState(name="only", index=0, status="pending", weight=1.0)],
    )
    server.engine.store.append(record, status_of(record, seq=1))
    response = await server.http.post(f"/api/v1/executions/{record.execution_id}/cancel")
    body = server.problem(response, 409)
    assert body["execution_status"] == "pending"
    assert "not run by this process" in body["detail"]
