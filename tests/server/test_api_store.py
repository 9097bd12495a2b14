"""The server against a store that is slow or failing, and a watcher that falls behind.

A SQLite store flushes before it replays lifecycle events, which takes half a
second while its writer fails: such reads must not stall the event loop. A
submission the store cannot keep must not run anyway. A watcher whose client
stops reading must not hold events without bound.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websocket import WebSocket, create_connection
from websockets.exceptions import ConnectionClosed

from stepstream import Pipeline, Progress, StoreError, subscription
from stepstream.events import Event, ExecutionRecord
from stepstream.stores.memory import MemoryStore

from cli_support import WAIT
from server_support import test_pipelines


class HeldStore(MemoryStore):
    """A memory store whose log and listing reads wait while `held`, as a stuck flush would."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def _wait(self) -> None:
        if self.held:
            self.reading.set()
            self.go_on.wait(WAIT)

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        self._wait()
        return super().events(execution_id, after)

    def list(self, **filters: Any) -> list[ExecutionRecord]:
        self._wait()
        return super().list(**filters)


class FailingStore(MemoryStore):
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


def _first_message(url: str) -> dict[str, Any]:
    ws: WebSocket = create_connection(url, timeout=WAIT)
    try:
        return json.loads(ws.recv())
    finally:
        ws.close()


READS: dict[str, Callable[[str, str], Any]] = {
    "GET events": lambda base, eid: httpx.get(f"{base}/api/v1/executions/{eid}/events").json(),
    "GET list": lambda base, eid: httpx.get(f"{base}/api/v1/executions").json(),
    "progress ws replay": lambda base, eid: _first_message(
        f"{base.replace('http', 'ws')}/api/v1/executions/{eid}/progress/ws?after=0"
    ),
    "watch ws statuses": lambda base, eid: _first_message(
        f"{base.replace('http', 'ws')}/api/v1/executions/ws"
    ),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_slow_store_read_never_stalls_other_requests(
    start_server: Any, read: Callable[[str, str], Any]
) -> None:
    store = HeldStore()
    server = start_server(store=store)
    execution_id = server.submit("held", gate_name=server.new_gate())["execution_id"]
    server.wait_for(execution_id, "running")
    answers: list[Any] = []
    store.held = True
    reader = threading.Thread(target=lambda: answers.append(read(server.base_url, execution_id)))
    reader.start()
    try:
        assert store.reading.wait(WAIT), "the request never read the store"
        # While that read waits, the event loop still answers everyone else.
        with server.client() as client:
            assert client.get("/health", timeout=5).status_code == 200
            assert client.get(f"/api/v1/executions/{execution_id}", timeout=5).status_code == 200
        assert reader.is_alive() and not answers, "the read did not wait for the store"
    finally:
        store.go_on.set()
        reader.join(WAIT)
    (answer,) = answers
    assert execution_id in json.dumps(answer)


stubborn = Pipeline("stubborn", description="Heeds a cancel only once its gate opens")


@stubborn.step
def hold_the_slot(gate_name: str, progress: Progress) -> None:
    """Keep this execution's slot until the gate opens, cancelled or not; then stop if cancelled."""
    test_pipelines.gate(gate_name).wait(WAIT)
    progress.check()


def test_a_submission_the_store_cannot_keep_is_503_and_cancelled(start_server: Any) -> None:
    store = FailingStore()
    server = start_server(store=store, max_concurrent=1)
    server.engine.add_pipeline(stubborn)
    store.full = True
    gate = server.new_gate()
    with server.client() as client:
        first = client.post(
            "/api/v1/executions", json={"pipeline": "stubborn", "inputs": {"gate_name": gate}}
        )
        second = client.post("/api/v1/executions", json={"pipeline": "quick"})
    # Cancelled, the first still held the only slot until now, so the second was queued.
    server.open_gate(gate)
    for response in (first, second):
        body = server.problem(response, 503)
        assert body["type"] == "store-unavailable"
        assert "database or disk is full" in body["detail"]
        assert "cancelled" in body["detail"] and "submit it again" in body["detail"]
    # The running one is cancelled at its next checkpoint, the queued one at once and never runs:
    # a client that retries gets one execution, not two.
    held, queued = (server.wait_for(r.json()["execution_id"]) for r in (first, second))
    assert held["status"] == queued["status"] == "cancelled"
    assert queued["started_at"] is None
    assert second.json()["execution_status"] == "cancelled"


@pytest.mark.parametrize("path", ["/api/v1/executions", "/api/v1/executions/{}/events"])
def test_a_store_that_cannot_be_read_is_a_503_problem(start_server: Any, path: str) -> None:
    store = FailingStore()
    server = start_server(store=store)
    execution_id = server.wait_for(server.submit("quick", items=1)["execution_id"])["execution_id"]
    store.unreadable = True
    with server.client() as client:
        body = server.problem(client.get(path.format(execution_id)), 503)
    assert body["type"] == "store-unavailable" and "disk I/O error" in body["detail"]


@pytest.mark.anyio
async def test_a_watcher_too_far_behind_is_closed_1008_and_told_to_resync(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscription, "WATCH_BUFFER", 50)
    server = start_server()
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
        await server.wait_until_async(lambda: engine.tracker.subscriber_count() == 1, "watching")
        server.submit("burst", count=60)
        with pytest.raises(ConnectionClosed):
            while True:
                await server.recv_json(ws)
    assert ws.close_code == 1008
    assert ws.close_reason is not None and "GET /api/v1/executions" in ws.close_reason
    await server.wait_until_async(
        lambda: engine.tracker.subscriber_count() == 0, "the watcher's subscription to be freed"
    )

    def listed() -> list[dict[str, Any]]:
        with server.client() as client:
            return client.get("/api/v1/executions", params={"limit": 100}).json()["items"]

    # The burst may still be running here, and its events would overflow a new watch's
    # 50-item buffer too: let it end first.
    server.wait_until(
        lambda: all(r["status"] == "completed" for r in listed()),
        "the burst's executions to finish",
    )
    # The client resyncs: every execution is listed, and a new watch works.
    assert len(listed()) == 61
    async with server.ws("/api/v1/executions/ws") as ws:
        server.submit("noop")
        assert (await server.recv_json(ws))["type"] == "status"
