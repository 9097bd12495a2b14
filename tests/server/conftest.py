"""Server test fixtures: a real uvicorn serving `create_app(engine)` on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stepstream import Engine
from stepstream.stores import ExecutionStore
from stepstream_server.app import create_app

from cli_support import WAIT
from server_support import make_engine, test_pipelines

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class RunningServer:
    """A started server: where to reach it, the engine behind it and client helpers."""

    base_url: str
    ws_url: str
    engine: Engine
    app: Litestar
    token: str | None
    uvicorn_server: uvicorn.Server
    thread: threading.Thread
    gates: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Shut the server down as Ctrl-C would (the app's lifespan exits); fail if it hangs."""
        self.uvicorn_server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), f"{self.base_url} did not shut down within 15 s"

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header the server wants, if it wants one."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, *, auth: bool = True) -> httpx.Client:
        """A sync httpx client for this server, sending the token unless `auth=False`."""
        headers = self.headers if auth else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=WAIT)

    def async_client(self) -> httpx.AsyncClient:
        """An async httpx client for this server, with the token."""
        return httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=WAIT)

    def new_gate(self) -> str:
        """A fresh closed gate for a `held`/`held_async`/`chatty` execution; opened at teardown."""
        name = f"gate-{uuid.uuid4().hex}"
        test_pipelines.gate(name)
        self.gates.append(name)
        return name

    def open_gate(self, name: str) -> None:
        """Let the executions waiting on this gate go on."""
        test_pipelines.open_gate(name)

    def submit(self, pipeline: str, **inputs: Any) -> dict[str, Any]:
        """POST /api/v1/executions; asserts 202 and returns the record."""
        with self.client() as client:
            response = client.post(
                "/api/v1/executions", json={"pipeline": pipeline, "inputs": inputs}
            )
        assert response.status_code == 202, response.text
        return response.json()

    def record(self, execution_id: str) -> dict[str, Any]:
        """GET /api/v1/executions/{id}; asserts 200."""
        with self.client() as client:
            response = client.get(f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, execution_id: str, after: int | None = None) -> list[dict[str, Any]]:
        """GET /api/v1/executions/{id}/events; asserts 200."""
        params = {} if after is None else {"after": after}
        with self.client() as client:
            response = client.get(f"/api/v1/executions/{execution_id}/events", params=params)
        assert response.status_code == 200, response.text
        return response.json()["events"]

    def wait_for(self, execution_id: str, *statuses: str, timeout: float = WAIT) -> dict[str, Any]:
        """Poll the record until its status is one of `statuses`; returns that record."""
        wanted = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                record = client.get(f"/api/v1/executions/{execution_id}").json()
                if record["status"] in wanted:
                    return record
                assert time.monotonic() < deadline, f"still {record['status']}, wanted {wanted}"
                time.sleep(0.02)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        """Poll a condition on the engine (e.g. subscriber counts) until it holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    async def wait_until_async(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT
    ) -> None:
        """`wait_until` for async tests: polls without blocking the test's event loop."""
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.02)
        assert condition(), what

    def ws(self, path: str, *, token: str | None = None, header: bool = True, **kwargs: Any) -> Any:
        """A `websockets` connection to `path` (auth by header unless `header=False`)."""
        url = f"{self.ws_url}{path}"
        if token is not None:
            url += ("&" if "?" in url else "?") + f"token={token}"
        kwargs.setdefault("open_timeout", WAIT)
        kwargs.setdefault("additional_headers", self.headers if header else {})
        return connect(url, **kwargs)

    def progress_ws(self, execution_id: str, query: str = "", **kwargs: Any) -> Any:
        """The per-execution progress WebSocket."""
        return self.ws(f"/api/v1/executions/{execution_id}/progress/ws{query}", **kwargs)

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

    @staticmethod
    async def recv_json(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
        """The next message as JSON; fails the test if none arrives in time."""
        with anyio.fail_after(timeout):
            message = await ws.recv()
        assert isinstance(message, str), f"expected a text frame, got {message!r}"
        return json.loads(message)

    @staticmethod
    async def read_to_close(
        ws: ClientConnection, timeout: float = WAIT
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Every message until the server closes, and the close code."""
        messages: list[dict[str, Any]] = []
        with anyio.fail_after(timeout):
            try:
                while True:
                    messages.append(json.loads(await ws.recv()))
            except ConnectionClosed:
                pass
        return messages, ws.close_code


def _start(app: Litestar) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Serve on a pre-bound socket so the port cannot be taken between choosing and binding it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return server, thread, port


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Factory: `start_server(engine=None, *, token=None, max_concurrent=None, store=None,
    **app_kwargs)`.

    Without an engine, a fresh one on `store` (default memory) with the bundled demos,
    the test pipelines and a 20 ms progress interval. Every server started is stopped
    after the test.
    """
    started: list[RunningServer] = []

    def start(
        engine: Engine | None = None,
        *,
        token: str | None = None,
        max_concurrent: int | None = None,
        store: ExecutionStore | None = None,
        **kwargs: Any,
    ) -> RunningServer:
        if engine is None:
            engine = make_engine(store=store, max_concurrent=max_concurrent)
        app = create_app(engine, token=token, **kwargs)
        server, thread, port = _start(app)
        running = RunningServer(
            base_url=f"http://127.0.0.1:{port}",
            ws_url=f"ws://127.0.0.1:{port}",
            engine=engine,
            app=app,
            token=token,
            uvicorn_server=server,
            thread=thread,
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.uvicorn_server.should_exit = True
    stuck = []
    for running in started:
        running.thread.join(15)
        if running.thread.is_alive():
            stuck.append(running.base_url)
        for name in running.gates:
            test_pipelines.open_gate(name)
    assert not stuck, f"server(s) did not shut down within 15 s: {stuck}"


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:
    """A server with the bundled demos and the test pipelines, no token, no concurrency limit."""
    return start_server()
