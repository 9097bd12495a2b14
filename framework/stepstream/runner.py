"""Runs one execution on anyio: async steps on the event loop, sync steps on one worker thread.

Consecutive sync steps run as one batch in one thread hop, so a sync step costs
a function call plus its hooks. Cancellation reaches async steps through anyio
and sync steps through their Progress handle.
"""

from __future__ import annotations

import traceback
from time import perf_counter
from typing import Any

import anyio
import anyio.to_thread

from .errors import Cancelled
from .events import ErrorInfo, Status
from .pipeline import Pipeline, Step
from .progress import Progress, Throttle


class StepFailed(Exception):
    """Internal: a step raised; carries the record's error and the original exception."""

    def __init__(self, error: ErrorInfo, original: BaseException) -> None:
        super().__init__(error.message)
        self.error = error
        self.original = original


class Job:
    """One execution's runtime handle: what to run and how to stop it."""

    def __init__(
        self, execution_id: str, pipeline: Pipeline, inputs: dict[str, Any], interval: float
    ) -> None:
        self.execution_id = execution_id
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


def error_info(exc: BaseException, step: Step | None = None) -> ErrorInfo:
    """What a failed step's record says: its name, the exception type and message, the traceback."""
    try:
        message = str(exc)
    except Exception:
        message = ""
    return ErrorInfo(
        step=step.name if step is not None else None,
        type=type(exc).__qualname__,
        message=message or type(exc).__qualname__,
        traceback="".join(traceback.format_exception(exc)),
    )


class Runner:
    """Calls a pipeline's steps in order and fires the execution hooks around them."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    async def run(self, job: Job) -> tuple[Status, ErrorInfo | None]:
        """Run `job` to its end; `execution_finished` fires exactly once, whatever happens."""
        hook = self.hook
        job.started = True
        status: Status = "cancelled"
        error: ErrorInfo | None = None
        stop_poking = job.throttle.keep_fresh()
        try:
            hook.execution_started(
                execution_id=job.execution_id, pipeline=job.pipeline, inputs=job.inputs
            )
            with anyio.CancelScope() as scope:
                job.scope = scope
                if job.throttle.cancelled:
                    scope.cancel()
                job.outputs = await self._run_steps(job)
                status = "completed"
        except Cancelled:
            pass
        except StepFailed as failure:
            status, error, job.failure = "failed", failure.error, failure
        except Exception as exc:  # ours, not a step's: the record must still end
            status, error = "failed", error_info(exc)
        finally:
            job.scope = None
            stop_poking()
            if status != "completed":
                job.outputs = None
            hook.execution_finished(
                execution_id=job.execution_id, status=status, outputs=job.outputs, error=error
            )
            job.finished.set()
        return status, error

    async def _run_steps(self, job: Job) -> Any:
        steps = job.pipeline.steps
        value: Any = None
        index = 0
        while index < len(steps):
            if steps[index].is_async:
                value = await self._run_async_step(job, index, value)
                index += 1
                continue
            stop = index
            while stop < len(steps) and not steps[stop].is_async:
                stop += 1
            value = await anyio.to_thread.run_sync(
                self._run_sync_steps, job, index, stop, value, abandon_on_cancel=False
            )
            index = stop
        return value

    def _arguments(
        self, job: Job, step: Step, index: int, value: Any
    ) -> tuple[dict[str, Any], Progress | None]:
        kwargs = dict(job.inputs) if index == 0 else {step.value_param: value}
        progress = None
        if step.progress_param is not None:
            progress = Progress(self._emitter(job, step, index), job.throttle)
            kwargs[step.progress_param] = progress
        return kwargs, progress

    def _emitter(self, job: Job, step: Step, index: int) -> Any:
        step_progress = self.hook.step_progress
        execution_id = job.execution_id

        def emit(progress: Progress) -> None:
            step_progress(
                execution_id=execution_id,
                step=step,
                index=index,
                done=progress.done,
                total=progress.total,
                message=progress.message,
            )

        return emit

    def _run_sync_steps(self, job: Job, start: int, stop: int, value: Any) -> Any:
        """Runs on a worker thread: the whole run of consecutive sync steps."""
        hook = self.hook
        step_started, step_done = hook.step_started, hook.step_done
        execution_id = job.execution_id
        steps = job.pipeline.steps
        throttle = job.throttle
        for index in range(start, stop):
            if throttle.cancelled:
                raise Cancelled("execution cancelled")
            step = steps[index]
            step_started(execution_id=execution_id, step=step, index=index)
            began = perf_counter()
            if index and step.takes_value_only:
                try:
                    value = step.fn(value)
                except Cancelled:
                    raise
                except BaseException as exc:  # SystemExit too: a step must not stop the server
                    self._fail(job, step, index, exc)
            else:
                value = self._call_sync(job, step, index, value)
            step_done(
                execution_id=execution_id, step=step, index=index, duration=perf_counter() - began
            )
        return value

    def _call_sync(self, job: Job, step: Step, index: int, value: Any) -> Any:
        kwargs, progress = self._arguments(job, step, index, value)
        try:
            value = step.fn(**kwargs)
        except Cancelled:
            raise
        except BaseException as exc:
            self._fail(job, step, index, exc)
        if progress is not None:
            progress._finish()
        return value

    async def _run_async_step(self, job: Job, index: int, value: Any) -> Any:
        hook = self.hook
        step = job.pipeline.steps[index]
        hook.step_started(execution_id=job.execution_id, step=step, index=index)
        kwargs, progress = self._arguments(job, step, index, value)
        began = perf_counter()
        try:
            value = await step.fn(**kwargs)
        except (Cancelled, KeyboardInterrupt, anyio.get_cancelled_exc_class()):
            raise
        except BaseException as exc:
            self._fail(job, step, index, exc)
        if progress is not None:
            progress._finish()
        hook.step_done(
            execution_id=job.execution_id, step=step, index=index, duration=perf_counter() - began
        )
        return value

    def _fail(self, job: Job, step: Step, index: int, exc: BaseException) -> None:
        error = error_info(exc, step)
        self.hook.step_failed(execution_id=job.execution_id, step=step, index=index, error=error)
        raise StepFailed(error, exc) from exc
