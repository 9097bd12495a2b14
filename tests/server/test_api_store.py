"""The server against a store that is slow or failing, and a watcher that falls behind.

A SQLite store flushes before it replays lifecycle events, which takes half a
second while its writer fails: such reads must not stall the event loop. A
submission the store cannot keep must not run anyway. A watcher whose client
stops reading must not hold events without bound.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from httpx_ws import WebSocketDisconnect

from stepstream import Pipeline, Progress, StoreError
from stepstream.model.events import Event, ExecutionRecord
from stepstream.stores.memory import MemoryStore
from stepstream.tracking import subscriptions as subscription

from cli_support import WAIT
from server_support import FlushedMemoryStore, test_pipelines

pytestmark = pytest.mark.anyio


class HeldStore(MemoryStore):
    """A memory store whose log and listing reads wait while `held`, as a stuck flush would."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.reading = threading.Event()
        self.go_on = threading.Event()
        self.released = threading.Event()  # the read went on: told to, or tired of waiting

    def _wait(self) -> None:
        if self.held:
            self.reading.set()
            self.go_on.wait(WAIT)
            self.released.set()

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        self._wait()
        return super().events(execution_id, after)

    def list(self, **filters: Any) -> list[ExecutionRecord]:
        self._wait()
        return super().list(**filters)


class FailingStore(FlushedMemoryStore):
    """A memory store that fails as a SQLite store does on a full or broken disk, once told to."""

    full = False  # flushes fail
    unreadable = False  # listings and log reads fail

    def flush(self) -> None:
        if self.full:
            raise StoreError("cannot write to store /data/stepstream.db: database or disk is full")

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        if self.unreadable:
            raise StoreError("cannot read store /data/stepstream.db: disk I/O error")
        return super().events(execution_id, after)

    def list(self, **filters: Any) -> list[ExecutionRecord]:
        if self.unreadable:
            raise StoreError("cannot read store /data/stepstream.db: disk I/O error")
        return super().list(**filters)


async def _get_json(server: Any, path: str) -> Any:
    return (await server.http.get(path)).json()


async def _first_message(server: Any, path: str) -> dict[str, Any]:
    async with server.ws(path) as ws:
        return await server.recv_json(ws)


READS: dict[str, Callable[[Any, str], Awaitable[Any]]] = {
    "GET events": lambda server, eid: _get_json(server, f"/api/v1/executions/{eid}/events"),
    "GET list": lambda server, eid: _get_json(server, "/api/v1/executions"),
    "progress ws replay": lambda server, eid: _first_message(
        server, f"/api/v1/executions/{eid}/progress/ws?after=0"
    ),
    "watch ws statuses": lambda server, eid: _first_message(server, "/api/v1/executions/ws"),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
async def test_a_slow_store_read_never_stalls_other_requests(
    start_server: Any, read: Callable[[Any, str], Awaitable[Any]]
) -> None:
    store = HeldStore()
    server = await start_server(store=store)
    execution_id = (await server.submit("held", gate_name=server.new_gate()))["execution_id"]
    await server.wait_for(execution_id, "running")
    answers: list[Any] = []

    async def reader() -> None:
        answers.append(await read(server, execution_id))

    store.held = True
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        try:
            await server.wait_until(store.reading.is_set, "the request to read the store")
            # While that read waits, the event loop still answers everyone else. (A read on
            # the loop would hold this test up too, until the store tired of waiting.)
            with anyio.fail_after(5):
                assert (await server.http.get("/health")).status_code == 200
                response = await server.http.get(f"/api/v1/executions/{execution_id}")
                assert response.status_code == 200
            assert not store.released.is_set(), "the store read held up the event loop"
            assert not answers, "the read did not wait for the store"
        finally:
            store.go_on.set()
    (answer,) = answers
    assert execution_id in json.dumps(answer)


stubborn = Pipeline("stubborn", description="Heeds a cancel only once its gate opens")


@stubborn.step
def hold_the_slot(gate_name: str, progress: Progress) -> None:
    """Keep this execution's slot until the gate opens, cancelled or not; then stop if cancelled."""
    test_pipelines.gate(gate_name).wait(WAIT)
    progress.check()


async def test_a_submission_the_store_cannot_keep_is_503_and_cancelled(start_server: Any) -> None:
    store = FailingStore()
    server = await start_server(store=store, max_concurrent=1)
    server.engine.add_pipeline(stubborn)
    store.full = True
    gate = server.new_gate()
    first = await server.http.post(
        "/api/v1/executions", json={"pipeline": "stubborn", "inputs": {"gate_name": gate}}
    )
    second = await server.http.post("/api/v1/executions", json={"pipeline": "quick"})
    # Cancelled, the first still held the only slot until now, so the second was queued.
    server.open_gate(gate)
    for response in (first, second):
        body = server.problem(response, 503)
        assert body["type"] == "store-unavailable"
        assert "database or disk is full" in body["detail"]
        assert "cancelled" in body["detail"] and "submit it again" in body["detail"]
    # The running one is cancelled at its next checkpoint, the queued one at once and never runs:
    # a client that retries gets one execution, not two.
    held, queued = [await server.wait_for(r.json()["execution_id"]) for r in (first, second)]
    assert held["status"] == queued["status"] == "cancelled"
    assert queued["started_at"] is None
    assert second.json()["execution_status"] == "cancelled"


async def test_ready_is_503_while_the_store_cannot_write(start_server: Any) -> None:
    """/health said `ok` while every write failed; /health/ready says what is wrong."""
    store = FailingStore()
    server = await start_server(store=store)
    assert (await server.http.get("/health/ready")).json() == {"status": "ready"}
    store.full = True
    async with server.client(auth=False) as client:
        body = server.problem(await client.get("/health/ready"), 503)
        assert body["type"] == "store-unavailable" and "disk is full" in body["detail"]
        assert (await client.head("/health/ready")).status_code == 503
        assert (await client.get("/health")).json() == {"status": "ok"}  # liveness: it runs
    store.full = False
    assert (await server.http.get("/health/ready")).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/executions", "/api/v1/executions/{}/events"])
async def test_a_store_that_cannot_be_read_is_a_503_problem(start_server: Any, path: str) -> None:
    store = FailingStore()
    server = await start_server(store=store)
    execution_id = (await server.finished("quick", items=1))["execution_id"]
    store.unreadable = True
    body = server.problem(await server.http.get(path.format(execution_id)), 503)
    assert body["type"] == "store-unavailable" and "disk I/O error" in body["detail"]


async def test_a_watcher_too_far_behind_is_closed_1008_and_told_to_resync(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscription, "WATCH_BUFFER", 50)
    server = await start_server()
    engine = server.engine
    burst = Pipeline("burst", description="Creates executions faster than a watcher can read")

    @burst.step
    async def create(count: int) -> int:
        for _ in range(count):  # no await: the watcher's sender cannot run meanwhile
            engine.submit("noop")
        return count

    noop = Pipeline("noop")

    @noop.step
    async def nothing() -> None:
        return None

    engine.add_pipeline(burst)
    engine.add_pipeline(noop)
    async with server.ws("/api/v1/executions/ws") as ws:
        await server.wait_until(lambda: server.subscribers() == 1, "watching")
        await server.submit("burst", count=60)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                await server.recv_json(ws)
    assert closed.value.code == 1008
    assert closed.value.reason is not None and "GET /api/v1/executions" in closed.value.reason
    await server.wait_until(
        lambda: server.subscribers() == 0, "the watcher's subscription to be freed"
    )

    async def listed() -> list[dict[str, Any]]:
        response = await server.http.get("/api/v1/executions", params={"limit": 100})
        return response.json()["items"]

    async def burst_over() -> bool:
        return all(r["status"] == "completed" for r in await listed())

    # In-process the burst may still be running here, and its events would overflow a new
    # watch's 50-item buffer too: let it end first.
    await server.wait_until(burst_over, "the burst's executions to finish")
    # The client resyncs: every execution is listed, and a new watch works.
    assert len(await listed()) == 61
    async with server.ws("/api/v1/executions/ws") as ws:
        await server.submit("noop")
        assert (await server.recv_json(ws))["type"] == "status"
