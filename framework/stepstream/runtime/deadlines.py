"""Timeouts: a sync attempt's deadline, a whole execution's, and how a timed-out run ends.

Both act through the cancel machinery of `Job`: an async step is cancelled through
anyio; a sync step's next Progress call raises; a sync step that makes none is
abandoned once the cancel grace has passed too, as after a cancel. All of it runs
on the event loop, so the throttle's flags change on one thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.from_thread

from ..errors import Cancelled, PipelineTimeout, StepTimeout
from ..model.events import ErrorInfo, Status
from .jobs import Job, StepFailed

if TYPE_CHECKING:
    from ..authoring.pipeline import Step


class TimedOut(Cancelled):
    """Internal: what a sync step's Progress handle raises once its attempt's time is up.

    A Cancelled, so that the step's own `except Exception:` does not swallow it.
    """


def step_timeout(step: Step, seconds: float) -> StepTimeout:
    """The error of an attempt that ran out of time."""
    return StepTimeout(f"step {step.name!r} timed out after {seconds:g} s")


class Deadline:
    """The time limit of one attempt of a sync step, kept by timers on the event loop.

    At the limit the step's next Progress call raises TimedOut; after the cancel
    grace on top, a step that made none is abandoned and the execution fails.
    Made and used on the worker thread through `arm` and `disarm`.
    """

    __slots__ = ("fired", "handle", "job", "seconds", "step", "throttle")

    def __init__(self, job: Job, step: Step, seconds: float) -> None:
        self.job = job
        self.throttle = job.throttle  # the step's own, when it runs beside others
        self.step = step
        self.seconds = seconds
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Start the clock (from the worker thread)."""
        anyio.from_thread.run_sync(self._start)

    def disarm(self) -> bool:
        """Stop the clock (from the worker thread); True if the time ran out meanwhile."""
        return anyio.from_thread.run_sync(self._stop)

    def _start(self) -> None:
        self.handle = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def _expire(self) -> None:
        throttle = self.throttle
        if throttle.stopped.is_set():  # cancelled: the job's own grace takes over
            return
        self.fired = True
        throttle.interrupt = TimedOut(str(step_timeout(self.step, self.seconds)))
        throttle.cancelled = True
        throttle.poke()
        self.job.live.guard()  # the thread may have to be sealed off
        self.handle = asyncio.get_running_loop().call_later(self.job.grace, self._give_up)

    def _give_up(self) -> None:
        job = self.job
        if self.throttle.stopped.is_set():
            return
        job.timed_out = ErrorInfo(
            type=StepTimeout.__qualname__,
            step=self.step.name,
            message=(
                f"{step_timeout(self.step, self.seconds)}; it made no Progress call in the "
                f"{job.grace:g} s cancel grace that followed, so it could not be stopped: "
                "its thread was abandoned and runs on until the step returns"
            ),
        )
        job.cancel()
        job.abandon()

    def _stop(self) -> bool:
        if self.handle is not None:
            self.handle.cancel()
        throttle = self.throttle
        if self.fired and not throttle.stopped.is_set():
            throttle.cancelled = False
            throttle.interrupt = None
        return self.fired


def watch(job: Job) -> Callable[[], None]:
    """Start the execution's own time limit, if its pipeline has one; returns what stops it."""
    seconds = job.pipeline.timeout
    if seconds is None:
        return lambda: None

    def expire() -> None:
        if job.cancelled_at is not None:  # already stopping: a cancel is not a timeout
            return
        running = [s.name for s in job.live.record.steps if s.status == "running"]
        where = f" in step {' and '.join(map(repr, running))}" if running else ""
        job.timed_out = ErrorInfo(
            type=PipelineTimeout.__qualname__,
            step=running[0] if running else None,
            message=f"pipeline {job.pipeline.name!r} timed out after {seconds:g} s{where}",
        )
        job.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    return handle.cancel


def verdict(job: Job, status: Status, error: ErrorInfo | None) -> tuple[Status, ErrorInfo | None]:
    """How the run ends: a run that a timeout stopped failed, with the timeout as its error."""
    timed_out = job.timed_out
    if status != "cancelled" or timed_out is None:
        return status, error
    if job.abandoned and timed_out.type == PipelineTimeout.__qualname__:
        timed_out.message += (
            f"; the step made no Progress call in the {job.grace:g} s cancel grace that "
            "followed, so its thread was abandoned and runs on until the step returns"
        )
    kind = StepTimeout if timed_out.type == StepTimeout.__qualname__ else PipelineTimeout
    job.failure = StepFailed(timed_out, kind(timed_out.message))
    return "failed", timed_out
