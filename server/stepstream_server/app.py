"""The Litestar application: routes, auth, problem details, plugins and the engine's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, TypeVar

import anyio
from litestar import Litestar, Router
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler

from stepstream import Engine, StoreError
from stepstream.transports import CancelRelay, ReadableTransport, Transport
from stepstream.transports.publisher import publishing
from stepstream.transports.subscriber import Subscriber

from .api import api_router, health, ready
from .auth import bearer_auth, public_routes, public_trees, token_problem
from .bodies import JsonRequest
from .dashboard import dashboard_routes, schema_plugins
from .dependencies import OffLoop, provide
from .direct import keep_server_send
from .hookspecs import add_server_hookspecs
from .hosts import LOOPBACK_HOSTS
from .openapi import PipelinesJson, PipelinesYaml
from .problems import (
    http_exception_handler,
    internal_error_handler,
    not_found_as_problem,
    store_error_handler,
)
from .retention import PRUNE_INTERVAL, Retention, prune_forever
from .sites import SitePolicy, site_guard
from .submissions import Submissions

DEFAULT_MAX_BODY_SIZE = 1_048_576

T = TypeVar("T")
log = logging.getLogger("stepstream_server")


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    retention: Retention | None = None,
    prune_interval: float = PRUNE_INTERVAL,
    publish: Sequence[Transport] = (),
    subscribe: Sequence[ReadableTransport] = (),
    publish_timeout: float = 5.0,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    allowed_origins: Iterable[str] = (),
) -> Litestar:
    """Serve `engine` over HTTP and WebSocket; executions run while the app runs.

    The app's lifespan enters the engine, so leaving it (server shutdown)
    cancels running executions and their records end `cancelled`. With a
    `retention`, the store is pruned at start and every `prune_interval` seconds.
    What the engine runs is sent to each `publish` transport (flushed for at most
    `publish_timeout` seconds at shutdown); what each `subscribe` transport
    carries from elsewhere is received into it. Plugins add routes
    (`register_routes`) and wrap the app (`asgi_wrapper`).

    Requests must name one of `allowed_hosts` in their Host header (`*`: any), and
    web pages of other sites than the server's own may use it only from
    `allowed_origins` (`scheme://host[:port]`), which also get CORS headers; see
    `sites.py`. A bad entry in either raises ValueError.
    """
    if token is not None and (problem := token_problem(token)) is not None:
        raise ValueError(f"the token {problem} (None serves without one)")
    sites = SitePolicy(allowed_hosts, allowed_origins)
    plugins = engine.plugins
    add_server_hookspecs(plugins)
    off_loop = OffLoop()
    submissions = Submissions(engine, off_loop)

    @asynccontextmanager
    async def run_engine(app: Litestar) -> AsyncIterator[None]:
        off_loop.start()
        try:
            async with (
                publishing(engine, publish, flush_timeout=publish_timeout),
                engine,
                anyio.create_task_group() as tasks,
            ):
                if retention is not None:
                    tasks.start_soon(prune_forever, engine.store, retention, prune_interval)
                for transport in subscribe:
                    await tasks.start(Subscriber(engine, transport).run)
                    if isinstance(transport, CancelRelay):
                        engine.relay_cancels(transport)
                yield
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for transport in subscribe:
                    await transport.aclose()

    app = Litestar(
        route_handlers=[api_router(), health, ready, *dashboard_routes()],
        dependencies=provide(engine, off_loop, submissions),
        lifespan=[run_engine],
        state={"max_body_size": max_body_size},
        exception_handlers={
            HTTPException: http_exception_handler,
            StoreError: store_error_handler,
            Exception: internal_error_handler,
        },
        request_max_body_size=max_body_size,
        request_class=JsonRequest,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="stepstream",
            version=version("stepstream-server"),
            description="Start pipeline executions and watch their progress.",
            render_plugins=schema_plugins([PipelinesJson(engine), PipelinesYaml(engine)]),
            openapi_router=Router(
                "/schema",
                route_handlers=[],
                include_in_schema=False,
                after_request=not_found_as_problem,
            ),
        ),
    )
    for offer in plugins.collect("register_routes", engine=engine):
        _isolated(offer.plugin, "register_routes", _register_all, app, offer.value)
    # Innermost wrapper: the WebSocket streams may write frames past `send` only if
    # no wrapper below turns it into something else (see direct.py).
    app.asgi_handler = keep_server_send(app.asgi_handler)
    if token is not None:
        # Around the router, not Litestar middleware: it guards unknown paths too and
        # adds no layer to every route (see auth.py).
        app.asgi_handler = bearer_auth(
            app.asgi_handler, token, public_routes(app), public_trees(app)
        )
    for offer in reversed(plugins.collect("asgi_wrapper", engine=engine)):
        wrapped = _isolated(offer.plugin, "asgi_wrapper", offer.value, app.asgi_handler)
        if wrapped is not None:
            app.asgi_handler = wrapped
    # Outermost: no plugin wrapper, token check or route sees a request from a site
    # that may not use this server.
    app.asgi_handler = site_guard(app.asgi_handler, sites)
    return app


def _register_all(app: Litestar, handlers: Iterable[ControllerRouterHandler]) -> None:
    for handler in handlers:
        app.register(handler)


def _isolated(plugin: str, hook: str, apply: Callable[..., T], *args: Any) -> T | None:
    """Apply what a plugin's server hook returned; if that fails, log it and leave it out."""
    try:
        return apply(*args)
    except Exception:
        log.exception("plugin %r: what its %s returned cannot be used; left out", plugin, hook)
        return None
