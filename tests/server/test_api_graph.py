"""Graph pipelines through the server: the pipeline route describes the graph, and a run's
record and stream show steps running side by side with the seed's fields meaningful."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from stepstream import Pipeline, Progress

from server_support import make_engine, test_pipelines

pytestmark = pytest.mark.anyio


def _branching() -> Pipeline:
    p = Pipeline("branching", description="load, then two sides at once, then join")
    both = threading.Barrier(2, timeout=10)

    @p.step
    def load(gate_name: str, n: int = 4) -> list[int]:
        return list(range(n))

    @p.step(weight=2)
    def left(load: list[int], gate_name: str, progress: Progress) -> int:
        both.wait()
        test_pipelines.gate(gate_name).wait(10)
        return sum(progress.iter(load))

    @p.step(weight=2)
    def right(load: list[int], progress: Progress) -> int:
        both.wait()
        return len(list(progress.iter(load)))

    @p.step
    def join(left: int, right: int) -> dict[str, int]:
        return {"sum": left, "count": right}

    return p


async def test_the_pipeline_route_describes_the_graph(start_server: Any) -> None:
    engine = make_engine()
    engine.add_pipeline(_branching())
    server = await start_server(engine=engine)
    async with server.client() as client:
        body = (await client.get("/api/v1/pipelines/branching")).json()
    assert [(s["name"], s["upstream"]) for s in body["steps"]] == [
        ("load", []),
        ("left", ["load"]),
        ("right", ["load"]),
        ("join", ["left", "right"]),
    ]
    assert set(body["input_schema"]["properties"]) == {"gate_name", "n"}


async def test_a_graph_run_shows_running_steps_and_finished_count(start_server: Any) -> None:
    engine = make_engine()
    engine.add_pipeline(_branching())
    server = await start_server(engine=engine)
    gate = server.new_gate()
    execution_id = (await server.submit("branching", gate_name=gate))["execution_id"]

    async def right_done() -> bool:
        steps = (await server.record(execution_id))["steps"]
        return [s["status"] for s in steps] == ["completed", "running", "completed", "pending"]

    await server.wait_until(right_done, "the right side to finish while the left one waits")
    async with server.client() as client:
        progress = (await client.get(f"/api/v1/executions/{execution_id}/progress")).json()
    assert progress["current_step"] == 2  # two steps finished
    assert progress["current_step_name"] == "left"
    assert progress["total_steps"] == 4
    assert progress["percentage"] == 50.0  # load and right: 3 of 6 weight; left has not moved

    async with server.progress_ws(execution_id) as ws:
        first = await server.recv_json(ws)
        server.open_gate(gate)
        messages, _ = await server.read_to_close(ws)
    assert first["type"] == "status"
    assert messages[-1]["type"] == "completed"
    assert messages[-1]["outputs"] == {"sum": 6, "count": 4}
    percentages = [m["progress"]["percentage"] for m in messages if m.get("progress")]
    assert percentages == sorted(percentages)
