"""The recorder: the one place an execution's state changes, before anything else hears of it.

Every change is an event. The recorder numbers it, folds it into the live
record (`model.fold.apply_event`), appends it to the store and publishes it to
followers, in that order; only then does the runner fire plugin hooks, so every
plugin sees the state after the change. Events made elsewhere (a worker's
transport, recovery after a restart) enter through `ingest` and take the same
path; ingesting an event twice changes nothing.

Concurrency: an execution whose steps run one at a time has one producer (its
runner, on the loop or its worker thread), so its per-step events take no lock;
one whose steps run side by side, or which a cancel may end without its thread,
is `guard`ed: its changes take turns. The recorder's lock guards the set of live
executions, which creation, ingestion and endings change.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import Cancelled, UnknownExecution
from ..model.events import (
    TERMINAL_EVENTS,
    CancelledEvent,
    CompletedEvent,
    Envelope,
    ErrorInfo,
    Event,
    ExecutionRecord,
    FailedEvent,
    Origin,
    ProgressEvent,
    ProgressSnapshot,
    StartedEvent,
    Status,
    StepState,
    StepStatus,
)
from ..model.fold import apply_event, copy_record, status_of
from ..model.ids import new_execution_id
from ..model.values import DEFAULT_MAX_OUTPUT_BYTES, Unstorable, bounded_outputs
from .estimates import Estimate
from .parallel import ParallelEstimate

if TYPE_CHECKING:
    from ..stores import ExecutionStore
    from .broadcast import Broadcaster, Channel
    from .history import StepHistory


_HOST = socket.gethostname()


def this_process() -> Origin:
    """Where executions created here run (the pid asked anew: a fork has its own)."""
    return Origin(host=_HOST, pid=os.getpid())


def _now() -> datetime:
    return datetime.now(UTC)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LiveExecution:
    """An execution whose events this process produces or ingests, until its terminal event."""

    __slots__ = (
        "_append",
        "_guard",
        "_publish",
        "_recorder",
        "_sealed",
        "channel",
        "estimate",
        "items_done",
        "items_total",
        "kept",
        "record",
    )

    def __init__(self, recorder: Recorder, record: ExecutionRecord, channel: Channel) -> None:
        self._recorder = recorder
        self._append = recorder.store.append
        self._publish = channel.publish
        self.record = record
        self.channel = channel
        self.estimate: Estimate | ParallelEstimate | None = None
        self.items_done: list[int | None] = []  # each step's, as last reported
        self.items_total: list[int | None] = []
        self.kept: asyncio.Future[None] | None = None  # resolved once the ending is kept
        self._guard: threading.RLock | None = None
        self._sealed = False

    @property
    def execution_id(self) -> str:
        """The execution's id."""
        return self.record.execution_id

    @property
    def store(self) -> ExecutionStore:
        """Where the execution is kept."""
        return self._recorder.store

    def guard(self) -> None:
        """From now on every change takes a lock: steps report side by side, or `seal` may
        shut out a step's thread (a cancel's grace period); until then the per-step path
        pays nothing for it.
        """
        if self._guard is None:
            self._guard = threading.RLock()

    def seal(self) -> None:
        """Refuse every later event made here; the thread that tries gets Cancelled."""
        assert self._guard is not None, "seal() needs guard() first"
        with self._guard:
            self._sealed = True

    def emit(self, event: Event) -> None:
        """The one path of every event: fold into the record, keep in the store, publish.

        A terminal event is published once the store has kept it (write, then tell),
        so no client hears of an ending that a crash could take back.
        """
        guard = self._guard
        if guard is not None and not isinstance(event, TERMINAL_EVENTS):
            with guard:
                if self._sealed:
                    raise Cancelled("the execution ended without this step")
                self._emit(event)
        else:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        record = self.record
        apply_event(record, event)
        self._append(record, event)
        if isinstance(event, TERMINAL_EVENTS):
            self._publish_once_kept(event)
        elif self.channel.followed:
            self._publish(event)

    def _publish_once_kept(self, event: Event) -> None:
        loop = _running_loop()
        kept = self.kept = loop.create_future() if loop is not None else None
        here = threading.get_ident()

        def publish() -> None:  # on the store's writer thread, or here if already kept
            if self.channel.followed:
                self._publish(event)
            self._recorder.retire(self)
            if kept is None:
                return
            if threading.get_ident() == here:  # kept at once: no wake-up of the loop needed
                _resolve(kept)
                return
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_resolve, kept)

        self._recorder.store.on_kept(publish)

    def _progress(self, progress: ProgressSnapshot, step: StepState | None = None) -> None:
        """`emit` of a progress event made here: the per-step path, kept free of extra calls.

        Under the guard, which the caller holds (so the numbering cannot race).
        """
        record = self.record
        event = ProgressEvent(
            execution_id=record.execution_id, seq=record.last_seq + 1, progress=progress, step=step
        )
        if self._guard is not None:
            self.emit(event)
            return
        apply_event(record, event)
        self._append(record, event)
        if self.channel.followed:
            self._publish(event)

    # -- what the runner reports, in order ---------------------------------------

    def started(self, side_by_side: bool = False) -> ExecutionRecord:
        """pending → running, with the step history that makes an early ETA possible.

        `side_by_side`: steps may run at once, so the progress counts finished steps.
        """
        record = self.record
        names = [s.name for s in record.steps]
        self.items_done = [None] * len(names)
        self.items_total = [None] * len(names)
        estimate: Estimate | ParallelEstimate
        if side_by_side:
            estimate = ParallelEstimate(record.steps)
        else:
            expected = self._recorder.history.expected(record.pipeline, names)
            estimate = Estimate(record.steps, expected)
        self.estimate = estimate
        self.channel.deliver_on_this_loop()  # followers are served there, whichever thread runs
        self.emit(
            StartedEvent(
                execution_id=record.execution_id,
                seq=record.last_seq + 1,
                started_at=_now(),
                progress=estimate.snapshot(0),
            )
        )
        return copy_record(record)

    def step_started(self, index: int) -> ProgressSnapshot:
        """The step becomes current."""
        guard = self._guard
        if guard is not None:
            with guard:
                return self._step_started(index)
        return self._step_started(index)

    def _step_started(self, index: int) -> ProgressSnapshot:
        estimate = self.estimate
        assert estimate is not None
        self.items_done[index] = self.items_total[index] = None
        previous = self.record.steps[index]
        progress = estimate.snapshot(index, step_begins=True)
        self._progress(
            progress,
            StepState(
                name=previous.name,
                index=index,
                status="running",
                weight=previous.weight,
                started_at=datetime.now(UTC),
            ),
        )
        return progress

    def step_retrying(self, index: int, attempt: int, message: str) -> ProgressSnapshot:
        """The running step is tried again: its items restart, the percentage holds."""
        guard = self._guard
        if guard is not None:
            with guard:
                return self._step_retrying(index, attempt, message)
        return self._step_retrying(index, attempt, message)

    def _step_retrying(self, index: int, attempt: int, message: str) -> ProgressSnapshot:
        estimate = self.estimate
        assert estimate is not None
        self.items_done[index] = self.items_total[index] = None
        previous = self.record.steps[index]
        progress = estimate.snapshot(index, message=message, step_begins=True)
        self._progress(progress, msgspec.structs.replace(previous, attempt=attempt))
        return progress

    def step_progress(
        self, index: int, done: int, total: int | None, message: str | None
    ) -> ProgressSnapshot:
        """Item counts inside the running step move the percentage smoothly."""
        guard = self._guard
        if guard is not None:
            with guard:
                return self._step_progress(index, done, total, message)
        return self._step_progress(index, done, total, message)

    def _step_progress(
        self, index: int, done: int, total: int | None, message: str | None
    ) -> ProgressSnapshot:
        estimate = self.estimate
        assert estimate is not None
        fraction = min(1.0, done / total) if total else 0.0
        self.items_done[index] = done
        self.items_total[index] = total
        progress = estimate.snapshot(index, fraction, done, total, message)
        self._progress(progress)
        return progress

    def step_ended(
        self, index: int, status: StepStatus, duration: float | None
    ) -> ProgressSnapshot:
        """The step completed (its weight joins the finished share), failed or was stopped."""
        guard = self._guard
        if guard is not None:
            with guard:
                return self._step_ended(index, status, duration)
        return self._step_ended(index, status, duration)

    def _step_ended(
        self, index: int, status: StepStatus, duration: float | None
    ) -> ProgressSnapshot:
        estimate = self.estimate
        assert estimate is not None
        previous = self.record.steps[index]
        completed = status == "completed"
        done, total = self.items_done[index], self.items_total[index]
        progress = estimate.snapshot(
            index,
            1.0 if completed else 0.0,
            done,
            total,
            step_completes=completed,
            step_stops=not completed,
        )
        self._progress(
            progress,
            StepState(
                name=previous.name,
                index=index,
                status=status,
                weight=previous.weight,
                started_at=previous.started_at,
                duration_seconds=(
                    duration if duration is not None else estimate.step_elapsed(index)
                ),
                items_done=done,
                items_total=total,
                attempt=previous.attempt,
            ),
        )
        return progress

    def finished(self, status: Status, outputs: Any, error: ErrorInfo | None) -> ExecutionRecord:
        """Exactly one terminal event; returns the final record."""
        try:
            event = self._terminal_event(status, outputs, error)
        except Unstorable as exc:  # this execution fails; the store and the others go on
            event = self._failed(ErrorInfo(type="UnstorableOutputs", message=str(exc)))
        except Exception as exc:  # the record must end even if its outputs cannot
            event = self._failed(
                ErrorInfo(
                    type=type(exc).__qualname__,
                    message=f"the execution ended {status} but could not be recorded: {exc}",
                )
            )
        self.emit(event)
        record = self.record
        if record.status == "completed":
            self._recorder.history.add(record)
        return record

    def _failed(self, error: ErrorInfo) -> FailedEvent:
        return FailedEvent(
            execution_id=self.record.execution_id,
            seq=self.record.last_seq + 1,
            finished_at=_now(),
            error=error,
            progress=self.record.progress,
        )

    def _terminal_event(self, status: Status, outputs: Any, error: ErrorInfo | None) -> Event:
        record = self.record
        execution_id = record.execution_id
        seq = record.last_seq + 1
        finished_at = _now()
        progress = record.progress
        estimate = self.estimate
        if status == "completed":
            assert estimate is not None
            last = estimate.step_count - 1
            progress = msgspec.structs.replace(
                progress or estimate.snapshot(last),
                current_step=last,
                current_step_name=estimate.names[last],
                percentage=100.0,
                eta_seconds=None,
                rate=None,
                elapsed_seconds=estimate.elapsed(),
            )
            return CompletedEvent(
                execution_id=execution_id,
                seq=seq,
                finished_at=finished_at,
                progress=progress,
                outputs=bounded_outputs(outputs, self._recorder.max_output_bytes),
            )
        if progress is not None:  # a finished execution has no time left, nor a live rate
            progress = msgspec.structs.replace(progress, eta_seconds=None, rate=None)
        if status == "failed":
            return FailedEvent(
                execution_id=execution_id,
                seq=seq,
                finished_at=finished_at,
                error=error or ErrorInfo(message="execution failed"),
                progress=progress,
            )
        return CancelledEvent(
            execution_id=execution_id,
            seq=seq,
            finished_at=finished_at,
            progress=progress,
            reason=error.message if error else None,
            error=error,
        )


class Receipt(enum.Enum):
    """What receiving an event from elsewhere did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # seen before: nothing changed
    GAP = "gap"  # events before it are missing: not applied
    UNKNOWN = "unknown"  # an execution never seen, and no record to start it from


class Recorder:
    """Keeps the live record of every unfinished execution this process produces or ingests."""

    def __init__(
        self,
        store: ExecutionStore,
        broadcaster: Broadcaster,
        history: StepHistory,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.store = store
        self.history = history
        self.max_output_bytes = max_output_bytes
        self._broadcaster = broadcaster
        self._live: dict[str, LiveExecution] = {}
        self._lock = threading.RLock()  # retire runs inside ingest's hold

    def create(
        self,
        pipeline: str,
        steps: list[tuple[str, float]],
        inputs: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> LiveExecution:
        """Record a new `pending` execution; if the store refuses it, nothing is left behind.

        `inputs` must be JSON-ready builtins that encode (`model.values.storable`).
        """
        record = ExecutionRecord(
            execution_id=new_execution_id(),
            pipeline=pipeline,
            status="pending",
            progress=None,
            inputs=inputs,
            created_at=_now(),
            steps=[
                StepState(name=name, index=i, status="pending", weight=weight)
                for i, (name, weight) in enumerate(steps)
            ],
            idempotency_key=idempotency_key,
            origin=this_process(),
        )
        with self._lock:
            live = self._adopt(record)
        try:
            live.emit(status_of(record, seq=1))
        except BaseException:
            self.retire(live)
            raise
        return live

    def live(self, execution_id: str) -> LiveExecution | None:
        """The live execution with this id, if it is unfinished and known here."""
        return self._live.get(execution_id)

    def ingest(self, event: Event) -> bool:
        """Apply an event produced elsewhere; False when it was already applied.

        Raises UnknownExecution for an execution neither here nor in the store,
        ValueError for an event that names a step the execution does not have.
        """
        receipt = self.receive(Envelope(event=event, after=0))
        if receipt is Receipt.UNKNOWN:
            raise UnknownExecution(event.execution_id)
        return receipt is Receipt.APPLIED

    def receive(self, envelope: Envelope) -> Receipt:
        """Apply an event a transport brought, starting from its record if it is new here.

        A gap (the sender's previous event is one this recorder never applied) is
        not applied: the caller asks the sender for what is missing, or reports it.
        Raises ValueError for an event that names a step the execution does not have.
        """
        event = envelope.event
        with self._lock:  # held throughout, so two deliveries of one event apply it once
            live = self._live.get(event.execution_id)
            if live is None:
                record = self.store.get(event.execution_id)
                if record is None:
                    return self._start_from(envelope)
                if record.finished or event.seq <= record.last_seq:
                    return Receipt.DUPLICATE
                live = self._adopt(record)
            last_seq = live.record.last_seq
            if event.seq <= last_seq:
                return Receipt.DUPLICATE
            if envelope.after > last_seq:
                return Receipt.GAP
            step = getattr(event, "step", None)
            if step is not None and not 0 <= step.index < len(live.record.steps):
                raise ValueError(
                    f"event {event.seq} of {event.execution_id} names step {step.index}, "
                    f"but the execution has {len(live.record.steps)} steps"
                )
            live.emit(event)
            return Receipt.APPLIED

    def _start_from(self, envelope: Envelope) -> Receipt:
        """A new execution from elsewhere: its record from the sender's snapshot; lock held."""
        snapshot = envelope.record
        event = envelope.event
        if snapshot is None or snapshot.execution_id != event.execution_id:
            return Receipt.UNKNOWN
        live = self._adopt(copy_record(snapshot))
        live.emit(status_of(snapshot, seq=snapshot.last_seq))
        if snapshot.finished:
            self.retire(live)
        elif event.seq > snapshot.last_seq:
            live.emit(event)
        return Receipt.APPLIED

    def _adopt(self, record: ExecutionRecord) -> LiveExecution:
        """Make `record` live; the caller holds the lock."""
        live = LiveExecution(self, record, self._broadcaster.open(record.execution_id))
        self._live[record.execution_id] = live
        return live

    def retire(self, live: LiveExecution) -> None:
        """The execution ended (or was never kept): it leaves the live set, its channel closes."""
        with self._lock:
            if self._live.get(live.execution_id) is live:
                del self._live[live.execution_id]
        self._broadcaster.close(live.channel)
