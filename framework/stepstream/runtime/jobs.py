"""A job: one execution's runtime handle, what to run and how to stop it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..authoring.progress import Throttle
from ..model.events import ErrorInfo

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline
    from ..tracking.recorder import LiveExecution


class StepFailed(Exception):
    """Internal: a step raised; carries the record's error and the original exception."""

    def __init__(self, error: ErrorInfo, original: BaseException) -> None:
        super().__init__(error.message)
        self.error = error
        self.original = original


class Job:
    """One execution of this engine: its live record, its pipeline and inputs, its stop switch."""

    def __init__(
        self, live: LiveExecution, pipeline: Pipeline, inputs: dict[str, Any], interval: float
    ) -> None:
        self.live = live
        self.execution_id = live.execution_id
        self.pipeline = pipeline
        self.inputs = inputs
        self.throttle = Throttle(interval)
        self.scope: anyio.CancelScope | None = None
        self.started = False
        self.finished = anyio.Event()
        self.outputs: Any = None
        self.failure: StepFailed | None = None

    def cancel(self) -> None:
        """Ask the execution to stop; must be called from the event loop's thread."""
        self.throttle.cancel()
        if self.scope is not None:
            self.scope.cancel()
