"""Starting an execution: kept before it starts, never run twice, answered again by its key.

`POST /api/v1/executions` creates the execution, waits for the store to keep it and
only then queues it: one the store cannot keep never runs, so the 503 is honest and
retrying is safe. With an `Idempotency-Key`, a request sent again is answered with
the execution it made instead of a second one.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from stepstream import Pipeline, StoreError
from stepstream.stores.memory import MemoryStore
from stepstream.stores.sqlite import SqliteStore

from cli_support import WAIT
from server_support import FlushedMemoryStore, make_engine

pytestmark = pytest.mark.anyio

ran: list[str] = []  # the tag of every witness execution that ran its step

witness = Pipeline("witness", description="Notes that it ran")


@witness.step
def note(tag: str = "") -> str:
    """Record that this execution ran."""
    ran.append(tag)
    return tag


class FlakyStore(FlushedMemoryStore):
    """A memory store whose flushes fail while `full`, as a SQLite store's on a full disk,
    and wait while `held` (until `go_on`), as a slow disk's."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.held = False
        self.flushing = threading.Event()
        self.go_on = threading.Event()

    def flush(self) -> None:
        if self.held:
            self.flushing.set()
            self.go_on.wait(WAIT)
        if self.full:
            raise StoreError("cannot write to store /data/stepstream.db: database or disk is full")


async def witness_server(start_server: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    server = await start_server(**kwargs)
    server.engine.add_pipeline(witness)
    return server


def start(server: Any, key: str | None = None, **inputs: Any) -> Awaitable[Any]:
    headers = {} if key is None else {"Idempotency-Key": key}
    body = {"pipeline": "witness", "inputs": inputs}
    return server.http.post("/api/v1/executions", json=body, headers=headers)


async def count_executions(server: Any) -> int:
    return len((await server.http.get("/api/v1/executions", params={"limit": 200})).json()["items"])


async def test_an_execution_the_store_cannot_keep_never_runs(start_server: Any) -> None:
    """It used to be queued before the flush: it could run, and the 503 said 'ran (completed)'."""
    store = FlakyStore()
    server = await witness_server(start_server, store=store, max_concurrent=1)
    store.full = True
    refused = await start(server, tag="refused")
    body = server.problem(refused, 503)
    assert body["type"] == "store-unavailable"
    assert "database or disk is full" in body["detail"]
    assert "it did not run" in body["detail"] and "submit it again" in body["detail"]
    assert body["execution_status"] == "cancelled"
    record = await server.wait_for(body["execution_id"])
    assert record["status"] == "cancelled" and record["started_at"] is None
    # One slot, first in first out: once a later execution ran, the refused one would have.
    store.full = False
    retried = await start(server, tag="retried")
    assert retried.status_code == 202, retried.text
    assert (await server.wait_for(retried.json()["execution_id"]))["status"] == "completed"
    assert ran.count("refused") == 0 and ran.count("retried") == 1


class OneArgumentStore(MemoryStore):
    """A store plugin written before `on_kept` took `failed`."""

    def on_kept(self, callback: Callable[[], None]) -> None:  # type: ignore[override]
        callback()


async def test_a_store_that_cannot_be_asked_whether_it_kept_answers_503_and_never_runs(
    start_server: Any,
) -> None:
    server = await witness_server(start_server, store=OneArgumentStore(), max_concurrent=1)
    body = server.problem(await start(server, tag="unasked"), 503)
    assert body["type"] == "store-unavailable"
    assert "could not be asked whether it kept" in body["detail"]
    record = await server.wait_for(body["execution_id"])
    assert record["status"] == "cancelled" and record["started_at"] is None
    assert ran.count("unasked") == 0


async def test_an_accepted_execution_was_kept_before_it_started(start_server: Any) -> None:
    store = FlakyStore()
    server = await witness_server(start_server, store=store)
    store.held = True
    async with anyio.create_task_group() as tasks:
        answers: list[Any] = []

        async def submit() -> None:
            answers.append(await start(server, tag="kept-first"))

        tasks.start_soon(submit)
        await server.wait_until(store.flushing.is_set, "the submission to flush the store")
        (pending,) = server.engine.list()
        assert pending.status == "pending"
        assert "kept-first" not in ran, "it started before the store kept it"
        store.go_on.set()
    (answer,) = answers
    assert answer.status_code == 202
    await server.wait_for(answer.json()["execution_id"])
    assert ran.count("kept-first") == 1


async def test_a_cancel_while_the_store_keeps_it_means_it_never_starts(start_server: Any) -> None:
    store = FlakyStore()
    server = await witness_server(start_server, store=store)
    store.held = True
    async with anyio.create_task_group() as tasks:
        answers: list[Any] = []

        async def submit() -> None:
            answers.append(await start(server, tag="cancelled-early"))

        tasks.start_soon(submit)
        await server.wait_until(store.flushing.is_set, "the submission to flush the store")
        (pending,) = server.engine.list()
        store.held = False  # the cancel's own flush goes through
        cancel = await server.http.post(f"/api/v1/executions/{pending.execution_id}/cancel")
        assert cancel.status_code == 202 and cancel.json()["status"] == "cancelled"
        store.go_on.set()
    (answer,) = answers
    assert answer.status_code == 202 and answer.json()["status"] == "cancelled"
    witnessed = await start(server, tag="after")
    await server.wait_for(witnessed.json()["execution_id"])
    assert "cancelled-early" not in ran


async def test_cancelling_a_pending_execution_answers_it_cancelled_on_sqlite(
    start_server: Any, tmp_path: Path
) -> None:
    """SQLite shows an ending once it is written; the answer used to say `pending`."""
    store = SqliteStore(tmp_path / "cancel.db")
    try:
        server = await start_server(store=store, max_concurrent=1)
        gate = server.new_gate()
        running = (await server.submit("held", gate_name=gate))["execution_id"]
        await server.wait_for(running, "running")
        queued = [(await server.submit("quick"))["execution_id"] for _ in range(5)]
        for execution_id in queued:
            response = await server.http.post(f"/api/v1/executions/{execution_id}/cancel")
            assert response.status_code == 202
            assert response.json()["status"] == "cancelled"
            assert response.json()["finished_at"] is not None
        server.open_gate(gate)
        await server.wait_for(running)
    finally:
        await server.stop()
        store.close()


async def test_the_same_key_answers_the_same_execution(start_server: Any) -> None:
    server = await witness_server(start_server)
    first = await start(server, "order-17", tag="once")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    execution_id = first.json()["execution_id"]
    await server.wait_for(execution_id)
    again = await start(server, "order-17", tag="once")
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/api/v1/executions/{execution_id}"
    assert again.json()["execution_id"] == execution_id
    assert again.json()["status"] == "completed"  # the record as it is now
    assert again.json()["idempotency_key"] == "order-17"
    assert ran.count("once") == 1
    assert await count_executions(server) == 1


async def test_the_same_key_with_defaults_spelt_out_is_the_same_request(
    start_server: Any,
) -> None:
    server = await start_server()
    first = await server.http.post(
        "/api/v1/executions", json={"pipeline": "quick"}, headers={"Idempotency-Key": "k"}
    )
    again = await server.http.post(
        "/api/v1/executions",
        json={"pipeline": "quick", "inputs": {"items": 5, "seconds_per_item": 0.005}},
        headers={"Idempotency-Key": "k"},
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["execution_id"] == first.json()["execution_id"]


@pytest.mark.parametrize(
    "other",
    [
        {"pipeline": "witness", "inputs": {"tag": "different"}},
        {"pipeline": "quick"},
        {"pipeline": "witness", "inputs": {"nope": 1}},
        {"pipeline": "no-such-pipeline"},
    ],
)
async def test_the_same_key_with_another_request_is_422_naming_the_execution(
    start_server: Any, other: dict[str, Any]
) -> None:
    server = await witness_server(start_server)
    first = (await start(server, "key-1", tag="first")).json()
    response = await server.http.post(
        "/api/v1/executions", json=other, headers={"Idempotency-Key": "key-1"}
    )
    problem = server.problem(response, 422)
    assert problem["type"] == "idempotency-key-reused"
    assert problem["execution_id"] == first["execution_id"]
    assert first["execution_id"] in problem["detail"] and "new key" in problem["detail"]
    assert await count_executions(server) == 1


@pytest.mark.parametrize("key", ["", "k" * 256, "caf\u00e9", "tab\there", "new\x7fline"], ids=repr)
async def test_a_key_must_be_1_to_255_printable_ascii(start_server: Any, key: str) -> None:
    server = await witness_server(start_server)
    response = await server.http.post(
        "/api/v1/executions",
        json={"pipeline": "witness"},
        headers=[("Idempotency-Key", key.encode("latin-1"))],
    )
    problem = server.problem(response, 400)
    assert "Idempotency-Key header must be 1 to 255 printable ASCII" in problem["detail"]
    assert await count_executions(server) == 0


async def test_the_longest_key_and_two_keys(start_server: Any) -> None:
    server = await witness_server(start_server)
    longest = "~" * 255
    assert (await start(server, longest)).status_code == 202
    two = await server.http.post(
        "/api/v1/executions",
        json={"pipeline": "witness"},
        headers=[("Idempotency-Key", b"a"), ("Idempotency-Key", b"b")],
    )
    assert "one Idempotency-Key header" in server.problem(two, 400)["detail"]
    assert await count_executions(server) == 1


async def test_concurrent_requests_with_one_key_make_one_execution(start_server: Any) -> None:
    server = await witness_server(start_server)
    answers: list[Any] = []

    async def send() -> None:
        answers.append(await start(server, "burst", tag="burst"))

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(send)
    assert [a.status_code for a in answers] == [202] * 10
    assert len({a.json()["execution_id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 9
    await server.wait_for(answers[0].json()["execution_id"])
    assert ran.count("burst") == 1
    assert await count_executions(server) == 1
    assert len(server.app.dependencies["submissions"].dependency().locks) == 0


async def test_a_refused_submission_spends_its_key_on_the_cancelled_execution(
    start_server: Any,
) -> None:
    store = FlakyStore()
    server = await witness_server(start_server, store=store)
    store.full = True
    refused = server.problem(await start(server, "k-503", tag="refused"), 503)
    assert "with a new Idempotency-Key" in refused["detail"]
    store.full = False
    again = await start(server, "k-503", tag="refused")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["execution_id"] == refused["execution_id"]
    assert again.json()["status"] == "cancelled"
    fresh = await start(server, "k-503-retry", tag="refused")
    await server.wait_for(fresh.json()["execution_id"])
    assert ran.count("refused") == 1


async def test_a_key_is_remembered_across_a_restart(
    start_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "keys.db"
    store = SqliteStore(path)
    try:
        first = await witness_server(start_server, store=store)
        made = (await start(first, "durable", tag="durable")).json()["execution_id"]
        await first.wait_for(made)
    finally:
        await first.stop()
        store.close()
    store = SqliteStore(path)
    try:
        engine = make_engine(store=store)
        engine.add_pipeline(witness)
        second = await start_server(engine=engine)
        again = await start(second, "durable", tag="durable")
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["execution_id"] == made
        assert ran.count("durable") == 1
    finally:
        await second.stop()
        store.close()
