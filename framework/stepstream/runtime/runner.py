"""Runs one execution on anyio: async steps on the event loop, sync steps on one worker thread.

Consecutive sync steps run as one batch in one thread hop, so a sync step costs
a function call plus its bookkeeping. Cancellation reaches async steps through
anyio and sync steps through their Progress handle.

Each change is first recorded (`job.live`, the recorder) and then announced to
plugins (`hook`, the isolated relay), so a hook always sees the state after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from ..authoring.progress import Progress
from ..errors import Cancelled
from ..model.events import ErrorInfo, ExecutionRecord, Status
from ..tracking import logs
from . import attempts, branches, deadlines, threads
from .failures import error_info
from .jobs import CancelIgnored, Job, StepFailed

KEEP_WAIT = 5.0  # seconds `execution_finished` waits for the store to keep an ending

if TYPE_CHECKING:
    from ..authoring.pipeline import Step


class Runner:
    """Calls a pipeline's steps in order, recording each change, then firing its hook.

    With `keep_log_lines`, what steps print and log is captured (the last that
    many lines of each execution kept); None leaves stdout and logging alone.
    """

    def __init__(self, hook: Any, keep_log_lines: int | None = None) -> None:
        self.hook = hook
        self.keep_log_lines = keep_log_lines

    async def run(self, job: Job) -> tuple[Status, ErrorInfo | None]:
        """Run `job` to its end; `execution_finished` fires exactly once, whatever happens."""
        hook = self.hook
        job.started = True
        status: Status = "cancelled"
        error: ErrorInfo | None = None
        stop_poking = job.throttle.keep_fresh()
        stop_timing = deadlines.watch(job)
        stop_capturing = self._capture(job)
        try:
            record = job.live.started(side_by_side=job.pipeline.is_graph)
            hook.execution_started(
                execution_id=job.execution_id,
                pipeline=job.pipeline,
                inputs=job.inputs,
                record=record,
            )
            with anyio.CancelScope() as scope:
                job.scope = scope
                if job.throttle.cancelled:
                    scope.cancel()
                job.outputs = await self._run_steps(job)
                status = "completed"
        except CancelIgnored as ignored:
            error = ErrorInfo(type="CancelIgnored", step=ignored.step, message=ignored.reason)
        except Cancelled:
            pass
        except StepFailed as failure:
            status, error, job.failure = "failed", failure.error, failure
        except Exception as exc:  # ours, not a step's: the record must still end
            status, error = "failed", error_info(exc)
        finally:
            job.scope = None
            stop_poking()
            stop_timing()
            stop_capturing()
            status, error = deadlines.verdict(job, status, error)
            if status != "completed":
                job.outputs = None
            await self.finish(job, status, error)
        return status, error

    def _capture(self, job: Job) -> Callable[[], None]:
        """Send what this job's steps print and log to its own buffer; returns what ends it."""
        if self.keep_log_lines is None:
            return lambda: None
        logs.install()
        buffer = job.logs = logs.LogBuffer(job.live, self.keep_log_lines)
        undo = logs.capturing(buffer)

        def stop() -> None:
            undo()
            buffer.flush(end=True)

        return stop

    async def finish(self, job: Job, status: Status, error: ErrorInfo | None = None) -> None:
        """Record the end of `job`, then tell the plugins once the store keeps it."""
        record = self.end(job, status, error)
        await self.announce(job, record, status, error)

    def end(self, job: Job, status: Status, error: ErrorInfo | None = None) -> ExecutionRecord:
        """Record the end of `job` (run, or still pending); `announce` follows."""
        job.ended = True
        return job.live.finished(status, job.outputs, error)

    async def announce(
        self, job: Job, record: ExecutionRecord, status: Status, error: ErrorInfo | None
    ) -> None:
        """Fire `execution_finished` once the store keeps the ending (waiting at most
        KEEP_WAIT seconds, also while shutting down), so a plugin reading the engine sees it."""
        kept = job.live.kept
        if kept is not None and not kept.done():
            with anyio.move_on_after(KEEP_WAIT, shield=True):
                await asyncio.shield(kept)
        self.announce_now(job, record, status, error)

    def announce_now(
        self, job: Job, record: ExecutionRecord, status: Status, error: ErrorInfo | None
    ) -> None:
        """Fire `execution_finished` and wake whoever waits for the job, without waiting."""
        self.hook.execution_finished(
            execution_id=job.execution_id,
            status=status,
            outputs=job.outputs,
            error=error,
            record=record,
        )
        job.finished.set()

    async def _run_steps(self, job: Job) -> Any:
        if job.pipeline.is_graph or job.pipeline.outputs is not None:
            return await branches.run_graph(self, job)
        steps = job.pipeline.steps
        value: Any = None
        index = 0
        while index < len(steps):
            if steps[index].is_async:
                value = await self.run_async_step(job, index, value)
                index += 1
                continue
            stop = index
            while stop < len(steps) and not steps[stop].is_async:
                stop += 1
            value = await self.in_thread(job, self.run_sync_steps, job, index, stop, value)
            index = stop
        return value

    async def in_thread(self, job: Job, work: Callable[..., Any], *args: Any) -> Any:
        """Run sync steps (`work(*args)`) on a worker thread, let go of it if a cancel
        outlives the grace period.

        The thread's scope is shielded, so a cancel (or a shutdown) waits for the step's
        next Progress call; `Job` cancels this scope when the grace period is over.
        """
        with anyio.CancelScope(shield=True) as scope:
            job.thread_scopes.add(scope)
            try:
                return await threads.run_sync(work, *args)
            finally:
                job.thread_scopes.discard(scope)
        running = [s.name for s in job.live.record.steps if s.status == "running"]
        job.live.seal()  # what the thread still reports is refused from now on
        raise job.abandoned_in(running[0] if running else None)

    def _arguments(
        self, job: Job, step: Step, index: int, value: Any
    ) -> tuple[dict[str, Any], Progress | None]:
        if index == 0:
            kwargs = dict(job.inputs)
        elif step.value_param is not None:
            kwargs = {step.value_param: value}
        else:  # a step of a graph: `value` holds what its parameters take (`branches`)
            kwargs = dict(value)
        progress = None
        if step.progress_param is not None:
            progress = Progress(self._emitter(job, step, index), job.throttle)
            kwargs[step.progress_param] = progress
        return kwargs, progress

    def _emitter(self, job: Job, step: Step, index: int) -> Any:
        step_progress = self.hook.step_progress
        record_progress = job.live.step_progress
        execution_id = job.execution_id

        def emit(progress: Progress) -> None:
            done, total, message = progress.done, progress.total, progress.message
            step_progress(
                execution_id=execution_id,
                step=step,
                index=index,
                done=done,
                total=total,
                message=message,
                progress=record_progress(index, done, total, message),
            )

        return emit

    def run_sync_steps(self, job: Job, start: int, stop: int, value: Any) -> Any:
        """Runs on a worker thread: the whole run of consecutive sync steps."""
        hook, live = self.hook, job.live
        step_started, step_done = hook.step_started, hook.step_done
        record_started, record_ended = live.step_started, live.step_ended
        execution_id = job.execution_id
        steps = job.pipeline.steps
        throttle = job.throttle
        capturing = job.logs is not None
        for index in range(start, stop):
            if throttle.cancelled:
                raise Cancelled("execution cancelled")
            step = steps[index]
            step_started(
                execution_id=execution_id, step=step, index=index, progress=record_started(index)
            )
            began = perf_counter()
            in_step = logs.STEP.set(step.name) if capturing else None
            try:
                if step.attempts is not None:
                    value = attempts.call_sync(self, job, step, index, value)
                elif index and step.takes_value_only:
                    try:
                        value = step.fn(value)
                    except Cancelled:
                        raise
                    except BaseException as exc:  # SystemExit too: a step must not stop the server
                        self._fail(job, step, index, exc)
                else:
                    value = self._call_sync(job, step, index, value)
            finally:
                if in_step is not None:
                    logs.STEP.reset(in_step)
            duration = perf_counter() - began
            if throttle.cancelled:  # it returned, but after a cancel it never noticed
                step_done(
                    execution_id=execution_id,
                    step=step,
                    index=index,
                    duration=duration,
                    progress=record_ended(index, "completed", duration),
                )
                raise job.ignored(step.name)
            step_done(
                execution_id=execution_id,
                step=step,
                index=index,
                duration=duration,
                progress=record_ended(index, "completed", duration),
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

    async def run_async_step(self, job: Job, index: int, value: Any) -> Any:
        hook, live = self.hook, job.live
        step = job.pipeline.steps[index]
        hook.step_started(
            execution_id=job.execution_id, step=step, index=index, progress=live.step_started(index)
        )
        began = perf_counter()
        in_step = logs.STEP.set(step.name) if job.logs is not None else None
        try:
            if step.attempts is not None:
                value = await attempts.call_async(self, job, step, index, value)
            else:
                kwargs, progress = self._arguments(job, step, index, value)
                try:
                    value = await step.fn(**kwargs)
                except (Cancelled, KeyboardInterrupt, anyio.get_cancelled_exc_class()):
                    raise
                except BaseException as exc:
                    self._fail(job, step, index, exc)
                if progress is not None:
                    progress._finish()
        finally:
            if in_step is not None:
                logs.STEP.reset(in_step)
        duration = perf_counter() - began
        hook.step_done(
            execution_id=job.execution_id,
            step=step,
            index=index,
            duration=duration,
            progress=live.step_ended(index, "completed", duration),
        )
        if job.throttle.cancelled:  # it returned, but after a cancel it never noticed
            raise job.ignored(step.name)
        return value

    def _fail(
        self, job: Job, step: Step, index: int, exc: BaseException, tried: int | None = None
    ) -> None:
        error = error_info(exc, step, tried)
        self.hook.step_failed(
            execution_id=job.execution_id,
            step=step,
            index=index,
            error=error,
            progress=job.live.step_ended(index, "failed", None),
        )
        raise StepFailed(error, exc) from exc
