"""Helpers for tests that drive the server's API: the test pipelines, an engine, async calls.

tests/server serves the app in-process and tests/e2e on a real socket; both start
executions, wait for them and hold them open with gates through `Api`.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anyio
import httpx

from stepstream import Engine, StoreError
from stepstream.stores import ExecutionStore
from stepstream.stores.memory import MemoryStore
from stepstream_demo import DEMO_PIPELINES

from cli_support import ROOT, WAIT

PIPELINES_FILE = ROOT / "tests" / "server" / "pipelines.py"
TERMINAL = ("completed", "failed", "cancelled")
POLL = 0.02  # seconds between two looks at a condition


def _load_test_pipelines() -> ModuleType:
    """Import tests/server/pipelines.py once, so tests and executions share its gates."""
    name = "stepstream_server_test_pipelines"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PIPELINES_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


test_pipelines = _load_test_pipelines()
TEST_PIPELINES = [
    test_pipelines.quick,
    test_pipelines.held,
    test_pipelines.held_async,
    test_pipelines.failing,
    test_pipelines.chatty,
]


class FlushedMemoryStore(MemoryStore):
    """A memory store for fakes whose `flush` fails or waits, as a SQLite store's writer can:
    a submission's `on_kept` (the one with `failed`) runs `flush` on a thread, as the writer
    commits, and hears of its error; other callers are called at once."""

    def on_kept(
        self, callback: Callable[[], None], failed: Callable[[StoreError], None] | None = None
    ) -> None:
        if failed is None:
            callback()
            return

        def write() -> None:
            try:
                self.flush()
            except StoreError as exc:
                failed(exc)
            else:
                callback()

        threading.Thread(target=write, daemon=True).start()


def make_engine(
    *, store: ExecutionStore | None = None, max_concurrent: int | None = None
) -> Engine:
    """An engine on `store` (default memory) with the demos, the test pipelines, 20 ms progress."""
    engine = Engine(
        store=store,
        load_entrypoints=False,
        max_concurrent=max_concurrent,
        progress_interval=0.02,
    )
    for pipeline in [*DEMO_PIPELINES, *TEST_PIPELINES]:
        engine.add_pipeline(pipeline)
    return engine


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for `token`; none without one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class Api:
    """A served engine seen from a client: start, read and wait for executions; hold them."""

    http: httpx.AsyncClient  # sends the token, if the server wants one
    engine: Engine
    token: str | None = None
    gates: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header the server wants, if it wants one."""
        return bearer(self.token)

    def new_gate(self) -> str:
        """A fresh closed gate for a `held`/`held_async`/`chatty` execution; opened at teardown."""
        name = f"gate-{uuid.uuid4().hex}"
        test_pipelines.gate(name)
        self.gates.append(name)
        return name

    def open_gate(self, name: str) -> None:
        """Let the executions waiting on this gate go on."""
        test_pipelines.open_gate(name)

    def open_gates(self) -> None:
        """Open every gate this helper made, so no worker thread is left waiting on one."""
        for name in self.gates:
            test_pipelines.open_gate(name)

    def subscribers(self, execution_id: str | None = None) -> int:
        """The engine's live subscriptions (one execution's, or all): what open streams hold."""
        return self.engine.subscriber_count(execution_id)

    async def submit(self, pipeline: str, **inputs: Any) -> dict[str, Any]:
        """POST /api/v1/executions; asserts 202 and returns the record."""
        response = await self.http.post(
            "/api/v1/executions", json={"pipeline": pipeline, "inputs": inputs}
        )
        assert response.status_code == 202, response.text
        return response.json()

    async def record(self, execution_id: str) -> dict[str, Any]:
        """GET /api/v1/executions/{id}; asserts 200."""
        response = await self.http.get(f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def events(self, execution_id: str, after: int | None = None) -> list[dict[str, Any]]:
        """GET /api/v1/executions/{id}/events; asserts 200."""
        params = {} if after is None else {"after": after}
        response = await self.http.get(f"/api/v1/executions/{execution_id}/events", params=params)
        assert response.status_code == 200, response.text
        return response.json()["events"]

    async def wait_for(
        self, execution_id: str, *statuses: str, timeout: float = WAIT
    ) -> dict[str, Any]:
        """Poll the record until its status is one of `statuses` (default: finished); return it."""
        wanted = statuses or TERMINAL
        deadline = anyio.current_time() + timeout
        while (record := await self.record(execution_id))["status"] not in wanted:
            assert anyio.current_time() < deadline, f"still {record['status']}, wanted {wanted}"
            await anyio.sleep(POLL)
        return record

    async def finished(self, pipeline: str, **inputs: Any) -> dict[str, Any]:
        """Submit an execution and wait until it ends; returns its final record."""
        return await self.wait_for((await self.submit(pipeline, **inputs))["execution_id"])

    async def wait_until(
        self, condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT
    ) -> None:
        """Poll a condition (async when it asks the server) until it holds."""
        deadline = anyio.current_time() + timeout
        while True:
            held = condition()
            if inspect.isawaitable(held):
                held = await held
            if held:
                return
            assert anyio.current_time() < deadline, f"timed out waiting for {what}"
            await anyio.sleep(POLL)

    @staticmethod
    def problem(response: httpx.Response, status: int) -> dict[str, Any]:
        """Assert an RFC 9457 problem-details answer with this status; returns its body."""
        assert response.status_code == status, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), (
            response.headers
        )
        body = response.json()
        assert body["status"] == status, body
        assert isinstance(body["type"], str) and body["type"], body
        assert isinstance(body["title"], str) and body["title"], body
        assert isinstance(body["detail"], str) and body["detail"].strip(), body
        return body
