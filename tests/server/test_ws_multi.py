"""The multi-execution WebSocket: every execution (new ones too) or only those named by ?ids=."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest

from cli_support import assert_matches_log

pytestmark = pytest.mark.anyio

TERMINAL = {"completed", "failed", "cancelled"}


async def read_until_finished(
    server: Any, ws: Any, execution_ids: set[str]
) -> list[dict[str, Any]]:
    """Messages until each of `execution_ids` has sent its terminal message."""
    messages: list[dict[str, Any]] = []
    waiting = set(execution_ids)
    while waiting:
        message = await server.recv_json(ws)
        messages.append(message)
        if message["type"] in TERMINAL:
            waiting.discard(message["execution_id"])
    return messages


async def assert_still_watching(server: Any) -> None:
    """Once the server has nothing left to do, it still holds the one watch: it kept it open.

    In-process there is no ping to prove that with: ASGI carries no pings to the app.
    """
    await anyio.wait_all_tasks_blocked()
    assert server.subscribers() == 1, "the server ended the watch"


def by_execution(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        grouped[message["execution_id"]].append(message)
    return grouped


async def test_watching_everything_shows_unfinished_ones_then_new_ones(server: Any) -> None:
    gate = server.new_gate()
    finished = (await server.finished("quick", items=1))["execution_id"]
    running = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(running, "running")
    async with server.ws("/api/v1/executions/ws") as ws:
        first = await server.recv_json(ws)
        assert first["type"] == "status"
        assert first["execution_id"] == running
        assert first["status"] == "running"
        assert first["pipeline"] == "held"

        created = (await server.submit("quick", items=3))["execution_id"]
        server.open_gate(gate)
        messages = await read_until_finished(server, ws, {created, running})
        await assert_still_watching(server)

    grouped = by_execution(messages)
    assert finished not in grouped
    assert set(grouped) == {created, running}
    new = grouped[created]
    assert new[0]["type"] == "status" and new[0]["status"] == "pending" and new[0]["seq"] == 1
    assert new[1]["type"] == "started"
    assert new[-1]["type"] == "completed" and new[-1]["outputs"] == {"total": 6}
    assert grouped[running][-1]["type"] == "completed"
    assert_matches_log(new, await server.events(created))
    assert_matches_log(grouped[running][1:], await server.events(running), after=first["seq"])


async def test_ids_filter_lists_statuses_errors_and_only_those_events(server: Any) -> None:
    gate = server.new_gate()
    done = (await server.finished("quick", items=1))["execution_id"]
    watched = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(watched, "running")
    async with server.ws(f"/api/v1/executions/ws?ids={watched},nope,{done}") as ws:
        initial = {}
        for _ in range(3):
            message = await server.recv_json(ws)
            initial[message["execution_id"]] = message
        assert initial.keys() == {watched, "nope", done}
        assert initial[watched]["type"] == "status" and initial[watched]["status"] == "running"
        assert initial[done]["type"] == "status" and initial[done]["status"] == "completed"
        assert initial["nope"]["type"] == "error" and "nope" in initial["nope"]["message"]

        await server.finished("quick", items=2)
        server.open_gate(gate)
        messages = await read_until_finished(server, ws, {watched})
        await assert_still_watching(server)
    assert {m["execution_id"] for m in messages} == {watched}, "an unwatched execution leaked in"
    assert messages[-1]["type"] == "completed"
    assert messages[-1]["outputs"] == {"gate": gate}


async def test_watching_too_many_ids_is_refused_with_4400(server: Any) -> None:
    """Each listed id costs a store read on connect; a URL of thousands was taken whole."""
    ids = ",".join(f"exec_{n:026d}" for n in range(1_001))
    async with server.ws(f"/api/v1/executions/ws?ids={ids}") as ws:
        messages, code = await server.read_to_close(ws)
    assert code == 4400
    assert [m["type"] for m in messages] == ["error"]
    assert "at most 1000" in messages[0]["message"]
    within = ",".join(f"exec_{n:026d}" for n in range(1_000))
    async with server.ws(f"/api/v1/executions/ws?ids={within}") as ws:
        first = await server.recv_json(ws)
    assert first["type"] == "error" and "exec_" in first["execution_id"]  # unknown, listed
