"""The HTTP API, one module per resource; the WebSockets are in `streams`."""

from __future__ import annotations

from litestar import Router

from ..streams import progress_stream, watch_stream
from .events import receive_events
from .executions import ExecutionController
from .health import health, ready
from .logs import get_logs
from .pipelines import PipelineController

API_PREFIX = "/api/v1"


def api_router() -> Router:
    """`/api/v1`: executions, pipelines, the ingest route and both WebSocket streams."""
    return Router(
        API_PREFIX,
        route_handlers=[
            ExecutionController,
            get_logs,
            PipelineController,
            receive_events,
            progress_stream,
            watch_stream,
        ],
    )


__all__ = ["API_PREFIX", "api_router", "health", "ready"]
