"""A job: one execution's runtime handle, what to run and how to stop it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio

from ..authoring.progress import Throttle
from ..defaults import DEFAULT_CANCEL_GRACE
from ..errors import Cancelled
from ..model.events import ErrorInfo

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline
    from ..tracking.logs import LogBuffer
    from ..tracking.recorder import LiveExecution


# The throttle of the step running in this task or thread, when steps run side by side.
_STEP_THROTTLE: ContextVar[Throttle | None] = ContextVar("step_throttle", default=None)


class StepFailed(Exception):
    """Internal: a step raised; carries the record's error and the original exception."""

    def __init__(self, error: ErrorInfo, original: BaseException) -> None:
        super().__init__(error.message)
        self.error = error
        self.original = original


class CancelIgnored(Cancelled):
    """Internal: the execution ends cancelled because a step ignored the cancel; says how."""

    def __init__(self, step: str | None, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class Job:
    """One execution of this engine: its live record, its pipeline and inputs, its stop switch.

    A cancel stops an async step at once and a sync step at its next Progress call.
    A sync step that makes none within `grace` seconds is abandoned: the execution
    ends without it, its slot is freed, and its thread finishes on its own, its
    bookkeeping sealed off (`LiveExecution.seal`).
    """

    def __init__(
        self,
        live: LiveExecution,
        pipeline: Pipeline,
        inputs: dict[str, Any],
        interval: float,
        grace: float = DEFAULT_CANCEL_GRACE,
    ) -> None:
        self.live = live
        self.execution_id = live.execution_id
        self.pipeline = pipeline
        self.inputs = inputs
        self._throttle = Throttle(interval)
        self.branch_throttles: set[Throttle] = set()  # of the steps running side by side
        self.grace = grace
        self.scope: anyio.CancelScope | None = None
        self.thread_scopes: set[anyio.CancelScope] = set()  # around sync steps' threads
        self.started = False
        self.ended = False  # its ending is recorded (`finished` is set once it is kept)
        self.finished = asyncio.Event()  # the engine runs on asyncio; anyio's costs a lookup
        self.outputs: Any = None
        self.failure: StepFailed | None = None
        self.cancelled_at: float | None = None  # monotonic time of the first cancel
        self.abandoned = False
        self.timed_out: ErrorInfo | None = None  # set when a timeout, not a person, stopped it
        self.logs: LogBuffer | None = None  # what its steps print and log, when captured

    @property
    def throttle(self) -> Throttle:
        """The running step's throttle: the execution's, or a branch's own in a graph."""
        return _STEP_THROTTLE.get() or self._throttle

    @contextmanager
    def branch(self) -> Iterator[Throttle]:
        """Give the step run in this task its own throttle, which a cancel reaches too."""
        throttle = Throttle(self._throttle.interval)
        if self._throttle.cancelled:
            throttle.cancel()
        self.branch_throttles.add(throttle)
        token = _STEP_THROTTLE.set(throttle)
        stop_poking = throttle.keep_fresh()
        try:
            yield throttle
        finally:
            stop_poking()
            _STEP_THROTTLE.reset(token)
            self.branch_throttles.discard(throttle)

    def cancel(self) -> None:
        """Ask the execution to stop; must be called from the event loop's thread."""
        if self.cancelled_at is None:
            self.cancelled_at = time.monotonic()
            self.live.guard()  # from now on a step's thread may have to be sealed off
            self.abandon_after_grace()
        self._throttle.cancel()
        for throttle in list(self.branch_throttles):
            throttle.cancel()
        if self.scope is not None:
            self.scope.cancel()

    def abandon_after_grace(self) -> None:
        """Give the sync steps still running the cancel grace to stop; then stop waiting."""
        asyncio.get_running_loop().call_later(self.grace, self.abandon)

    def abandon(self) -> None:
        """The grace period is over: stop waiting for the steps' threads."""
        if self.thread_scopes and not self.finished.is_set():
            self.abandoned = True
            for scope in list(self.thread_scopes):
                scope.cancel()

    def ignored(self, step: str) -> CancelIgnored:
        """What ends an execution whose `step` returned after a cancel it never noticed."""
        now = time.monotonic()
        waited = now - (self.cancelled_at or now)  # None: a sibling's failure stopped it
        return CancelIgnored(
            step,
            f"cancel requested, but step {step!r} did not stop at it (it made no Progress call) "
            f"and ran {waited:.1f} s to its end; what it returned was discarded",
        )

    def abandoned_in(self, step: str | None) -> CancelIgnored:
        """What ends an execution whose sync step outlived the grace period."""
        where = f"step {step!r}" if step else "its step"
        return CancelIgnored(
            step,
            f"{where} did not stop within {self.grace:g} s of the cancel (it made no Progress "
            "call); it was abandoned and its thread left to finish on its own",
        )
