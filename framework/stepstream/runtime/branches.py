"""Running a pipeline whose steps form a graph: each step as soon as the steps it takes are done.

Async steps run as tasks on the event loop. Sync steps run in lanes: worker
threads, at most `max_parallel` at once, each taking ready sync steps one after
another until none is left, so a chain or a wide fan-out of sync steps costs one
thread hop per lane, not per step. Each task and lane has its own throttle
(`Job.branch`), so one step's timeout or pace never touches another's, and a
cancel reaches all. The first step to fail stops the others (async ones at once,
sync ones at their next Progress call, or after the cancel grace) and the
execution fails with its error; the steps it stopped are recorded `cancelled`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread

from ..errors import Cancelled

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .jobs import Job
    from .runner import Runner

DEFAULT_MAX_PARALLEL = min(32, (os.cpu_count() or 1) + 4)  # as concurrent.futures sizes a pool


async def run_graph(runner: Runner, job: Job) -> Any:
    """Run every step of `job`'s pipeline once its upstream steps are done; return the outputs."""
    return await _Graph(runner, job).run()


class _Graph:
    """One execution's schedule, shared by the event loop and the lanes' threads."""

    def __init__(self, runner: Runner, job: Job) -> None:
        pipeline = job.pipeline
        self.runner = runner
        self.job = job
        self.steps = pipeline.steps
        self.downstream = pipeline.downstream()
        self.waiting_for = [len(step.upstream) for step in self.steps]
        self.results: dict[int, Any] = {}
        self.max_lanes = pipeline.max_parallel or DEFAULT_MAX_PARALLEL
        self.lock = threading.Lock()  # guards the counts, the results, `ready` and `lanes`
        self.ready: deque[int] = deque()  # sync steps waiting for a lane
        self.lanes = 0
        self.stopping = False
        self.first_error: BaseException | None = None
        self.group: TaskGroup | None = None

    async def run(self) -> Any:
        """Start the steps that wait for none; the others start as what they take is done."""
        self.job.live.guard()  # several steps report at once: their events take turns
        try:
            async with anyio.create_task_group() as self.group:
                self.release([i for i, step in enumerate(self.steps) if not step.upstream])
        except BaseExceptionGroup as errors:
            raise (self.first_error or errors.exceptions[0]) from None
        if self.first_error is not None:
            raise self.first_error
        return self.job.pipeline.output_of(self.results)

    # -- on the event loop -------------------------------------------------------

    def release(self, indices: list[int]) -> None:
        """Start the steps that just became ready: async ones as tasks, sync ones in lanes."""
        assert self.group is not None
        for index in indices:
            if self.steps[index].is_async:
                self.group.start_soon(self.run_async, index)
            else:
                with self.lock:
                    self.ready.append(index)
        self.open_lanes()

    def open_lanes(self) -> None:
        """Start as many lanes as there are ready sync steps, up to `max_parallel`."""
        assert self.group is not None
        with self.lock:
            more = min(len(self.ready), self.max_lanes) - self.lanes
            if self.stopping or more <= 0:
                return
            self.lanes += more
        for _ in range(more):
            self.group.start_soon(self.lane)

    async def run_async(self, index: int) -> None:
        """An async step as a task; its own throttle only if it reports progress."""
        job = self.job
        paced = self.steps[index].progress_param is not None
        try:
            with job.branch() if paced else contextlib.nullcontext():
                result = await self.runner.run_async_step(job, index, self.argument(index))
        except BaseException as exc:
            self.stop(exc)
            _cancelled_if_running(job, index)
            raise
        self.release(self.done(index, result))

    async def lane(self) -> None:
        """A worker thread taking ready sync steps until there are none."""
        try:
            with self.job.branch():
                await self.runner.in_thread(self.job, self.drain)
        except BaseException as exc:
            self.stop(exc)
            raise

    def stop(self, error: BaseException) -> None:
        """The first error ends the run: stop every other step."""
        if self.first_error is not None or isinstance(error, anyio.get_cancelled_exc_class()):
            return
        self.first_error = error
        with self.lock:
            self.stopping = True
        job = self.job
        for throttle in list(job.branch_throttles):
            throttle.cancel()
        assert self.group is not None
        self.group.cancel_scope.cancel()
        job.abandon_after_grace()

    # -- in any thread -------------------------------------------------------------

    def argument(self, index: int) -> Any:
        """What the runner passes for a step: the previous result, or its parameters' values."""
        step = self.steps[index]
        if index == 0:
            return None
        with self.lock:
            if step.value_param is not None:
                return self.results[step.upstream[0]]
            taken = {param: self.results[before] for param, before in step.from_steps}
        inputs = self.job.inputs
        for name in step.from_inputs:
            taken[name] = inputs[name]
        return taken

    def done(self, index: int, result: Any) -> list[int]:
        """Keep a step's result; return the steps it was the last to wait for."""
        ready = []
        with self.lock:
            self.results[index] = result
            waiting_for = self.waiting_for
            for after in self.downstream[index]:
                waiting_for[after] -= 1
                if not waiting_for[after]:
                    ready.append(after)
        return ready

    # -- in a lane's thread ----------------------------------------------------------

    def drain(self) -> None:
        """Run ready sync steps one after another until there are none; queue what follows."""
        runner, job, steps = self.runner, self.job, self.steps
        while True:
            with self.lock:
                if self.stopping or not self.ready:
                    self.lanes -= 1
                    return
                index = self.ready.popleft()
            try:
                result = runner.run_sync_steps(job, index, index + 1, self.argument(index))
            except BaseException:
                _cancelled_if_running(job, index)
                with self.lock:
                    self.lanes -= 1
                raise
            ready = self.done(index, result)
            later = [after for after in ready if steps[after].is_async]
            with self.lock:
                self.ready.extend(after for after in ready if not steps[after].is_async)
                crowded = len(self.ready) > 1 and self.lanes < self.max_lanes
            if later or crowded:  # waits for the loop, so the task group cannot end before
                anyio.from_thread.run_sync(self.release, later)


def _cancelled_if_running(job: Job, index: int) -> None:
    """A step stopped because another failed (or the run was cancelled) ends `cancelled`."""
    if job.live.record.steps[index].status != "running":
        return
    with contextlib.suppress(Cancelled):  # the execution was sealed: it ends without it
        job.live.step_ended(index, "cancelled", None)
