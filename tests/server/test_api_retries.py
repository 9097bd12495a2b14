"""Retries through the server: the record and the stream show each attempt, and a WebSocket
client that knows only the seed's message types sees nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from stepstream import Pipeline

from server_support import make_engine, test_pipelines

pytestmark = pytest.mark.anyio

SEED_TYPES = {"status", "started", "progress", "completed", "failed", "cancelled"}


def _flaky() -> Pipeline:
    p = Pipeline("flaky", description="fails once, then waits for its gate")
    tries: list[int] = []

    @p.step(retries=2, retry_delay=0.01, retry_on=(OSError,))
    def fetch(gate_name: str) -> int:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("connection reset")
        test_pipelines.gate(gate_name).wait(10)
        return len(tries)

    @p.step(retries=1)
    def broken(value: int) -> int:
        raise OSError(f"still down after {value}")

    return p


async def test_the_record_and_a_seed_websocket_show_the_attempts(
    start_server: Any,
) -> None:
    engine = make_engine()
    engine.add_pipeline(_flaky())
    server = await start_server(engine=engine)
    gate = server.new_gate()
    execution_id = (await server.submit("flaky", gate_name=gate))["execution_id"]

    async def retried() -> bool:
        return (await server.record(execution_id))["steps"][0].get("attempt") == 2

    await server.wait_until(retried, "the second attempt")
    async with server.progress_ws(execution_id) as ws:
        first = await server.recv_json(ws)
        server.open_gate(gate)
        messages, _ = await server.read_to_close(ws)
    messages.insert(0, first)
    assert first["type"] == "status" and first["status"] == "running"
    assert {m["type"] for m in messages} <= SEED_TYPES
    assert messages[-1]["type"] == "failed"

    record = await server.record(execution_id)
    assert record["status"] == "failed"
    assert record["steps"][0]["status"] == "completed"
    assert record["steps"][0]["attempt"] == 2
    assert record["steps"][1]["attempt"] == 2
    assert record["error"]["attempts"] == 2
    assert record["error"]["message"] == "still down after 2"
    changes = [
        (step["index"], step.get("attempt"), step["status"])
        for m in messages
        if m["type"] == "progress"
        for step in [*m.get("steps", []), *([m["step"]] if m.get("step") else [])]
    ]
    # A slow reader may get a step's changes coalesced, but never loses its last state.
    assert {(0, 2, "completed"), (1, 2, "failed")} <= set(changes)
