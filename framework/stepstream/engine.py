"""The engine: plugins, tracker, store and the first-in-first-out queue of executions."""

from __future__ import annotations

import logging
import math
from collections import deque
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .errors import (
    ExecutionElsewhere,
    ExecutionFinished,
    InputError,
    PipelineDefinitionError,
    StepstreamError,
)
from .events import ErrorInfo, ExecutionRecord, FailedEvent, Status, StatusEvent
from .pipeline import Pipeline
from .plugins import PluginManager, make_plugin_manager
from .progress import DEFAULT_INTERVAL
from .runner import Job, Runner
from .stores import ExecutionStore, open_store
from .tracker import Tracker

log = logging.getLogger("stepstream.engine")


class StepFailedError(StepstreamError):
    """`Pipeline.run` re-raises a failed step's exception wrapped in this, naming the step."""


class Engine:
    """Runs executions and keeps their records; use `async with Engine() as engine`.

    Inside the context, `submit` queues executions that start first in, first out,
    at most `max_concurrent` at a time. On exit, running executions are cancelled
    and their records end `cancelled` (a sync step that never calls its Progress
    handle runs to its end first, and its execution may still complete); queued
    ones stay `pending` for a durable store to start again.
    """

    def __init__(
        self,
        *,
        store: ExecutionStore | str | None = None,
        plugins: PluginManager | None = None,
        max_concurrent: int | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        load_entrypoints: bool = True,
    ) -> None:
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        if progress_interval < 0:
            raise ValueError(f"progress_interval must be >= 0 seconds, got {progress_interval}")
        self.plugins = plugins or make_plugin_manager(load_entrypoints=load_entrypoints)
        if store is None or isinstance(store, str):
            store = open_store(store or "memory://", self.plugins)
        self.tracker = Tracker(store)
        self.plugins.register(self.tracker, name="tracker")
        self.runner = Runner(self.plugins.relay)
        self.pipelines: dict[str, Pipeline] = {}
        self.max_concurrent = max_concurrent
        self.progress_interval = progress_interval
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._queued = anyio.Event()
        self._limiter = anyio.CapacityLimiter(max_concurrent or math.inf)
        self._task_group: TaskGroup | None = None

    # -- pipelines --------------------------------------------------------------

    def add_pipeline(self, pipeline: Pipeline) -> None:
        """Make a pipeline runnable by name; a second pipeline with the same name is an error."""
        pipeline.check_runnable()
        existing = self.pipelines.get(pipeline.name)
        if existing is not None and existing is not pipeline:
            raise PipelineDefinitionError(
                f"two pipelines are named {pipeline.name!r}; pipeline names must be unique"
            )
        self.pipelines[pipeline.name] = pipeline

    def pipeline(self, name: str) -> Pipeline:
        """A registered pipeline; raises KeyError with the known names."""
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none registered"
            raise KeyError(f"no pipeline named {name!r} (known: {known})") from None

    # -- executions -------------------------------------------------------------

    def create(self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None) -> Job:
        """Validate inputs, then record a `pending` execution; InputError leaves nothing behind."""
        if isinstance(pipeline, str):
            pipeline = self.pipeline(pipeline)
        validated = pipeline.validate_inputs(inputs)
        pipeline = pipeline.for_inputs(validated)
        record = self.tracker.create(pipeline, validated)
        job = Job(record.execution_id, pipeline, validated, self.progress_interval)
        self._jobs[record.execution_id] = job
        return job

    def submit(
        self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None
    ) -> ExecutionRecord:
        """Create an execution and queue it; it starts when a slot is free."""
        if self._task_group is None:
            raise RuntimeError(
                "Engine.submit needs a running engine: use `async with Engine() as engine`"
            )
        job = self.create(pipeline, inputs)
        self._queue.append(job)
        self._queued.set()
        return self.tracker.get(job.execution_id)

    async def run(
        self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None
    ) -> ExecutionRecord:
        """Create an execution and run it here and now; returns the finished record."""
        job = self.create(pipeline, inputs)
        try:
            await self.execute(job)
        finally:
            self._jobs.pop(job.execution_id, None)
        return self.tracker.get(job.execution_id)

    def job(self, execution_id: str) -> Job | None:
        """The runtime handle of an execution queued or running in this engine."""
        return self._jobs.get(execution_id)

    def cancel(self, execution_id: str) -> ExecutionRecord:
        """Stop an execution: a pending one ends at once, a running one at its next checkpoint."""
        record = self.tracker.get(execution_id)
        if record.finished:
            raise ExecutionFinished(execution_id, record.status)
        job = self._jobs.get(execution_id)
        if job is None:
            raise ExecutionElsewhere(execution_id, record.status)
        if job.started:
            job.cancel()
        else:
            self._jobs.pop(execution_id, None)
            self.plugins.relay.execution_finished(
                execution_id=execution_id, status="cancelled", outputs=None, error=None
            )
            job.finished.set()
        return self.tracker.get(execution_id)

    async def wait(self, execution_id: str) -> ExecutionRecord:
        """Wait until an execution of this engine has finished; return its record."""
        job = self._jobs.get(execution_id)
        if job is not None:
            await job.finished.wait()
        return self.tracker.get(execution_id)

    # -- the queue --------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._dispatch, self._task_group)
        try:
            self.recover()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        for job in list(self._jobs.values()):
            if job.started:
                job.cancel()
            else:
                job.finished.set()  # stays pending in the store; nobody waits for it here
        task_group.cancel_scope.cancel()
        return await task_group.__aexit__(exc_type, exc, tb)

    def recover(self) -> None:
        """Pick up what a stopped process left in the store: fail `running`, requeue `pending`.

        A running execution's step cannot be resumed, so it ends `failed` with a
        `ServerStopped` error saying when. A pending one is queued again, oldest
        first, if its pipeline is still registered with the same steps and its
        inputs still fit; otherwise it ends `failed` saying why. The first new
        event of each is numbered `last_seq + store.seq_headroom + 1`, past any
        seq the stopped process may have sent without having stored it.
        """
        store = self.tracker.store
        now = datetime.now(UTC)
        for record in store.unfinished():
            seq = record.last_seq + store.seq_headroom + 1
            execution_id = record.execution_id
            if record.status == "running":
                error = _stopped_error(record, now)
            else:
                job_or_error = self._requeued_job(record)
                if isinstance(job_or_error, Job):
                    self.tracker.ingest(
                        StatusEvent(
                            execution_id=execution_id,
                            seq=seq,
                            status="pending",
                            pipeline=record.pipeline,
                            progress=record.progress,
                        )
                    )
                    self._jobs[execution_id] = job_or_error
                    self._queue.append(job_or_error)
                    self._queued.set()
                    log.info("requeued pending execution %s of %s", execution_id, record.pipeline)
                    continue
                error = job_or_error
            self.tracker.ingest(
                FailedEvent(
                    execution_id=execution_id,
                    seq=seq,
                    finished_at=now,
                    error=error,
                    progress=record.progress,
                )
            )
            log.info("execution %s ended failed on restart: %s", execution_id, error.message)
        store.flush()

    def _requeued_job(self, record: ExecutionRecord) -> Job | ErrorInfo:
        """A job that runs a stored pending execution again, or why it cannot run."""
        pipeline = self.pipelines.get(record.pipeline)
        if pipeline is None:
            known = ", ".join(sorted(self.pipelines)) or "none registered"
            return ErrorInfo(
                type="PipelineNotFound",
                message=f"pipeline {record.pipeline!r} is not registered after the restart "
                f"(known: {known}), so this queued execution cannot start",
            )
        try:
            inputs = pipeline.validate_inputs(record.inputs)
        except InputError as exc:
            return ErrorInfo(
                type="InputError",
                message=f"the recorded inputs no longer fit after the restart: {exc}",
            )
        pipeline = pipeline.for_inputs(inputs)
        if [s.name for s in pipeline.steps] != [s.name for s in record.steps]:
            return ErrorInfo(
                type="PipelineChanged",
                message=f"pipeline {record.pipeline!r} has other steps than when this execution "
                f"was queued ({', '.join(s.name for s in record.steps)}), so it cannot start",
            )
        return Job(record.execution_id, pipeline, inputs, self.progress_interval)

    async def _dispatch(self, task_group: TaskGroup) -> None:
        while True:
            while not self._queue:
                self._queued = anyio.Event()
                await self._queued.wait()
            job = self._queue.popleft()
            if job.execution_id not in self._jobs:
                continue
            await self._limiter.acquire_on_behalf_of(job)
            await self._load_history(job)  # here, not in the task, so starts stay in order
            if job.execution_id not in self._jobs:
                self._limiter.release_on_behalf_of(job)
                continue
            task_group.start_soon(self._run_queued, job)

    async def _run_queued(self, job: Job) -> None:
        try:
            if job.execution_id in self._jobs:  # not cancelled while waiting for its task
                await self.execute(job)
        finally:
            self._jobs.pop(job.execution_id, None)
            self._limiter.release_on_behalf_of(job)

    async def execute(self, job: Job) -> tuple[Status, ErrorInfo | None]:
        """Run a created job here and now, unless it was cancelled while pending."""
        await self._load_history(job)
        if job.finished.is_set():
            return "cancelled", None
        return await self.runner.run(job)

    async def _load_history(self, job: Job) -> None:
        """Read the pipeline's step history (for the ETA) once, off the event loop."""
        history = self.tracker.history
        if not history.loaded(job.pipeline.name):
            try:
                await anyio.to_thread.run_sync(history.load, job.pipeline.name)
            except Exception:  # the ETA is a nicety: never let it stop an execution
                log.warning(
                    "no step history for %s; ETA from the live rate only",
                    job.pipeline.name,
                    exc_info=True,
                )

    @property
    def running(self) -> int:
        """How many executions are running now."""
        return sum(1 for job in self._jobs.values() if job.started)


def _stopped_error(record: ExecutionRecord, now: datetime) -> ErrorInfo:
    """Why a running execution of a stopped process ended, and when, as far as its record says."""
    running = [s.name for s in record.steps if s.status == "running"]
    return ErrorInfo(
        type="ServerStopped",
        step=running[0] if running else None,
        message=(
            "the server stopped while this execution ran (last event at "
            f"{_last_activity(record).isoformat(timespec='milliseconds')}); "
            f"it was marked failed at {now.isoformat(timespec='milliseconds')} on restart"
        ),
    )


def _last_activity(record: ExecutionRecord) -> datetime:
    """The latest moment the record vouches for: its start plus the elapsed time of its progress."""
    moments = [record.created_at]
    if record.started_at is not None:
        moments.append(record.started_at)
        if record.progress is not None and record.progress.elapsed_seconds is not None:
            moments.append(record.started_at + timedelta(seconds=record.progress.elapsed_seconds))
    for step in record.steps:
        if step.started_at is not None:
            moments.append(step.started_at + timedelta(seconds=step.duration_seconds or 0.0))
    return max(moments)


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> Any:
    """`Pipeline.run`: a private engine, one execution, its outputs or its step's exception."""

    async def main() -> Any:
        engine = Engine(load_entrypoints=False)
        job = engine.create(pipeline, inputs)
        await engine.execute(job)
        if job.failure is not None:
            error = job.failure.error
            raise StepFailedError(
                f"step {error.step!r} of pipeline {pipeline.name!r} failed: "
                f"{error.type}: {error.message}"
            ) from job.failure.original
        return job.outputs

    return anyio.run(main)
