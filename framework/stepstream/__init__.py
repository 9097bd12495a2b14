"""stepstream: pipelines of decorated steps whose progress you can watch."""

from .engine import Engine, StepFailedError
from .errors import (
    Cancelled,
    ExecutionFinished,
    InputError,
    PipelineDefinitionError,
    StepstreamError,
    StoreError,
    SubscriptionOverflow,
    UnknownExecution,
)
from .events import ErrorInfo, ExecutionRecord, ProgressSnapshot, StepState
from .pipeline import Pipeline, Step
from .plugins import hookimpl, make_plugin_manager
from .progress import Progress
from .tracker import Tracker

__all__ = [
    "Cancelled",
    "Engine",
    "ErrorInfo",
    "ExecutionFinished",
    "ExecutionRecord",
    "InputError",
    "Pipeline",
    "PipelineDefinitionError",
    "Progress",
    "ProgressSnapshot",
    "Step",
    "StepFailedError",
    "StepState",
    "StepstreamError",
    "StoreError",
    "SubscriptionOverflow",
    "Tracker",
    "UnknownExecution",
    "hookimpl",
    "make_plugin_manager",
]
