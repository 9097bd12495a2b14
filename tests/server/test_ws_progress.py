"""The per-execution WebSocket: message order, finished and unknown executions, ?after= resume."""

from __future__ import annotations

from typing import Any

import pytest

from cli_support import assert_matches_log

pytestmark = pytest.mark.anyio

TERMINAL = {"completed", "failed", "cancelled"}


def check_stream(messages: list[dict[str, Any]], execution_id: str) -> None:
    """Shape every stream shares: ids, increasing seqs, exactly one terminal message, last."""
    assert all(m["execution_id"] == execution_id for m in messages), messages
    assert all(isinstance(m["seq"], int) for m in messages)
    seqs = [m["seq"] for m in messages[1:]]
    assert seqs == sorted(set(seqs)), f"seqs out of order or repeated: {seqs}"
    assert [m["type"] in TERMINAL for m in messages].count(True) == 1
    assert messages[-1]["type"] in TERMINAL


async def test_running_execution_streams_status_started_progress_terminal(
    start_server: Any,
) -> None:
    server = await start_server(max_concurrent=1)
    gate = server.new_gate()
    await server.submit("held", gate_name=gate)
    execution_id = (await server.submit("quick", items=6))["execution_id"]
    async with server.progress_ws(execution_id) as ws:
        status = await server.recv_json(ws)
        assert isinstance(status.pop("seq"), int)
        assert status.pop("progress") is None  # the key is there, null while pending
        assert status == {
            "type": "status",
            "execution_id": execution_id,
            "status": "pending",
            "pipeline": "quick",
        }
        server.open_gate(gate)
        messages, code = await server.read_to_close(ws)
    assert code == 1000
    check_stream([{**status, "seq": 1}, *messages], execution_id)
    types = [m["type"] for m in messages]
    assert types[0] == "started" and messages[0]["seq"] == 2
    assert types[-1] == "completed"
    assert set(types[1:-1]) == {"progress"}
    percentages = [m["progress"]["percentage"] for m in messages]
    assert percentages == sorted(percentages), "percentage went backwards"
    completed = messages[-1]
    assert completed["outputs"] == {"total": 12}
    assert completed["progress"]["percentage"] == 100.0
    log = await server.events(execution_id)
    assert_matches_log(messages, log, after=1)
    assert completed == log[-1]


async def test_status_of_a_running_execution_carries_its_progress(server: Any) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(execution_id, "running")
    async with server.progress_ws(execution_id) as ws:
        status = await server.recv_json(ws)
        assert status["type"] == "status"
        assert status["status"] == "running"
        assert status["pipeline"] == "held"
        assert status["progress"]["current_step_name"] == "wait_for_gate"
        assert status["progress"]["total_steps"] == 2
        server.open_gate(gate)
        messages, code = await server.read_to_close(ws)
    assert messages[-1]["type"] == "completed"
    assert messages[-1]["outputs"] == {"gate": gate}
    assert code == 1000


@pytest.mark.parametrize(("pipeline", "terminal"), [("quick", "completed"), ("failing", "failed")])
async def test_finished_execution_gives_status_then_terminal_then_1000(
    server: Any, pipeline: str, terminal: str
) -> None:
    record = await server.finished(pipeline)
    async with server.progress_ws(record["execution_id"]) as ws:
        messages, code = await server.read_to_close(ws)
    assert code == 1000
    assert [m["type"] for m in messages] == ["status", terminal]
    assert messages[0]["status"] == terminal
    assert messages[1] == (await server.events(record["execution_id"]))[-1]
    if terminal == "completed":
        assert messages[1]["outputs"] == {"total": 10}
    else:
        assert messages[1]["error"]["step"] == "explode"
        assert messages[1]["error"]["type"] == "ValueError"
        assert messages[1]["error"]["message"] == "cannot handle 3"


async def test_failing_execution_streams_failed_with_error(server: Any) -> None:
    failing = (await server.submit("failing", n=9))["execution_id"]
    async with server.progress_ws(failing) as ws:
        messages, code = await server.read_to_close(ws)
    check_stream(messages, failing)
    assert messages[-1]["type"] == "failed"
    assert messages[-1]["error"]["message"] == "cannot handle 9"
    assert messages[-1]["error"]["step"] == "explode"
    assert code == 1000


async def test_cancelled_execution_replays_cancelled(server: Any) -> None:
    gate = server.new_gate()
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]
    await server.wait_for(execution_id, "running")
    response = await server.http.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 202
    await server.wait_for(execution_id)
    async with server.progress_ws(execution_id) as ws:
        messages, code = await server.read_to_close(ws)
    assert [m["type"] for m in messages] == ["status", "cancelled"]
    assert code == 1000


async def test_unknown_execution_gets_error_then_4404(server: Any) -> None:
    async with server.progress_ws("nope") as ws:
        messages, code = await server.read_to_close(ws)
    assert code == 4404
    assert len(messages) == 1
    error = messages[0]
    assert error["type"] == "error"
    assert error["execution_id"] == "nope"
    assert error["seq"] == 0
    assert "nope" in error["message"]


@pytest.mark.parametrize("after", ["soon", "1.5", ""])
async def test_bad_after_gets_error_then_4400(server: Any, after: str) -> None:
    execution_id = (await server.submit("quick", items=1))["execution_id"]
    async with server.progress_ws(execution_id, f"?after={after}") as ws:
        messages, code = await server.read_to_close(ws)
    assert code == 4400
    assert [m["type"] for m in messages] == ["error"]
    assert "after" in messages[0]["message"]


async def test_resume_after_a_finished_run_replays_exactly_the_missing_events(server: Any) -> None:
    execution_id = (await server.finished("quick", items=4))["execution_id"]
    log = await server.events(execution_id)
    for after in sorted({0, 1, 3, *(e["seq"] for e in log[-3:-1])}):
        async with server.progress_ws(execution_id, f"?after={after}") as ws:
            messages, code = await server.read_to_close(ws)
        assert code == 1000
        assert messages[0]["type"] == "status"
        # A resume's status is the execution as it stood at `after`, so nothing goes backwards.
        assert messages[0]["status"] == _status_at(log, after)
        percentages = [m["progress"]["percentage"] for m in messages if m.get("progress")]
        assert percentages == sorted(percentages), f"after={after}: {percentages}"
        assert messages[1:] == [e for e in log if e["seq"] > after], f"after={after}"
        assert messages[1:] == await server.events(execution_id, after=after)
        check_stream(messages, execution_id)


@pytest.mark.parametrize("beyond", [0, 1, 50])
async def test_resume_past_the_end_of_a_finished_run_gets_status_and_close(
    server: Any, beyond: int
) -> None:
    """A client that already saw the terminal event must not be left hanging on an open socket."""
    record = await server.finished("quick", items=2)
    after = record["last_seq"] + beyond
    async with server.progress_ws(record["execution_id"], f"?after={after}") as ws:
        messages, code = await server.read_to_close(ws, timeout=5)
    assert [m["type"] for m in messages] == ["status"]
    assert messages[0]["status"] == "completed"
    assert code == 1000


async def test_resume_while_running_has_no_gaps_and_no_duplicates(start_server: Any) -> None:
    server = await start_server(max_concurrent=1)
    blocker, gate = server.new_gate(), server.new_gate()
    await server.submit("held", gate_name=blocker)
    execution_id = (await server.submit("held", gate_name=gate))["execution_id"]

    async with server.progress_ws(execution_id) as ws:
        first_part = [await server.recv_json(ws)]
        assert first_part[0]["status"] == "pending"
        server.open_gate(blocker)
        while first_part[-1]["type"] != "started":
            first_part.append(await server.recv_json(ws))
    resume_from = first_part[-1]["seq"]

    # The held step reports its total once, then nothing until its gate opens: a stable log.
    async def total_reported() -> bool:
        progress = (await server.record(execution_id))["progress"] or {}
        return progress.get("items_total") == 1

    await server.wait_until(total_reported, "the held step to report its total")
    missed = await server.events(execution_id, after=resume_from)
    assert missed, "nothing was missed, so nothing would be replayed"
    async with server.progress_ws(execution_id, f"?after={resume_from}") as ws:
        status = await server.recv_json(ws)
        assert status["type"] == "status" and status["status"] == "running"
        server.open_gate(gate)
        second_part, code = await server.read_to_close(ws)
    assert code == 1000

    assert second_part[: len(missed)] == missed, "the replay is not the log after `after`"
    log = await server.events(execution_id)
    assert_matches_log(second_part, log, after=resume_from)
    assert second_part[-1]["type"] == "completed" and second_part[-1] == log[-1]
    received = [m["seq"] for m in first_part[1:]] + [m["seq"] for m in second_part]
    assert received == sorted(set(received)), "an event was delivered twice or out of order"
    lifecycle = {e["seq"] for e in log if e["type"] != "progress"} - {1}
    assert lifecycle <= set(received)


def _status_at(log: list[dict[str, Any]], after: int) -> str:
    """The status a log says an execution had once its events up to `after` happened."""
    status = "pending"
    for event in log:
        if event["seq"] > after:
            break
        status = {"status": event.get("status"), "started": "running", "progress": status}.get(
            event["type"], event["type"]
        )
    return status
