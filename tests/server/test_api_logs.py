"""Captured logs over HTTP, and on the WebSockets only for clients that ask."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepstream import Engine, Pipeline, Progress

pytestmark = pytest.mark.anyio


def _talking() -> Pipeline:
    p = Pipeline("talking")

    @p.step
    def say(progress: Progress, lines: int = 3) -> int:
        for i in range(lines):
            print(f"line {i}")
        return lines

    return p


async def test_logs_route_pages_by_line_number(start_server: Any) -> None:
    engine = Engine(load_entrypoints=False)
    engine.add_pipeline(_talking())
    server = await start_server(engine=engine)
    execution_id = (await server.submit("talking", lines=5))["execution_id"]
    await server.wait_for(execution_id, "completed")
    page = (await server.http.get(f"/api/v1/executions/{execution_id}/logs")).json()
    assert [line["message"] for line in page["lines"]] == [f"line {i}" for i in range(5)]
    assert page["lines"][0] == {**page["lines"][0], "n": 1, "stream": "stdout", "step": "say"}
    assert page["next_after"] == 5
    later = await server.http.get(f"/api/v1/executions/{execution_id}/logs", params={"after": 3})
    assert [line["n"] for line in later.json()["lines"]] == [4, 5]
    missing = await server.http.get("/api/v1/executions/exec_nope/logs")
    server.problem(missing, 404)


async def test_streams_carry_log_messages_only_when_asked(start_server: Any) -> None:
    engine = Engine(load_entrypoints=False)
    engine.add_pipeline(_talking())
    server = await start_server(engine=engine)
    execution_id = (await server.submit("talking", lines=2))["execution_id"]
    await server.wait_for(execution_id, "completed")
    async with server.progress_ws(execution_id, "?logs=1") as ws:
        asked, _ = await server.read_to_close(ws)
    async with server.progress_ws(execution_id) as ws:
        seed, _ = await server.read_to_close(ws)
    assert [m["type"] for m in asked] == ["status", "log", "completed"]
    assert [line["message"] for line in asked[1]["lines"]] == ["line 0", "line 1"]
    assert [m["type"] for m in seed] == ["status", "completed"]
    assert json.dumps(seed).count('"log"') == 0
