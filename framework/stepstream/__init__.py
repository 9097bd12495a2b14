"""stepstream: pipelines of decorated steps whose progress you can watch.

What pipeline authors, users of the engine and plugin authors need is here;
everything else is internal.
"""

from .authoring.pipeline import InputField, Pipeline, Step
from .authoring.progress import DEFAULT_INTERVAL as DEFAULT_PROGRESS_INTERVAL
from .authoring.progress import Progress
from .errors import (
    Cancelled,
    ExecutionElsewhere,
    ExecutionFinished,
    InputError,
    PipelineDefinitionError,
    PipelineTimeout,
    PluginConflict,
    ServerUnavailable,
    StepFailedError,
    StepstreamError,
    StepTimeout,
    StoreError,
    SubscriptionOverflow,
    UnknownExecution,
    UnknownPipeline,
)
from .hookspecs import hookimpl, hookspec
from .model.events import (
    AnyEvent,
    CancelledEvent,
    CompletedEvent,
    Envelope,
    ErrorEvent,
    ErrorInfo,
    Event,
    ExecutionRecord,
    FailedEvent,
    LogEvent,
    LogLine,
    Origin,
    ProgressEvent,
    ProgressSnapshot,
    StartedEvent,
    Status,
    StatusEvent,
    StepState,
    decode_event,
    encode,
)
from .model.fold import apply_event, status_of
from .model.values import DEFAULT_MAX_OUTPUT_BYTES
from .plugins import PluginManager, make_plugin_manager
from .runtime.engine import DEFAULT_LOG_LINES, Engine
from .runtime.jobs import DEFAULT_GRACE as DEFAULT_CANCEL_GRACE
from .stores import ExecutionStore
from .tracking.recorder import Receipt
from .tracking.subscriptions import Subscription

__all__ = [
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_LOG_LINES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_PROGRESS_INTERVAL",
    "AnyEvent",
    "AsyncClient",
    "Cancelled",
    "CancelledEvent",
    "Client",
    "CompletedEvent",
    "Engine",
    "Envelope",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "ExecutionElsewhere",
    "ExecutionFinished",
    "ExecutionRecord",
    "ExecutionStore",
    "FailedEvent",
    "InputError",
    "InputField",
    "LogEvent",
    "LogLine",
    "Origin",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineTimeout",
    "PluginConflict",
    "PluginManager",
    "Progress",
    "ProgressEvent",
    "ProgressSnapshot",
    "Receipt",
    "ServerUnavailable",
    "StartedEvent",
    "Status",
    "StatusEvent",
    "Step",
    "StepFailedError",
    "StepState",
    "StepTimeout",
    "StepstreamError",
    "StoreError",
    "Subscription",
    "SubscriptionOverflow",
    "UnknownExecution",
    "UnknownPipeline",
    "apply_event",
    "decode_event",
    "encode",
    "hookimpl",
    "hookspec",
    "make_plugin_manager",
    "status_of",
]

_CLIENTS = ("AsyncClient", "Client")


def __getattr__(name: str) -> object:
    """`stepstream.Client` and `stepstream.AsyncClient`, imported on first use: the client
    brings httpx, which running pipelines never needs."""
    if name in _CLIENTS:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'stepstream' has no attribute {name!r}")
