"""stepstream: pipelines of decorated steps whose progress you can watch.

What pipeline authors, users of the engine and plugin authors need is here;
everything else is internal. Each name is imported on first use, so a worker
that only declares pipelines never pays for the engine, and `import stepstream`
costs next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .authoring.pipeline import InputField, Pipeline, Step
    from .authoring.progress import Progress
    from .client import AsyncClient, Client
    from .defaults import (
        DEFAULT_CANCEL_GRACE,
        DEFAULT_LOG_LINES,
        DEFAULT_MAX_OUTPUT_BYTES,
        DEFAULT_PROGRESS_INTERVAL,
    )
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
    from .plugins import PluginManager, make_plugin_manager
    from .runtime.engine import Engine
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

# Where each public name lives; `__getattr__` imports it from there on first use.
_HOMES = {
    "AsyncClient": ("client", "AsyncClient"),
    "Client": ("client", "Client"),
    "DEFAULT_CANCEL_GRACE": ("defaults", "DEFAULT_CANCEL_GRACE"),
    "DEFAULT_LOG_LINES": ("defaults", "DEFAULT_LOG_LINES"),
    "DEFAULT_MAX_OUTPUT_BYTES": ("defaults", "DEFAULT_MAX_OUTPUT_BYTES"),
    "DEFAULT_PROGRESS_INTERVAL": ("defaults", "DEFAULT_PROGRESS_INTERVAL"),
    "Engine": ("runtime.engine", "Engine"),
    "ExecutionStore": ("stores", "ExecutionStore"),
    "InputField": ("authoring.pipeline", "InputField"),
    "Pipeline": ("authoring.pipeline", "Pipeline"),
    "PluginManager": ("plugins", "PluginManager"),
    "Progress": ("authoring.progress", "Progress"),
    "Receipt": ("tracking.recorder", "Receipt"),
    "Step": ("authoring.pipeline", "Step"),
    "Subscription": ("tracking.subscriptions", "Subscription"),
    "apply_event": ("model.fold", "apply_event"),
    "hookimpl": ("hookspecs", "hookimpl"),
    "hookspec": ("hookspecs", "hookspec"),
    "make_plugin_manager": ("plugins", "make_plugin_manager"),
    "status_of": ("model.fold", "status_of"),
}
_ERRORS = (
    "Cancelled",
    "ExecutionElsewhere",
    "ExecutionFinished",
    "InputError",
    "PipelineDefinitionError",
    "PipelineTimeout",
    "PluginConflict",
    "ServerUnavailable",
    "StepFailedError",
    "StepstreamError",
    "StepTimeout",
    "StoreError",
    "SubscriptionOverflow",
    "UnknownExecution",
    "UnknownPipeline",
)
_EVENTS = (
    "AnyEvent",
    "CancelledEvent",
    "CompletedEvent",
    "Envelope",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "ExecutionRecord",
    "FailedEvent",
    "LogEvent",
    "LogLine",
    "Origin",
    "ProgressEvent",
    "ProgressSnapshot",
    "StartedEvent",
    "Status",
    "StatusEvent",
    "StepState",
    "decode_event",
    "encode",
)
_HOMES.update({name: ("errors", name) for name in _ERRORS})
_HOMES.update({name: ("model.events", name) for name in _EVENTS})


def __getattr__(name: str) -> object:
    """A public name, imported from its module on first use and kept here after."""
    try:
        module, attribute = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module 'stepstream' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, imported or not."""
    return sorted(set(globals()) | set(__all__))
