"""The engine: the one public facade for running executions and reading and following them."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..authoring.progress import DEFAULT_INTERVAL
from ..defaults import DEFAULT_CANCEL_GRACE, DEFAULT_LOG_LINES
from ..errors import (
    ExecutionElsewhere,
    ExecutionFinished,
    InputError,
    PipelineDefinitionError,
    UnknownExecution,
    UnknownPipeline,
)
from ..model.events import (
    Envelope,
    ErrorInfo,
    Event,
    ExecutionRecord,
    FailedEvent,
    LogLine,
    Status,
)
from ..model.values import DEFAULT_MAX_OUTPUT_BYTES, Unstorable, storable
from ..plugins import PluginManager, make_plugin_manager
from ..stores import ExecutionStore, open_store
from ..tracking.broadcast import Broadcaster
from ..tracking.follow import subscribe
from ..tracking.history import StepHistory
from ..tracking.recorder import Receipt, Recorder
from .jobs import Job
from .kept import KeptWaiters
from .queue import ExecutionQueue
from .recovery import recover
from .runner import Runner

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline
    from ..tracking.subscriptions import Subscription
    from ..transports import CancelRelay

log = logging.getLogger("stepstream.engine")


async def _ask_to_cancel(relay: CancelRelay, execution_id: str) -> None:
    """Pass a cancel on through one relay; a broker that fails must not end the engine."""
    try:
        await relay.request_cancel(execution_id)
    except Exception as exc:
        log.error("could not pass on the cancel of %s through %r: %s", execution_id, relay, exc)


class Engine:
    """Runs executions and keeps their records; use `async with Engine() as engine`.

    Inside the context, `submit` queues executions that start first in, first out,
    at most `max_concurrent` at a time. On exit, running executions are cancelled
    and their records end `cancelled`; queued ones stay `pending` for a durable
    store to start again. A cancelled sync step stops at its next Progress call;
    one that makes none within `cancel_grace` seconds is abandoned (its execution
    ends `cancelled` saying so, and its thread runs on until the step returns).

    Reads (`get`, `list`, `events`) come from the store, so they show what every
    process sharing it recorded; `subscribe` and `watch` follow live events.
    Events from other processes arrive through `receive`; with `stale_after`, an
    execution run elsewhere that nothing is heard of for that many seconds ends
    `failed` (its worker vanished). With `capture_logs`, what steps print and log
    (at the levels logging lets through) is kept per execution, its last
    `keep_log_lines` lines, instead of reaching stdout (`logs`, `subscribe(logs=True)`).
    """

    def __init__(
        self,
        *,
        store: ExecutionStore | str | None = None,
        plugins: PluginManager | None = None,
        max_concurrent: int | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        load_entrypoints: bool = True,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
        stale_after: float | None = None,
        capture_logs: bool = True,
        keep_log_lines: int = DEFAULT_LOG_LINES,
    ) -> None:
        if progress_interval < 0:
            raise ValueError(f"progress_interval must be >= 0 seconds, got {progress_interval}")
        if cancel_grace <= 0:
            raise ValueError(f"cancel_grace must be > 0 seconds, got {cancel_grace}")
        self.plugins = plugins or make_plugin_manager(load_entrypoints=load_entrypoints)
        if store is None or isinstance(store, str):
            store = open_store(store or "memory://", self.plugins.store_schemes())
        self.store: ExecutionStore = store
        self.pipelines: dict[str, Pipeline] = {}
        self.progress_interval = progress_interval
        self.cancel_grace = cancel_grace
        self.abandoned_threads = 0  # sync steps let go after the grace period, maybe running
        self._broadcaster = Broadcaster()
        self._history = StepHistory(store)
        self._recorder = Recorder(store, self._broadcaster, self._history, max_output_bytes)
        self._kept = KeptWaiters(store)
        if keep_log_lines < 1:
            raise ValueError(f"keep_log_lines must be at least 1, got {keep_log_lines}")
        self._runner = Runner(self.plugins.relay, keep_log_lines if capture_logs else None)
        self._queue = ExecutionQueue(max_concurrent, self._load_history, self.execute)
        self._jobs: dict[str, Job] = {}
        self._task_group: TaskGroup | None = None
        self._recovered = False
        self._heard: dict[str, float] = {}  # executions run elsewhere: when last heard of
        self._cancel_relays: list[CancelRelay] = []
        self.stale_after = stale_after

    @property
    def max_concurrent(self) -> int | None:
        """How many executions may run at once (None: no limit)."""
        return self._queue.max_concurrent

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
        """A registered pipeline; raises UnknownPipeline (a KeyError) with the known names."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise UnknownPipeline(name, sorted(self.pipelines)) from None

    # -- starting and stopping executions ---------------------------------------

    def create(
        self,
        pipeline: Pipeline | str,
        inputs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Job:
        """Validate inputs, then record a `pending` execution; InputError leaves nothing behind.

        An `idempotency_key` is kept with the record, for `by_idempotency_key`.
        """
        if isinstance(pipeline, str):
            pipeline = self.pipeline(pipeline)
        validated = pipeline.validate_inputs(inputs)
        try:
            kept_inputs, _ = storable(validated, "the inputs")
        except Unstorable as exc:
            raise InputError(pipeline.name, {"inputs": str(exc)}) from None
        pipeline = pipeline.for_inputs(validated)
        live = self._recorder.create(
            pipeline.name,
            [(s.name, s.weight) for s in pipeline.steps],
            kept_inputs,
            idempotency_key,
        )
        job = Job(live, pipeline, validated, self.progress_interval, self.cancel_grace)
        self._jobs[job.execution_id] = job
        return job

    def start(self, job: Job) -> ExecutionRecord:
        """Queue a created execution; it starts when a slot is free.

        Between `create` and `start` a server waits until the store keeps it
        (`kept`), so an execution it accepted cannot be lost, and one the store
        cannot keep never runs.
        """
        if self._task_group is None:
            raise RuntimeError(
                "Engine.start needs a running engine: use `async with Engine() as engine`"
            )
        if job.ended:  # cancelled between create and start: it never runs
            raise ExecutionFinished(job.execution_id, "cancelled")
        self._queue.put(job)
        return self.get(job.execution_id)

    def submit(
        self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None
    ) -> ExecutionRecord:
        """Create an execution and queue it (`create`, then `start`)."""
        if self._task_group is None:
            raise RuntimeError(
                "Engine.submit needs a running engine: use `async with Engine() as engine`"
            )
        return self.start(self.create(pipeline, inputs))

    async def run(
        self, pipeline: Pipeline | str, inputs: dict[str, Any] | None = None
    ) -> ExecutionRecord:
        """Create an execution and run it here and now; returns the finished record."""
        job = self.create(pipeline, inputs)
        await self.execute(job)
        return self.get(job.execution_id)

    async def execute(self, job: Job) -> tuple[Status, ErrorInfo | None]:
        """Run a created job here and now, unless it was cancelled while pending.

        The engine lets go of the job once it has run: its record says the rest.
        """
        try:
            await self._load_history(job)
            if job.ended:
                return "cancelled", None
            return await self._runner.run(job)
        finally:
            if job.abandoned:
                self.abandoned_threads += 1
            self._jobs.pop(job.execution_id, None)

    def cancel(self, execution_id: str) -> ExecutionRecord:
        """Stop an execution: a pending one ends at once, a running one at its next checkpoint.

        One another process runs is asked to cancel through the transports given
        to `relay_cancels` (its record changes when that process reports it);
        without one, ExecutionElsewhere. Raises UnknownExecution, ExecutionFinished.
        """
        record = self.get(execution_id)
        if record.finished:
            raise ExecutionFinished(execution_id, record.status)
        job = self._jobs.get(execution_id)
        if job is None:
            if not self._cancel_relays or self._task_group is None:
                raise ExecutionElsewhere(execution_id, record.status)
            for relay in self._cancel_relays:  # the process running it hears, and cancels
                self._task_group.start_soon(_ask_to_cancel, relay, execution_id)
            return record
        if job.started:
            job.cancel()
        else:
            self._jobs.pop(execution_id, None)
            record = self._runner.end(job, "cancelled")
            if self._task_group is None:
                self._runner.announce_now(job, record, "cancelled", None)
            else:
                self._task_group.start_soon(self._runner.announce, job, record, "cancelled", None)
        return self.get(execution_id)

    async def wait(self, execution_id: str) -> ExecutionRecord:
        """Wait until an execution of this engine has finished; return its record."""
        job = self._jobs.get(execution_id)
        if job is not None:
            await job.finished.wait()
        return self.get(execution_id)

    @property
    def running(self) -> int:
        """How many executions are running here now."""
        return sum(1 for job in self._jobs.values() if job.started)

    # -- reading and following ---------------------------------------------------

    def get(self, execution_id: str) -> ExecutionRecord:
        """The record of an execution, yours to keep; raises UnknownExecution."""
        record = self.store.get(execution_id)
        if record is None:
            raise UnknownExecution(execution_id)
        return record

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Records newest first, filtered; `before` is the id to page from (exclusive)."""
        return self.store.list(status=status, pipeline=pipeline, limit=limit, before=before)

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """The logged events with `seq > after`; raises UnknownExecution."""
        self.get(execution_id)
        return self.store.events(execution_id, after)

    def by_idempotency_key(self, key: str) -> ExecutionRecord | None:
        """The execution created with this idempotency key, if any."""
        return self.store.by_idempotency_key(key)

    def logs(self, execution_id: str, after: int = 0) -> list[LogLine]:
        """The captured lines kept with numbers above `after`; raises UnknownExecution."""
        self.get(execution_id)
        return self.store.logs(execution_id, after)

    def subscribe(
        self, execution_id: str, after: int | None = None, *, logs: bool = False
    ) -> Subscription:
        """Follow one execution: `subscription.status` first, then every later event.

        With `after`, events with a greater seq are replayed before going live;
        without it, only the terminal event is replayed for a finished execution.
        With `logs`, captured lines come too (LogEvent), those kept so far first.
        May read the store: call it off the event loop where that matters.
        """
        return subscribe(self.store, self._broadcaster, execution_id, after, logs=logs)

    def watch(
        self,
        execution_ids: frozenset[str] | None = None,
        *,
        bounded: bool = True,
        logs: bool = False,
    ) -> Subscription:
        """Follow many executions at once: all of them, or only `execution_ids`.

        A bounded watch that falls `WATCH_BUFFER` events behind ends with
        SubscriptionOverflow; an unbounded one keeps every lifecycle event. With
        `logs`, captured lines come too, as they are captured.
        """
        return self._broadcaster.watch(execution_ids, bounded=bounded, logs=logs)

    def subscriber_count(self, execution_id: str | None = None) -> int:
        """Live subscriptions, of one execution or in all."""
        return self._broadcaster.subscriber_count(execution_id)

    def ingest(self, event: Event) -> bool:
        """Apply an event produced elsewhere; False when it was already applied.

        Raises UnknownExecution for an execution the store does not hold.
        """
        return self._recorder.ingest(event)

    def relay_cancels(self, relay: CancelRelay) -> None:
        """Forward cancels of executions run elsewhere through `relay` (a subscribed broker)."""
        self._cancel_relays.append(relay)

    def receive(self, envelope: Envelope) -> Receipt:
        """Apply an event a transport brought from another process (see `Envelope`).

        Notes when each execution run elsewhere was last heard of, even through a
        duplicate (senders repeat the latest event as a heartbeat), so
        `fail_silent` can tell a quiet step from a vanished worker.
        """
        receipt = self._recorder.receive(envelope)
        execution_id = envelope.event.execution_id
        if execution_id not in self._jobs:
            if self._recorder.live(execution_id) is None:
                self._heard.pop(execution_id, None)  # finished, or never known
            else:
                self._heard[execution_id] = time.monotonic()
        return receipt

    def fail_silent(self, silence: float) -> list[str]:
        """End `failed` each execution run elsewhere that was not heard of for `silence` seconds.

        Returns their ids. The failure says when and from where nothing more came.
        """
        now = time.monotonic()
        failed = []
        for execution_id, heard in list(self._heard.items()):
            if now - heard < silence:
                continue
            del self._heard[execution_id]
            record = self.store.get(execution_id)
            if record is None or record.finished:
                continue
            where = (
                f"{record.origin.host} (pid {record.origin.pid})" if record.origin else "elsewhere"
            )
            self._recorder.ingest(
                FailedEvent(
                    execution_id=execution_id,
                    seq=record.last_seq + 1,  # later events of the worker are duplicates
                    finished_at=datetime.now(UTC),
                    error=ErrorInfo(
                        type="WorkerLost",
                        message=f"nothing was heard from its worker on {where} for "
                        f"{silence:g} s, so it was marked failed",
                    ),
                    progress=record.progress,
                )
            )
            failed.append(execution_id)
            log.warning(
                "execution %s: no event from %s for %gs; failed", execution_id, where, silence
            )
        return failed

    def flush(self) -> None:
        """Return once everything recorded so far is kept by the store; StoreError if it cannot."""
        self.store.flush()

    async def kept(self) -> None:
        """`flush` without blocking the event loop or a thread: the store's writer says when
        (`on_kept`), once for all who wait at the same time; StoreError if a write fails."""
        await self._kept.wait()

    # -- the engine's lifetime ----------------------------------------------------

    async def __aenter__(self) -> Engine:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._queue.serve, self._task_group)
        if self.stale_after is not None:
            self._task_group.start_soon(self._fail_silent_forever, self.stale_after)
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
                job.ended = True  # stays pending in the store; nothing here runs it
                job.finished.set()
        task_group.cancel_scope.cancel()
        return await task_group.__aexit__(exc_type, exc, tb)

    def recover(self) -> None:
        """Pick up what a stopped process left in the store (see `runtime.recovery`).

        Entering the engine does it; call it first to meet a store that cannot be
        written (StoreError) before anything else starts. It runs once per engine.
        """
        if self._recovered:
            return
        requeued, elsewhere = recover(self.store, self._recorder, self.pipelines)
        now = time.monotonic()
        self._heard.update((execution_id, now) for execution_id in elsewhere)
        for found in requeued:
            live = self._recorder.live(found.record.execution_id)
            assert live is not None
            job = Job(live, found.pipeline, found.inputs, self.progress_interval, self.cancel_grace)
            self._jobs[job.execution_id] = job
            self._queue.put(job)
        self._recovered = True

    async def _fail_silent_forever(self, silence: float) -> None:
        while True:
            await anyio.sleep(min(silence / 4, 5.0))
            self.fail_silent(silence)

    async def _load_history(self, job: Job) -> None:
        """Read the pipeline's step history (for the ETA) once, off the event loop."""
        history = self._history
        if not history.loaded(job.pipeline.name):
            try:
                await anyio.to_thread.run_sync(history.load, job.pipeline.name)
            except Exception:  # the ETA is a nicety: never let it stop an execution
                log.warning(
                    "no step history for %s; ETA from the live rate only",
                    job.pipeline.name,
                    exc_info=True,
                )
