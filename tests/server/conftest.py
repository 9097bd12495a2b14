"""Server test fixtures: `create_app(engine)` served in-process, in the test's own event loop.

HTTP goes through httpx's ASGI transport and WebSockets through httpx-ws's, so a
server starts in milliseconds with no socket and no thread. What only a real
socket shows (backpressure, TCP aborts, sync clients) is tested in tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from litestar import Litestar

from stepstream import Engine
from stepstream.stores import ExecutionStore
from stepstream_server.app import create_app
from stepstream_server.sites import LOOPBACK_HOSTS

from cli_support import WAIT
from server_support import Api, bearer, make_engine

BASE_URL = "http://testserver"
SHUTDOWN = 15.0  # seconds for the app's lifespan to exit


def app_client(app: Litestar, headers: Mapping[str, str]) -> httpx.AsyncClient:
    """An httpx client that calls the app in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL, headers=headers)


@dataclass
class Server(Api):
    """An app whose lifespan runs in the test's event loop, with client helpers."""

    app: Litestar = field(kw_only=True)
    stopping: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the app's lifespan (and so the engine) open until `stop()`."""
        try:
            async with self.app.lifespan():
                task_status.started()
                await self.stopping.wait()
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        """Leave the lifespan as a server shutting down does; fail if it hangs."""
        self.stopping.set()
        with anyio.move_on_after(SHUTDOWN):
            await self.stopped.wait()
        assert self.stopped.is_set(), f"the app's lifespan did not exit within {SHUTDOWN} s"

    def client(self, *, auth: bool = True) -> httpx.AsyncClient:
        """An httpx client for the app, sending the token unless `auth=False`."""
        return app_client(self.app, self.headers if auth else {})

    @asynccontextmanager
    async def ws(
        self, path: str, *, token: str | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncWebSocketSession]:
        """A WebSocket to `path`, with the token in `headers` (default) or as `?token=`.

        Each connection has its own transport: httpx-ws keeps the handshake's scope on
        the transport, so two handshakes at once through one could swap their paths.
        """
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token}"
        # A copy: aconnect_ws adds its handshake headers to the mapping it is given.
        sent = dict(self.headers if headers is None else headers)
        transport = ASGIWebSocketTransport(self.app, initial_receive_timeout=WAIT)
        async with (
            httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
            aconnect_ws(path, client, headers=sent) as ws,
        ):
            yield ws

    def progress_ws(
        self, execution_id: str, query: str = "", **kwargs: Any
    ) -> AbstractAsyncContextManager[AsyncWebSocketSession]:
        """The per-execution progress WebSocket."""
        return self.ws(f"/api/v1/executions/{execution_id}/progress/ws{query}", **kwargs)

    @staticmethod
    async def recv_json(ws: AsyncWebSocketSession, timeout: float = WAIT) -> dict[str, Any]:
        """The next message, a text frame, as JSON; fails the test if none arrives in time."""
        with anyio.fail_after(timeout):
            return json.loads(await ws.receive_text())

    @staticmethod
    async def read_to_close(
        ws: AsyncWebSocketSession, timeout: float = WAIT
    ) -> tuple[list[dict[str, Any]], int]:
        """Every message until the server closes, and the close code."""
        messages: list[dict[str, Any]] = []
        with anyio.fail_after(timeout):
            try:
                while True:
                    messages.append(json.loads(await ws.receive_text()))
            except WebSocketDisconnect as closed:
                return messages, closed.code


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Factory: `await start_server(*, token=None, max_concurrent=None, store=None,
    engine=None, **app_kwargs)`; `allowed_hosts` defaults to the loopback names and
    `testserver`, the host the in-process client asks for.

    Each server has the given engine, or a fresh one on `store` (default memory) with
    the bundled demos, the test pipelines and a 20 ms progress interval. Every server
    started is stopped after the test, then its gates are opened.
    """
    servers: list[Server] = []
    async with AsyncExitStack() as clients, anyio.create_task_group() as lifespans:

        async def start(
            *,
            token: str | None = None,
            max_concurrent: int | None = None,
            store: ExecutionStore | None = None,
            engine: Engine | None = None,
            **kwargs: Any,
        ) -> Server:
            engine = engine or make_engine(store=store, max_concurrent=max_concurrent)
            # The in-process client asks for host `testserver`; a real server answers
            # the loopback names by default.
            kwargs.setdefault("allowed_hosts", (*LOOPBACK_HOSTS, "testserver"))
            app = create_app(engine, token=token, **kwargs)
            http = await clients.enter_async_context(app_client(app, bearer(token)))
            server = Server(http=http, engine=engine, token=token, app=app)
            await lifespans.start(server.serve)
            servers.append(server)
            return server

        yield start
        try:
            for server in servers:
                await server.stop()
        finally:
            for server in servers:
                server.open_gates()


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[Server]]) -> Server:
    """A server with the bundled demos and the test pipelines, no token, no concurrency limit."""
    return await start_server()
