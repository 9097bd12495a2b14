"""A Python client for a stepstream server: `Client` (blocking) and `AsyncClient`.

It answers with the framework's own types (`ExecutionRecord`, `ProgressSnapshot`,
the event Structs) and raises the framework's exceptions, so code written
against a local `Engine` reads the same against a server. httpx and httpx-ws are
imported with this package, never by `import stepstream`.
"""

from .aio import AsyncClient
from .connection import DEFAULT_RETRY_FOR, DEFAULT_TIMEOUT, DEFAULT_URL
from .schemas import EventLog, ExecutionPage, InputInfo, LogPage, PipelineInfo, StepInfo
from .streams import AsyncEventStream, EventStream
from .sync import Client

__all__ = [
    "DEFAULT_RETRY_FOR",
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncEventStream",
    "Client",
    "EventLog",
    "EventStream",
    "ExecutionPage",
    "InputInfo",
    "LogPage",
    "PipelineInfo",
    "StepInfo",
]
