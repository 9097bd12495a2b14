"""`stepstream.client` against a real `stepstream serve`: every call, its exceptions, and streams
that survive a dropped connection, a restarted server and a 1008 close.

One server serves the module (the crawl pipeline of tests/e2e/pipelines, at most
two executions at once); the tests that break connections put a TCP proxy in
front of it, and the restart test runs servers of its own on a SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from stepstream import (
    AnyEvent,
    CancelledEvent,
    CompletedEvent,
    ErrorEvent,
    ExecutionFinished,
    FailedEvent,
    InputError,
    ProgressEvent,
    ServerUnavailable,
    StartedEvent,
    StatusEvent,
    StepstreamError,
    UnknownExecution,
    UnknownPipeline,
)
from stepstream.client import AsyncClient, Client

from cli_support import PIPELINES, WAIT, Served, assert_matches_log, free_port, start_serve
from proxy_support import Proxy

CRAWL = str(PIPELINES / "crawl.py")
LONG = {"items": 2000, "pause": 0.01}  # 20 s a step: running whenever the test acts
SHORT = {"items": 3, "pause": 0.001}
PACED = {"items": 40, "pause": 0.02}  # about 2.4 s in all, with a progress event per item
TOO_FAR_BEHIND = (
    "too far behind, events were dropped: read GET /api/v1/executions, then watch again"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(
        "--store",
        "memory://",
        "--pipelines",
        CRAWL,
        "--max-concurrent",
        "2",
        "--progress-interval",
        "0.02",
        cwd=tmp_path_factory.mktemp("client-server"),
    )
    yield served
    served.stop()


@pytest.fixture
def client(server: Served) -> Iterator[Client]:
    with Client(server.url, timeout=WAIT) as client:
        yield client


@pytest.fixture
def proxy(server: Served) -> Iterator[Proxy]:
    proxy = Proxy(server.port)
    yield proxy
    proxy.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def as_json(event: AnyEvent) -> dict[str, Any]:
    """An event as the wire has it, to compare with `GET .../events`."""
    return json.loads(msgspec.json.encode(event))


def logged(server: Served, execution_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/api/v1/executions/{execution_id}/events", timeout=WAIT)
    assert response.status_code == 200, response.text
    return response.json()["events"]


def assert_a_faithful_stream(events: list[AnyEvent], log: list[dict[str, Any]]) -> None:
    """A status, then the log's events after seq 0: in order, none twice, no lifecycle one lost."""
    first, *rest = events
    assert isinstance(first, StatusEvent) and first.seq == 0
    assert_matches_log([as_json(e) for e in rest], log)
    assert rest[-1].seq == log[-1]["seq"]


@pytest.fixture
def cancel_afterwards(client: Client) -> Iterator[list[str]]:
    """Ids to cancel once the test is over, so a failing test leaves no long run behind."""
    ids: list[str] = []
    yield ids
    for execution_id in ids:
        with contextlib.suppress(ExecutionFinished):
            client.cancel(execution_id)
    for execution_id in ids:
        client.wait(execution_id, timeout=WAIT)


# -- the REST calls ----------------------------------------------------------------------------


def test_submit_answers_the_new_record_and_wait_the_final_one(client: Client) -> None:
    record = client.submit("crawl", **SHORT)
    assert record.pipeline == "crawl" and record.status in ("pending", "running")
    assert record.inputs == SHORT
    final = client.wait(record.execution_id, timeout=WAIT)
    assert final.status == "completed" and final.outputs == {"items": 9}
    assert final == client.get(record.execution_id)
    assert [s.status for s in final.steps] == ["completed"] * 3
    assert client.progress(record.execution_id).percentage == 100.0


def test_progress_is_none_while_pending_and_a_snapshot_while_running(
    client: Client, cancel_afterwards: list[str]
) -> None:
    running = [client.submit("crawl", **LONG).execution_id for _ in range(2)]
    cancel_afterwards += running
    waiting = client.submit("crawl", **LONG).execution_id  # both slots are taken
    cancel_afterwards.append(waiting)
    wait_until(lambda: all(client.get(i).status == "running" for i in running), "both running")
    assert client.get(waiting).status == "pending"
    assert client.progress(waiting) is None
    snapshot = client.progress(running[0])
    assert snapshot is not None and snapshot.current_step_name == "fetch"
    assert snapshot.total_steps == 3 and 0 <= snapshot.percentage < 34

    cancelled = client.cancel(waiting)  # pending: cancelled at once, never had progress
    assert cancelled.status == "cancelled" and client.progress(waiting) is None
    for execution_id in running:
        assert client.cancel(execution_id).status in ("running", "cancelled")
    for execution_id in running:
        assert client.wait(execution_id, timeout=WAIT).status == "cancelled"


def test_list_filters_and_pages_newest_first(client: Client) -> None:
    ids = [client.submit("crawl", **SHORT).execution_id for _ in range(3)]
    for execution_id in ids:
        client.wait(execution_id, timeout=WAIT)
    first = client.list(pipeline="crawl", status="completed", limit=2)
    assert [r.execution_id for r in first.items] == ids[::-1][:2]
    assert first.next_cursor == ids[1]
    second = client.list(pipeline="crawl", status="completed", limit=2, cursor=first.next_cursor)
    assert second.items[0].execution_id == ids[0]
    every = [r.execution_id for r in client.executions(pipeline="crawl", page_size=2)]
    assert every[:3] == ids[::-1] and every == sorted(every, reverse=True)
    assert client.list(pipeline="no-such-pipeline").items == []
    with pytest.raises(ValueError, match="status must be one of pending, running"):
        client.list(status="done")
    with pytest.raises(ValueError, match="limit must be between 1 and 200"):
        client.list(limit=0)


def test_pipelines_describe_steps_and_inputs(client: Client) -> None:
    pipelines = {p.name: p for p in client.pipelines()}
    assert {"crawl", "demo", "demo_async"} <= set(pipelines)
    crawl = client.pipeline("crawl")
    assert crawl == pipelines["crawl"]
    assert [s.name for s in crawl.steps] == ["fetch", "parse", "store"]
    inputs = {i.name: (i.type, i.required, i.default) for i in crawl.inputs}
    assert inputs == {"items": ("integer", False, 10), "pause": ("number", False, 0.01)}
    demo = {i.name: i.type for i in pipelines["demo"].inputs}
    assert demo["fail_at_step"] == "integer | null"


def test_unknown_ids_and_pipelines_raise_the_frameworks_lookup_errors(client: Client) -> None:
    for call in (
        client.get,
        client.progress,
        client.cancel,
        client.replay,
        lambda i: list(client.events(i)),
        lambda i: client.wait(i, timeout=WAIT),
    ):
        with pytest.raises(UnknownExecution) as caught:
            call("exec_nope")
        assert caught.value.execution_id == "exec_nope"
    for call in (client.pipeline, client.submit):
        with pytest.raises(UnknownPipeline) as unknown:
            call("nope")
        assert isinstance(unknown.value, KeyError) and isinstance(unknown.value, StepstreamError)
        assert unknown.value.name == "nope" and {"crawl", "demo"} <= set(unknown.value.known)
        assert str(unknown.value).startswith("no pipeline named 'nope' (known: ")


def test_inputs_that_do_not_fit_raise_input_error_naming_every_field(client: Client) -> None:
    with pytest.raises(InputError) as caught:
        client.submit("crawl", items="many", colour="red")
    error = caught.value
    assert error.pipeline == "crawl"
    assert error.problems == {
        "colour": "unknown input (expected: items, pause)",
        "items": "expected int, got string",
    }


def test_cancelling_a_finished_execution_raises_execution_finished(client: Client) -> None:
    execution_id = client.submit("crawl", **SHORT).execution_id
    client.wait(execution_id, timeout=WAIT)
    with pytest.raises(ExecutionFinished) as caught:
        client.cancel(execution_id)
    assert caught.value.execution_id == execution_id and caught.value.status == "completed"


def test_wait_raises_timeout_error_while_the_execution_runs(
    client: Client, cancel_afterwards: list[str]
) -> None:
    execution_id = client.submit("crawl", **LONG).execution_id
    cancel_afterwards.append(execution_id)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"execution {execution_id} is still \w+ after 0.5s"):
        client.wait(execution_id, timeout=0.5)
    assert time.monotonic() - started < WAIT
    client.cancel(execution_id)
    assert client.wait(execution_id, timeout=WAIT).status == "cancelled"


def test_a_server_that_is_not_there_is_server_unavailable_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as client:
        with pytest.raises(ServerUnavailable) as caught:
            client.get("exec_x")
        assert caught.value.status is None and caught.value.url == url
        assert (
            str(caught.value) == f"cannot reach the stepstream server at {url}: connection refused"
        )
        with pytest.raises(ServerUnavailable, match="connection refused"):
            list(client.events("exec_x"))
    with pytest.raises(ValueError, match="expected the server's http"):
        Client("localhost:8000")


# -- streams -------------------------------------------------------------------------------


def test_events_yield_the_status_then_every_event_once_up_to_the_terminal_one(
    server: Served, client: Client
) -> None:
    execution_id = client.submit("crawl", items=5, pause=0.01).execution_id
    events = list(client.events(execution_id))
    assert isinstance(events[-1], CompletedEvent) and events[-1].outputs == {"items": 15}
    assert any(isinstance(e, StartedEvent) for e in events)
    assert_a_faithful_stream(events, logged(server, execution_id))
    # A finished execution: its status as it stood at `after`, then what followed.
    again = list(client.events(execution_id, after=events[-2].seq))
    assert [type(e) for e in again] == [StatusEvent, CompletedEvent]


def test_events_resume_after_the_connection_drops_with_nothing_repeated_or_lost(
    server: Served, proxy: Proxy
) -> None:
    events: list[AnyEvent] = []
    with Client(proxy.url, timeout=WAIT) as client:
        execution_id = client.submit("crawl", **PACED).execution_id
        drops = 0
        for event in client.events(execution_id):
            events.append(event)
            if drops < 2 and sum(isinstance(e, ProgressEvent) for e in events) >= 5 * (drops + 1):
                assert proxy.drop() >= 1  # the stream's connection, at least
                drops += 1
    assert drops == 2 and proxy.accepted >= 3
    assert isinstance(events[-1], CompletedEvent)
    assert_a_faithful_stream(events, logged(server, execution_id))


def test_async_events_resume_after_the_connection_drops(server: Served, proxy: Proxy) -> None:
    async def main() -> tuple[str, list[AnyEvent]]:
        events: list[AnyEvent] = []
        async with AsyncClient(proxy.url, timeout=WAIT) as client:
            execution_id = (await client.submit("crawl", **PACED)).execution_id
            async with client.events(execution_id) as stream:
                async for event in stream:
                    events.append(event)
                    if len(events) == 6:
                        assert proxy.drop() >= 1
        return execution_id, events

    execution_id, events = anyio.run(main)
    assert proxy.accepted >= 2
    assert isinstance(events[-1], CompletedEvent)
    assert_a_faithful_stream(events, logged(server, execution_id))


def test_events_resume_on_a_restarted_server_where_the_stream_left_off(tmp_path: Path) -> None:
    store = ("--store", f"sqlite:///{tmp_path / 'kept.db'}", "--pipelines", CRAWL)
    first = start_serve(*store, "--progress-interval", "0.02", cwd=tmp_path)
    second: Served | None = None
    try:
        events: list[AnyEvent] = []
        with Client(first.url, timeout=WAIT, retry_for=60) as client:
            execution_id = client.submit("crawl", **LONG).execution_id
            for event in client.events(execution_id):
                events.append(event)
                if len(events) == 8 and second is None:
                    first.kill()  # the stream is cut mid-execution: the client retries...
                    second = start_serve(*store, port=first.port, cwd=tmp_path)  # ...and resumes
            log = logged(second, execution_id)  # type: ignore[arg-type]
    finally:
        first.stop()
        if second is not None:
            second.stop()
    # The restarted server marked the execution failed: the stream ends with that.
    assert isinstance(events[-1], FailedEvent)
    assert events[-1].error.type == "ServerStopped"
    assert_a_faithful_stream(events, log)


def test_watch_follows_a_new_execution_to_its_end(
    client: Client, cancel_afterwards: list[str]
) -> None:
    running = client.submit("crawl", **LONG).execution_id
    cancel_afterwards.append(running)
    new = None
    seen: list[AnyEvent] = []
    with client.watch() as events:
        for event in events:
            if new is None and event.execution_id == running:
                # Its status shows the watch is live: what starts now arrives as it happens.
                new = client.submit("crawl", items=10, pause=0.01).execution_id
            elif event.execution_id == new:
                seen.append(event)
                if isinstance(event, CompletedEvent):
                    break
    assert isinstance(seen[0], StatusEvent) and seen[0].status == "pending" and seen[0].seq == 1
    assert any(isinstance(e, StartedEvent) for e in seen)
    seqs = [e.seq for e in seen]
    assert seqs == sorted(set(seqs))


def test_watch_of_listed_ids_ends_once_each_has_finished(client: Client) -> None:
    done = client.submit("crawl", **SHORT).execution_id
    client.wait(done, timeout=WAIT)
    running = client.submit("crawl", items=10, pause=0.01).execution_id
    events = list(client.watch([done, running, "exec_nope"]))
    statuses = {e.execution_id: e for e in events if isinstance(e, StatusEvent | ErrorEvent)}
    assert statuses[done].status == "completed"  # type: ignore[union-attr]
    assert isinstance(statuses["exec_nope"], ErrorEvent)
    assert isinstance(events[-1], CompletedEvent) and events[-1].execution_id == running


def test_watch_reads_what_it_missed_after_a_1008_close(server: Served, proxy: Proxy) -> None:
    """The server closes a watcher that fell too far behind with 1008; the proxy plays that
    part, dropping what it holds back, so the client must re-read to see the executions end."""
    with Client(proxy.url, timeout=WAIT) as client, Client(server.url, timeout=WAIT) as direct:
        first = direct.submit("crawl", **PACED).execution_id
        seen: dict[str, list[AnyEvent]] = {}
        second = None
        with client.watch() as events:
            for event in events:
                seen.setdefault(event.execution_id, []).append(event)
                if second is None and isinstance(event, ProgressEvent):
                    proxy.hold()  # from here on, the watcher falls behind
                    second = direct.submit("crawl", **SHORT).execution_id
                    direct.wait(first, timeout=WAIT)
                    direct.wait(second, timeout=WAIT)
                    assert proxy.close_streams(1008, TOO_FAR_BEHIND) == 1
                if second and all(
                    isinstance(seen.get(i, [None])[-1], CompletedEvent) for i in (first, second)
                ):
                    break
    assert proxy.accepted >= 2
    for execution_id in (first, second):
        log = logged(server, execution_id)
        mine = seen[execution_id]
        assert_matches_log([as_json(e) for e in mine[1:]], log, after=mine[0].seq)
    # The one created while the watcher was behind is seen whole, from its first event.
    assert isinstance(seen[second][0], StatusEvent) and seen[second][0].seq == 1
    assert any(isinstance(e, StartedEvent) for e in seen[second])


def test_async_watch_of_listed_ids(client: Client, server: Served) -> None:
    execution_id = client.submit("crawl", items=10, pause=0.01).execution_id

    async def main() -> list[AnyEvent]:
        async with AsyncClient(server.url, timeout=WAIT) as aclient:
            return [event async for event in aclient.watch([execution_id])]

    events = anyio.run(main)
    assert isinstance(events[0], StatusEvent) and isinstance(events[-1], CompletedEvent)


# -- the async client ------------------------------------------------------------------------


def test_the_async_client_answers_and_raises_as_the_sync_one(server: Served) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, timeout=WAIT) as client:
            record = await client.submit("crawl", **SHORT)
            final = await client.wait(record.execution_id, timeout=WAIT)
            assert final.status == "completed" and final == await client.get(record.execution_id)
            assert (await client.progress(record.execution_id)).percentage == 100.0
            page = await client.list(pipeline="crawl", limit=1)
            assert page.items[0].execution_id == record.execution_id
            listed = [r.execution_id async for r in client.executions(pipeline="crawl")]
            assert listed[0] == record.execution_id
            assert isinstance((await client.replay(record.execution_id)).events[-1], CompletedEvent)
            assert "crawl" in {p.name for p in await client.pipelines()}
            assert (await client.pipeline("crawl")).steps[0].name == "fetch"
            events = [e async for e in client.events(record.execution_id)]
            assert isinstance(events[-1], CompletedEvent)

            with pytest.raises(UnknownExecution):
                await client.get("exec_nope")
            with pytest.raises(UnknownExecution):
                async with client.events("exec_nope") as stream:
                    [e async for e in stream]
            with pytest.raises(UnknownPipeline):
                await client.submit("nope")
            with pytest.raises(InputError) as caught:
                await client.submit("crawl", items=-1.5)
            assert set(caught.value.problems) == {"items"}
            with pytest.raises(ExecutionFinished):
                await client.cancel(record.execution_id)

            running = (await client.submit("crawl", **LONG)).execution_id
            try:
                with pytest.raises(TimeoutError, match="is still"):
                    await client.wait(running, timeout=0.3)
                async with client.events(running) as stream:  # leaving early closes it
                    first = await stream.__anext__()
                assert isinstance(first, StatusEvent)
            finally:
                await client.cancel(running)
            assert isinstance([e async for e in client.events(running)][-1], CancelledEvent)

    anyio.run(main)


# -- a server with a token ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(
        "--store",
        "memory://",
        "--token",
        "s3cret",
        cwd=tmp_path_factory.mktemp("token-server"),
    )
    yield served
    served.stop()


def test_a_missing_or_wrong_token_is_server_unavailable_with_status_401(
    token_server: Served,
) -> None:
    for token in (None, "wrong"):
        with Client(token_server.url, token) as client:
            with pytest.raises(ServerUnavailable) as caught:
                client.pipelines()
            assert caught.value.status == 401
            assert "missing or invalid bearer token" in caught.value.detail
            with pytest.raises(ServerUnavailable) as streamed:
                list(client.watch(["exec_x"]))
            assert streamed.value.status == 401


def test_the_right_token_opens_every_route_and_stream(token_server: Served) -> None:
    with Client(token_server.url, "s3cret", timeout=WAIT) as client:
        record = client.submit("demo", steps=2, seconds_per_step=0.05, items_per_step=2)
        events = list(client.events(record.execution_id))
        assert isinstance(events[-1], CompletedEvent)
        assert client.get(record.execution_id).status == "completed"
