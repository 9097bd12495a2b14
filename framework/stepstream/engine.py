"""The engine: plugins, tracker, store and the first-in-first-out queue of executions."""

from __future__ import annotations

import math
from collections import deque
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .errors import ExecutionFinished, PipelineDefinitionError, StepstreamError, UnknownExecution
from .events import ExecutionRecord
from .pipeline import Pipeline
from .plugins import PluginManager, make_plugin_manager
from .progress import DEFAULT_INTERVAL
from .runner import Job, Runner
from .stores import ExecutionStore, open_store
from .tracker import Tracker


class StepFailedError(StepstreamError):
    """`Pipeline.run` re-raises a failed step's exception wrapped in this, naming the step."""


class Engine:
    """Runs executions and keeps their records; use `async with Engine() as engine`.

    Inside the context, `submit` queues executions that start first in, first out,
    at most `max_concurrent` at a time. On exit, running executions are cancelled
    so their records end `cancelled`; queued ones stay `pending` for a durable
    store to start again.
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
        """Validate inputs and record a `pending` execution; raises InputError before anything exists."""
        if isinstance(pipeline, str):
            pipeline = self.pipeline(pipeline)
        validated = pipeline.validate_inputs(inputs)
        record = self.tracker.create(pipeline, validated)
        job = Job(record.execution_id, pipeline, validated, self.progress_interval)
        self._jobs[record.execution_id] = job
        return job

    def submit(self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None) -> ExecutionRecord:
        """Create an execution and queue it; it starts when a slot is free."""
        if self._task_group is None:
            raise RuntimeError("Engine.submit needs a running engine: use `async with Engine() as engine`")
        job = self.create(pipeline, inputs)
        self._queue.append(job)
        self._queued.set()
        return self.tracker.get(job.execution_id)

    async def run(self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None) -> ExecutionRecord:
        """Create an execution and run it here and now; returns the finished record."""
        job = self.create(pipeline, inputs)
        try:
            await self.runner.run(job)
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
            raise UnknownExecution(execution_id)
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
        self._task_group.start_soon(self._dispatch)
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
        task_group.cancel_scope.cancel()
        return await task_group.__aexit__(exc_type, exc, tb)

    async def _dispatch(self) -> None:
        assert self._task_group is not None
        while True:
            while not self._queue:
                self._queued = anyio.Event()
                await self._queued.wait()
            job = self._queue.popleft()
            if job.execution_id not in self._jobs:
                continue
            await self._limiter.acquire_on_behalf_of(job)
            if job.execution_id not in self._jobs:
                self._limiter.release_on_behalf_of(job)
                continue
            self._task_group.start_soon(self._run_queued, job)

    async def _run_queued(self, job: Job) -> None:
        try:
            await self.runner.run(job)
        finally:
            self._jobs.pop(job.execution_id, None)
            self._limiter.release_on_behalf_of(job)

    @property
    def running(self) -> int:
        """How many executions are running now."""
        return sum(1 for job in self._jobs.values() if job.started)


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> Any:
    """`Pipeline.run`: a private engine, one execution, its outputs or its step's exception."""

    async def main() -> Any:
        engine = Engine(load_entrypoints=False)
        job = engine.create(pipeline, inputs)
        await engine.runner.run(job)
        if job.failure is not None:
            error = job.failure.error
            raise StepFailedError(
                f"step {error.step!r} of pipeline {pipeline.name!r} failed: "
                f"{error.type}: {error.message}"
            ) from job.failure.original
        return job.outputs

    return anyio.run(main)
