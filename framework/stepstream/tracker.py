"""The tracker: a default plugin that turns hooks into execution records and event logs.

Every change to an execution is an event with the next sequence number. The
same `ingest` path applies events made here from hooks and events made by a
worker elsewhere, so applying one event twice changes nothing.

Concurrency: each execution has one producer at a time (its runner, on the loop
or its worker thread), so the per-step hooks publish without a lock. The lock
guards what several threads change: the set of live executions, and the
subscriber tuples, which are replaced rather than mutated so a publisher can
iterate them freely. A subscriber registers before it reads the log, so every
event reaches it by replay, live, or both (deduplicated by seq). This relies on
the GIL making single dict, list and attribute operations atomic.
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import UnknownExecution
from .events import (
    CancelledEvent,
    CompletedEvent,
    ErrorInfo,
    Event,
    ExecutionRecord,
    FailedEvent,
    ProgressEvent,
    ProgressSnapshot,
    StartedEvent,
    Status,
    StatusEvent,
    StepState,
    StepStatus,
    apply_event,
    status_of,
)
from .fanout import LoopHandoff
from .history import StepHistory
from .ids import new_execution_id
from .plugins import hookimpl
from .subscription import Subscription

if TYPE_CHECKING:
    from .pipeline import Pipeline, Step
    from .stores import ExecutionStore


def _state_at(record: ExecutionRecord, log: list[Event], seq: int) -> StatusEvent:
    """The status message of `record` as its log says it stood at `seq`: the log folded anew."""
    past = msgspec.structs.replace(
        record, status="pending", progress=None, steps=list(record.steps)
    )
    for event in log:
        apply_event(past, event)
    return status_of(past, seq=seq)


def _step_left(expected: float, step_elapsed: float, fraction: float) -> float:
    """The running step's time to go: its history, blended towards its own rate as items pass."""
    if not fraction:
        return max(0.0, expected - step_elapsed)
    planned = expected * (1.0 - fraction)
    live = step_elapsed * (1.0 - fraction) / fraction
    return planned + (live - planned) * fraction


def _now() -> datetime:
    return datetime.now(UTC)


def jsonable(value: Any) -> Any:
    """Outputs as JSON-ready builtins; what msgspec cannot encode becomes its repr."""
    try:
        return msgspec.to_builtins(value, enc_hook=repr, str_keys=True)
    except (TypeError, ValueError, OverflowError):  # e.g. tuple keys: convert by hand
        if isinstance(value, dict):
            return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [jsonable(v) for v in value]
        return repr(value)


class _Active:
    """A not-yet-finished execution: its record, its subscribers and, if run here, its clocks."""

    __slots__ = (
        "expected",
        "expected_after",
        "handoff",
        "items_done",
        "items_total",
        "names",
        "percentage",
        "record",
        "scale",
        "started_clock",
        "step_clock",
        "step_count",
        "subscribers",
        "weight_done",
        "weights",
    )

    def __init__(self, record: ExecutionRecord) -> None:
        self.record = record
        self.subscribers: tuple[Subscription, ...] = ()
        self.weights = [s.weight for s in record.steps]
        self.names = [s.name for s in record.steps]
        self.step_count = len(record.steps)
        self.scale = 100.0 / (sum(self.weights) or 1.0)
        self.weight_done = 0.0
        self.percentage = record.progress.percentage if record.progress else 0.0
        self.started_clock = time.perf_counter()
        self.step_clock = self.started_clock
        self.items_done: int | None = None
        self.items_total: int | None = None
        self.expected: list[float] | None = None
        self.expected_after: list[float] = []
        self.handoff: LoopHandoff | None = None


class Tracker:
    """Keeps execution records and ordered event logs in a store and feeds subscribers."""

    def __init__(self, store: ExecutionStore | None = None) -> None:
        if store is None:
            from .stores.memory import MemoryStore

            store = MemoryStore()
        self.store = store
        self.history = StepHistory(store)
        self._active: dict[str, _Active] = {}
        self._watchers: tuple[tuple[Subscription, frozenset[str] | None], ...] = ()
        self._lock = threading.Lock()

    # -- creating and reading -------------------------------------------------

    def create(self, pipeline: Pipeline, inputs: dict[str, Any]) -> ExecutionRecord:
        """Record a new `pending` execution of `pipeline` with already-validated inputs."""
        record = ExecutionRecord(
            execution_id=new_execution_id(),
            pipeline=pipeline.name,
            status="pending",
            progress=None,
            inputs=jsonable(inputs),
            created_at=_now(),
            steps=[
                StepState(name=s.name, index=i, status="pending", weight=s.weight)
                for i, s in enumerate(pipeline.steps)
            ],
        )
        with self._lock:
            active = self._active[record.execution_id] = _Active(record)
            try:
                self._publish(active, status_of(record, seq=1))
            except BaseException:
                del self._active[record.execution_id]  # not kept, so it does not exist
                raise
        return record

    def get(self, execution_id: str) -> ExecutionRecord:
        """The record of an execution; raises UnknownExecution."""
        active = self._active.get(execution_id)
        if active is not None:
            return active.record
        record = self.store.get(execution_id)
        if record is None:
            raise UnknownExecution(execution_id)
        return record

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """The logged events with `seq > after`; raises UnknownExecution."""
        self.get(execution_id)
        return self.store.events(execution_id, after)

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Records newest first, the store's view with live ones as they are now."""
        page = self.store.list(status=status, pipeline=pipeline, limit=limit, before=before)
        live = self._active
        return [live[r.execution_id].record if r.execution_id in live else r for r in page]

    # -- following ------------------------------------------------------------

    def subscribe(self, execution_id: str, after: int | None = None) -> Subscription:
        """Follow one execution: `subscription.status` first, then every later event.

        With `after`, events with a greater seq are replayed before going live;
        without it, only the terminal event is replayed for a finished execution.
        """
        subscription = Subscription(unsubscribe=self._unsubscribe, execution_id=execution_id)
        with self._lock:
            active = self._active.get(execution_id)
            record = active.record if active is not None else self.store.get(execution_id)
            if record is None:
                raise UnknownExecution(execution_id)
            if active is None and not record.finished:
                active = self._active[execution_id] = _Active(record)
            if active is not None:
                active.subscribers = (*active.subscribers, subscription)
        # Registered first, read second: whatever is published meanwhile is replayed or queued.
        last_seq = record.last_seq
        if after is None:  # now, plus the end of a finished execution
            after = last_seq - 1 if record.finished else last_seq
            status = status_of(record, seq=after)
            replay = self.store.events(execution_id, after) if record.finished else []
        else:  # a resume: the status must not be ahead of the events replayed after it
            after = max(0, min(after, last_seq))
            log = self.store.events(execution_id, 0) if after < last_seq else []
            replay = [e for e in log if e.seq > after]
            status = (
                _state_at(record, [e for e in log if e.seq <= after], after)
                if replay
                else status_of(record, seq=after)
            )
        subscription.begin(status, replay)
        if active is None and not replay:
            subscription.close()  # finished, and the caller saw its end: nothing more will come
        return subscription

    def watch(self, execution_ids: frozenset[str] | None = None) -> Subscription:
        """Follow many executions at once: all of them, or only `execution_ids`."""
        subscription = Subscription(unsubscribe=self._unsubscribe)
        with self._lock:
            self._watchers = (*self._watchers, (subscription, execution_ids))
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            execution_id = subscription.execution_id
            active = self._active.get(execution_id) if execution_id else None
            if active is not None:
                active.subscribers = tuple(s for s in active.subscribers if s is not subscription)
            self._watchers = tuple(w for w in self._watchers if w[0] is not subscription)

    def subscriber_count(self, execution_id: str | None = None) -> int:
        """Live subscriptions, of one execution or in all; for tests and metrics."""
        with self._lock:
            if execution_id is None:
                return len(self._watchers) + sum(len(a.subscribers) for a in self._active.values())
            active = self._active.get(execution_id)
            return len(active.subscribers) if active else 0

    # -- applying events ------------------------------------------------------

    def ingest(self, event: Event) -> bool:
        """Apply an event produced elsewhere; False when it was already applied."""
        with self._lock:
            active = self._active.get(event.execution_id)
            if active is None:
                record = self.store.get(event.execution_id)
                if record is None:
                    raise UnknownExecution(event.execution_id)
                if record.finished or event.seq <= record.last_seq:
                    return False
                active = self._active[event.execution_id] = _Active(record)
            if event.seq <= active.record.last_seq:
                return False
            step = getattr(event, "step", None)
            if step is not None and not 0 <= step.index < len(active.record.steps):
                raise ValueError(
                    f"event {event.seq} of {event.execution_id} names step {step.index}, "
                    f"but the execution has {len(active.record.steps)} steps"
                )
            self._publish(active, event)
            return True

    def _publish(self, active: _Active, event: Event) -> None:
        """Apply, store and fan out one event; the caller holds the lock."""
        record = active.record
        apply_event(record, event)
        self.store.append(record, event)
        if active.subscribers or self._watchers:
            self._fan_out(active, event)
        if type(event) is not ProgressEvent and record.finished:
            del self._active[event.execution_id]

    def _publish_progress(
        self, active: _Active, progress: ProgressSnapshot, step: StepState | None = None
    ) -> None:
        """`_publish` for a progress event made here: the per-step path, `apply_event` inlined."""
        record = active.record
        seq = record.last_seq + 1
        event = ProgressEvent(
            execution_id=record.execution_id, seq=seq, progress=progress, step=step
        )
        record.last_seq = seq
        record.progress = progress
        if step is not None:
            record.steps[step.index] = step
        self.store.append(record, event)
        if active.subscribers or self._watchers:
            self._fan_out(active, event)

    def _fan_out(self, active: _Active, event: Event) -> None:
        if active.handoff is None:
            self._deliver(active, event)
        else:
            active.handoff.send(event)

    def _deliver(self, active: _Active, event: Event) -> None:
        for subscription in active.subscribers:
            subscription.push(event)
        for subscription, wanted in self._watchers:
            if wanted is None or event.execution_id in wanted:
                subscription.push(event)

    def _snapshot(
        self,
        active: _Active,
        index: int,
        fraction: float = 0.0,
        done: int | None = None,
        total: int | None = None,
        message: str | None = None,
    ) -> ProgressSnapshot:
        """Weighted percentage, never lower than the last one, with elapsed time, rate and ETA.

        The ETA blends step history with the live rate (see `history.py`). This runs
        twice per step, so it avoids `round()` (slower than the rest combined).
        """
        now = time.perf_counter()
        share = (active.weight_done + active.weights[index] * fraction) * active.scale
        percentage = int(share * 100.0 + 0.5) / 100.0
        if percentage > 100.0:
            percentage = 100.0
        if percentage < active.percentage:
            percentage = active.percentage
        active.percentage = percentage
        elapsed = now - active.started_clock
        step_elapsed = now - active.step_clock
        rate = eta = None
        if done and step_elapsed > 0:
            rate = done / step_elapsed
        if percentage < 100.0:
            expected = active.expected
            if expected is not None:
                eta = active.expected_after[index] + _step_left(
                    expected[index], step_elapsed, fraction
                )
            elif percentage > 0.0:
                eta = elapsed * (100.0 - percentage) / percentage
        return ProgressSnapshot(
            current_step=index,
            total_steps=active.step_count,
            percentage=percentage,
            current_step_name=active.names[index],
            items_done=done,
            items_total=total,
            message=message,
            elapsed_seconds=elapsed,
            rate=rate,
            eta_seconds=eta,
        )

    # -- hooks ----------------------------------------------------------------

    @hookimpl
    def execution_started(self, execution_id: str) -> None:
        """pending → running, with the step history that makes an early ETA possible."""
        with self._lock:
            active = self._active[execution_id]
            expected = self.history.expected(active.record.pipeline, active.names)
            if expected is not None:
                active.expected, active.expected_after = expected
            active.started_clock = active.step_clock = time.perf_counter()
            # Runs on the event loop: subscribers are served there, whichever thread publishes.
            active.handoff = LoopHandoff.on_running_loop(functools.partial(self._deliver, active))
            self._publish(
                active,
                StartedEvent(
                    execution_id=execution_id,
                    seq=active.record.last_seq + 1,
                    started_at=_now(),
                    progress=self._snapshot(active, 0),
                ),
            )

    @hookimpl
    def step_started(self, execution_id: str, step: Step, index: int) -> None:
        """The step becomes current."""
        active = self._active[execution_id]
        active.step_clock = time.perf_counter()
        active.items_done = active.items_total = None
        state = StepState(
            name=step.name,
            index=index,
            status="running",
            weight=step.weight,
            started_at=datetime.now(UTC),
        )
        self._publish_progress(active, self._snapshot(active, index), state)

    @hookimpl
    def step_progress(
        self, execution_id: str, index: int, done: int, total: int | None, message: str | None
    ) -> None:
        """Item counts inside the running step move the percentage smoothly."""
        active = self._active[execution_id]
        fraction = min(1.0, done / total) if total else 0.0
        active.items_done = done
        active.items_total = total
        self._publish_progress(
            active, self._snapshot(active, index, fraction, done, total, message)
        )

    @hookimpl
    def step_done(self, execution_id: str, index: int, duration: float) -> None:
        """The step's weight joins the finished share."""
        self._end_step(self._active[execution_id], index, duration, "completed")

    @hookimpl
    def step_failed(self, execution_id: str, index: int) -> None:
        """The step is marked failed; the execution's own end follows."""
        active = self._active[execution_id]
        self._end_step(active, index, time.perf_counter() - active.step_clock, "failed")

    def _end_step(self, active: _Active, index: int, duration: float, status: StepStatus) -> None:
        previous = active.record.steps[index]
        completed = status == "completed"
        state = StepState(
            name=previous.name,
            index=index,
            status=status,
            weight=previous.weight,
            started_at=previous.started_at,
            duration_seconds=duration,
            items_done=active.items_done,
            items_total=active.items_total,
        )
        progress = self._snapshot(
            active, index, 1.0 if completed else 0.0, active.items_done, active.items_total
        )
        if completed:
            active.weight_done += active.weights[index]
        self._publish_progress(active, progress, state)

    def _terminal_event(
        self, active: _Active, status: Status, outputs: Any, error: ErrorInfo | None
    ) -> Event:
        execution_id = active.record.execution_id
        seq = active.record.last_seq + 1
        finished_at = _now()
        progress = active.record.progress
        if status == "completed":
            last = active.step_count - 1
            progress = msgspec.structs.replace(
                progress or self._snapshot(active, last),
                current_step=last,
                current_step_name=active.names[last],
                percentage=100.0,
                eta_seconds=0.0,
                elapsed_seconds=time.perf_counter() - active.started_clock,
            )
            return CompletedEvent(
                execution_id=execution_id,
                seq=seq,
                finished_at=finished_at,
                progress=progress,
                outputs=jsonable(outputs),
            )
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
        )

    @hookimpl
    def execution_finished(
        self, execution_id: str, status: Status, outputs: Any, error: ErrorInfo | None
    ) -> None:
        """Exactly one terminal event; the record leaves the live set."""
        with self._lock:
            active = self._active[execution_id]
            try:
                event = self._terminal_event(active, status, outputs, error)
            except Exception as exc:  # the record must end even if its outputs cannot
                event = FailedEvent(
                    execution_id=execution_id,
                    seq=active.record.last_seq + 1,
                    finished_at=_now(),
                    error=ErrorInfo(
                        type=type(exc).__qualname__,
                        message=f"the execution ended {status} but could not be recorded: {exc}",
                    ),
                    progress=active.record.progress,
                )
            self._publish(active, event)
            if active.record.status == "completed":
                self.history.add(active.record)
