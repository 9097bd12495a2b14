"""Observers for framework tests: a store that keeps every event, a plugin that logs hooks,
and what a worker's publisher sends for one run."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from stepstream import Engine, Envelope, Pipeline, Progress, hookimpl
from stepstream.model.events import Event, ExecutionRecord
from stepstream.stores.memory import MemoryStore


class RecordingStore(MemoryStore):
    """A memory store that also keeps every event the tracker appends, none coalesced."""

    def __init__(self) -> None:
        super().__init__()
        self.appended: list[Event] = []

    def append(self, record: Any, event: Event) -> None:
        self.appended.append(event)
        super().append(record, event)

    def all_events(self, execution_id: str) -> list[Event]:
        """Every event of one execution, in the order the tracker produced them."""
        return [e for e in self.appended if e.execution_id == execution_id]


class HookRecorder:
    """A plugin recording each execution hook call as (hook name, arguments, thread id)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], int]] = []

    def _note(self, hook: str, **kwargs: Any) -> None:
        self.calls.append((hook, kwargs, threading.get_ident()))

    def names(self, execution_id: str | None = None) -> list[str]:
        """Hook names in call order, optionally of one execution."""
        return [
            name
            for name, kwargs, _ in self.calls
            if execution_id is None or kwargs["execution_id"] == execution_id
        ]

    def of(self, hook: str) -> list[dict[str, Any]]:
        """The arguments of every call of one hook."""
        return [kwargs for name, kwargs, _ in self.calls if name == hook]

    @hookimpl
    def execution_started(self, execution_id: str, pipeline: Any, inputs: dict[str, Any]) -> None:
        self._note("execution_started", execution_id=execution_id, inputs=inputs)

    @hookimpl
    def step_started(self, execution_id: str, step: Any, index: int) -> None:
        self._note("step_started", execution_id=execution_id, index=index, name=step.name)

    @hookimpl
    def step_progress(
        self, execution_id: str, index: int, done: int, total: int | None, message: str | None
    ) -> None:
        self._note(
            "step_progress",
            execution_id=execution_id,
            index=index,
            done=done,
            total=total,
            message=message,
        )

    @hookimpl
    def step_done(self, execution_id: str, index: int, duration: float) -> None:
        self._note("step_done", execution_id=execution_id, index=index, duration=duration)

    @hookimpl
    def step_failed(self, execution_id: str, index: int, error: Any) -> None:
        self._note("step_failed", execution_id=execution_id, index=index, error=error)

    @hookimpl
    def execution_finished(self, execution_id: str, status: str, outputs: Any, error: Any) -> None:
        self._note(
            "execution_finished",
            execution_id=execution_id,
            status=status,
            outputs=outputs,
            error=error,
        )


def engine_with(*plugins: object, **options: Any) -> Engine:
    """An engine without entry-point plugins; `plugins` join after it was built, as the CLI's do."""
    engine = Engine(load_entrypoints=False, **options)
    for plugin in plugins:
        engine.plugins.register(plugin)
    return engine


def new_record(
    engine: Engine, pipeline: Any, inputs: dict[str, Any], **options: Any
) -> ExecutionRecord:
    """A new pending execution's record as the engine's recorder keeps it: later events show."""
    return engine.create(pipeline, inputs, **options).live.record


def elsewhere_pipeline() -> Pipeline:
    """Two steps, the first counting `n` items: the run a worker elsewhere makes."""
    p = Pipeline("elsewhere")

    @p.step
    def first(progress: Progress, n: int = 3) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    @p.step(weight=2)
    def second(n: int) -> int:
        return n * 2

    return p


async def worker_envelopes() -> tuple[list[Envelope], ExecutionRecord]:
    """What a worker's publisher would send for one run: every event, chained, first with a
    snapshot of the record as created."""
    store = RecordingStore()
    worker = Engine(store=store, load_entrypoints=False, progress_interval=0)
    job = worker.create(elsewhere_pipeline(), {"n": 4})
    created = worker.get(job.execution_id)
    await worker.execute(job)
    events = store.all_events(job.execution_id)
    envelopes = [Envelope(event=events[0], record=created)]
    envelopes += [Envelope(event=e, after=b.seq) for b, e in itertools.pairwise(events)]
    return envelopes, worker.get(job.execution_id)
