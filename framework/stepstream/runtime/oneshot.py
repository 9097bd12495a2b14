"""`Pipeline.run`: one execution on a shared private engine, its outputs or its step's exception.

A new event loop, plugin manager and engine per call cost ten times the
execution itself, so every `Pipeline.run` of a process shares one engine
running on one event loop in a daemon thread, made on the first call. Calls from
several threads run side by side there, as many sync steps at once as there are
callers; each waits for its own execution, and its record is forgotten once it
has finished.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from typing import TYPE_CHECKING, Any

from ..errors import StepFailedError
from ..plugins import make_plugin_manager
from .engine import Engine

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline
    from .jobs import Job


class _Host:
    """The daemon thread, event loop and engine that `Pipeline.run` calls share."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child inherits this object, not the thread
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(  # prints reach the terminal
            plugins=make_plugin_manager(load_entrypoints=False), capture_logs=False
        )
        self._tasks: set[asyncio.Task[None]] = set()
        ready = threading.Event()
        threading.Thread(
            target=self._serve, args=(ready,), name="stepstream-pipeline-run", daemon=True
        ).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        """Run the loop forever under one root task: what lives per run (anyio's RunVars,
        the step threads of `threads.py`) lives as long as the host."""

        async def forever() -> None:
            ready.set()
            await asyncio.Event().wait()

        self.loop.run_until_complete(forever())

    def run(self, pipeline: Pipeline, inputs: dict[str, Any]) -> Any:
        """Run one execution on the host's loop, in the caller's context; wait for its end."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        jobs: list[Job] = []
        context = contextvars.copy_context()
        self.loop.call_soon_threadsafe(self._start, pipeline, inputs, done, jobs, context)
        try:
            return done.result()
        except KeyboardInterrupt:
            self.loop.call_soon_threadsafe(self._cancel, jobs)
            raise

    def _start(
        self,
        pipeline: Pipeline,
        inputs: dict[str, Any],
        done: concurrent.futures.Future[Any],
        jobs: list[Job],
        context: contextvars.Context,
    ) -> None:
        task = self.loop.create_task(self._execute(pipeline, inputs, done, jobs), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self,
        pipeline: Pipeline,
        inputs: dict[str, Any],
        done: concurrent.futures.Future[Any],
        jobs: list[Job],
    ) -> None:
        engine = self.engine
        try:
            job = engine.create(pipeline, inputs)
            jobs.append(job)
            try:
                await engine.execute(job)
            finally:
                engine.store.prune(keep_count=0)  # nobody reads a Pipeline.run record later
            done.set_result(_outputs(job))
        except BaseException as exc:
            done.set_exception(exc)

    def _cancel(self, jobs: list[Job]) -> None:
        """The caller was interrupted: stop its execution too."""
        for job in jobs:
            if not job.ended:
                job.cancel()


def _outputs(job: Job) -> Any:
    """What the pipeline returned; StepFailedError, from the step's own exception, if it failed."""
    if job.failure is not None:
        error = job.failure.error
        raise StepFailedError(
            f"step {error.step!r} of pipeline {job.pipeline.name!r} failed: "
            f"{error.type}: {error.message}"
        ) from job.failure.original
    return job.outputs


_host: _Host | None = None
_host_lock = threading.Lock()


def _shared_host() -> _Host:
    """The process's host, made on first use (again in a forked child)."""
    global _host
    with _host_lock:
        if _host is None or _host.pid != os.getpid():
            _host = _Host()
        return _host


def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any]) -> Any:
    """Run `pipeline` to its end; raise StepFailedError if a step failed."""
    return _shared_host().run(pipeline, inputs)
