"""The Litestar application: routes, auth, problem details and the engine's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import anyio
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from stepstream import Engine, StoreError
from stepstream.retention import PRUNE_INTERVAL, Retention, prune_forever

from .auth import bearer_auth, public_routes, public_trees
from .dashboard import dashboard_routes, schema_plugins
from .problems import (
    http_exception_handler,
    internal_error_handler,
    not_found_as_problem,
    store_error_handler,
)
from .routes import ExecutionController, PipelineController, health
from .state import STORE_THREADS
from .streams import progress_stream, watch_stream

API_PREFIX = "/api/v1"
DEFAULT_MAX_BODY_SIZE = 1_048_576


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    retention: Retention | None = None,
    prune_interval: float = PRUNE_INTERVAL,
) -> Litestar:
    """Serve `engine` over HTTP and WebSocket; executions run while the app runs.

    The app's lifespan enters the engine, so leaving it (server shutdown)
    cancels running executions and their records end `cancelled`. With a
    `retention`, the store is pruned at start and every `prune_interval` seconds.
    """

    @asynccontextmanager
    async def run_engine(app: Litestar) -> AsyncIterator[None]:
        app.state.store_threads = anyio.CapacityLimiter(STORE_THREADS)
        async with engine, anyio.create_task_group() as tasks:
            if retention is not None:
                tasks.start_soon(prune_forever, engine.tracker.store, retention, prune_interval)
            yield
            tasks.cancel_scope.cancel()

    api = Router(
        API_PREFIX,
        route_handlers=[ExecutionController, PipelineController, progress_stream, watch_stream],
    )
    app = Litestar(
        route_handlers=[api, health, *dashboard_routes()],
        lifespan=[run_engine],
        state=State({"engine": engine, "max_body_size": max_body_size}),
        exception_handlers={
            HTTPException: http_exception_handler,
            StoreError: store_error_handler,
            Exception: internal_error_handler,
        },
        request_max_body_size=max_body_size,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="stepstream",
            version=version("stepstream-server"),
            description="Start pipeline executions and watch their progress.",
            render_plugins=schema_plugins(),
            openapi_router=Router(
                "/schema",
                route_handlers=[],
                include_in_schema=False,
                after_request=not_found_as_problem,
            ),
        ),
    )
    if token:
        # Around the router, not Litestar middleware: it guards unknown paths too and
        # adds no layer to every route (see auth.py).
        app.asgi_handler = bearer_auth(
            app.asgi_handler, token, public_routes(app), public_trees(app)
        )
    return app
