"""What create_app keeps in the app's state, and how handlers reach it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from litestar.connection import ASGIConnection
from stepstream import Engine

T = TypeVar("T")

STORE_THREADS = 8  # store calls waiting at once; more queue, so sync steps keep their threads


def engine_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Engine:
    """The engine create_app serves, for an HTTP request or a WebSocket."""
    return connection.app.state.engine


async def off_loop(
    connection: ASGIConnection[Any, Any, Any, Any], call: Callable[..., T], *args: Any
) -> T:
    """Run a call that may read or flush the store on a worker thread, never on the event loop.

    A store read is normally well under a millisecond, but a SQLite store flushes
    before replaying lifecycle events, and that takes half a second while its
    writer fails; the loop keeps serving everyone else meanwhile. The app's
    lifespan makes the limiter (`store_threads`).
    """
    limiter: anyio.CapacityLimiter = connection.app.state.store_threads
    return await anyio.to_thread.run_sync(call, *args, limiter=limiter)
