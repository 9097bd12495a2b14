"""Plugins extend the server: routes of their own and wrappers around the ASGI app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from litestar import get
from litestar.di import NamedDependency
from litestar.types import ASGIApp, Receive, Scope, Send

from stepstream import Engine, hookimpl

pytestmark = pytest.mark.anyio


@get("/plugin/count")
async def count_executions(engine: NamedDependency[Engine]) -> dict[str, int]:
    """A plugin route: the engine arrives through Litestar's dependency injection."""
    return {"executions": len(engine.list(limit=200))}


@get("/plugin/public", opt={"public": True})
async def public_hello() -> dict[str, str]:
    return {"hello": "world"}


def add_header(app: ASGIApp) -> ASGIApp:
    """Stamp every HTTP response, as a metrics or tracing wrapper would."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-wrapped", b"yes")]
            await send(message)

        await app(scope, receive, stamped if scope["type"] == "http" else send)

    return wrapped


class ServerPlugin:
    @hookimpl
    def register_routes(self, engine: Engine) -> list[Any]:
        assert isinstance(engine, Engine)
        return [count_executions, public_hello]

    @hookimpl
    def asgi_wrapper(self, engine: Engine) -> Callable[[ASGIApp], ASGIApp]:
        return add_header


class BrokenServerPlugin:
    @hookimpl
    def register_routes(self) -> list[Any]:
        raise RuntimeError("no routes today")

    @hookimpl
    def asgi_wrapper(self) -> Callable[[ASGIApp], ASGIApp]:
        def explode(app: ASGIApp) -> ASGIApp:
            raise RuntimeError("cannot wrap")

        return explode


def _engine(*plugins: object) -> Engine:
    engine = Engine(load_entrypoints=False)
    for plugin in plugins:
        engine.plugins.register(plugin)
    return engine


async def test_a_plugin_adds_routes_that_get_the_engine_and_wraps_the_app(
    start_server: Any,
) -> None:
    server = await start_server(engine=_engine(ServerPlugin()))
    response = await server.http.get("/plugin/count")
    assert response.status_code == 200, response.text
    assert response.json() == {"executions": 0}
    assert response.headers["x-wrapped"] == "yes"
    assert (await server.http.get("/health")).headers["x-wrapped"] == "yes"


async def test_plugin_routes_are_behind_the_token_unless_marked_public(start_server: Any) -> None:
    server = await start_server(engine=_engine(ServerPlugin()), token="s3cret")
    async with server.client(auth=False) as client:
        assert (await client.get("/plugin/count")).status_code == 401
        assert (await client.get("/plugin/public")).json() == {"hello": "world"}
    assert (await server.http.get("/plugin/count")).status_code == 200


async def test_a_broken_server_plugin_is_logged_and_left_out(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        server = await start_server(engine=_engine(BrokenServerPlugin(), ServerPlugin()))
    response = await server.http.get("/plugin/count")
    assert response.status_code == 200
    assert response.headers["x-wrapped"] == "yes"
    assert "raised in hook register_routes" in caplog.text
    assert "asgi_wrapper returned cannot be used" in caplog.text
