"""What events mean for records: the one fold, and the one rule for coalescing progress.

Every component that keeps state from events uses these: the recorder, the
stores, subscriptions and recovery. A record changes only by folding an event
into it, so a copy kept elsewhere stays exact by folding the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from .events import (
    CancelledEvent,
    CompletedEvent,
    Event,
    ExecutionRecord,
    FailedEvent,
    LogEvent,
    ProgressEvent,
    StartedEvent,
    StatusEvent,
    StepState,
)


def apply_event(record: ExecutionRecord, event: Event) -> None:
    """Fold one event into the record it belongs to: what every event means for a record."""
    record.last_seq = event.seq
    kind = type(event)
    if kind is ProgressEvent:
        record.progress = event.progress
        if event.steps is not None:
            for step in event.steps:
                record.steps[step.index] = step
        if event.step is not None:
            record.steps[event.step.index] = event.step
    elif kind is StatusEvent:
        record.status = event.status
    elif kind is StartedEvent:
        record.status = "running"
        record.started_at = event.started_at
        record.progress = event.progress
    elif kind is CompletedEvent:
        record.status = "completed"
        record.finished_at = event.finished_at
        record.progress = event.progress
        record.outputs = event.outputs
    elif kind is FailedEvent:
        record.status = "failed"
        record.finished_at = event.finished_at
        record.error = event.error
        if event.progress is not None:
            record.progress = event.progress
        _close_steps(record, "failed", event.finished_at)
    elif kind is CancelledEvent:
        record.status = "cancelled"
        record.finished_at = event.finished_at
        if event.error is not None:
            record.error = event.error
        if event.progress is not None:
            record.progress = event.progress
        _close_steps(record, "cancelled", event.finished_at)


def _close_steps(record: ExecutionRecord, status: str, at: datetime) -> None:
    """A step still marked running when the execution ends shares the execution's fate."""
    for i, step in enumerate(record.steps):
        if step.status == "running":
            duration = (at - step.started_at).total_seconds() if step.started_at else None
            record.steps[i] = msgspec.structs.replace(
                step, status=status, duration_seconds=duration
            )


def copy_record(record: ExecutionRecord) -> ExecutionRecord:
    """A copy that folding later events into the original leaves alone.

    Folding replaces fields and list items, never edits them, so copying the
    step list is enough.
    """
    return msgspec.structs.replace(record, steps=list(record.steps))


def replaceable(event: Event) -> bool:
    """Whether a later event may take this one's place while it waits: progress only."""
    return type(event) is ProgressEvent


def supersedes(event: Event, previous: Event) -> bool:
    """Whether `event` may replace `previous` wherever events wait: progress replaces progress.

    Logs, buffers and queues keep every lifecycle event and, between two of
    them, only the latest progress (its snapshot says where the execution is;
    the record keeps each step's state), so their size depends on neither
    steps nor items.
    """
    return type(event) is ProgressEvent and type(previous) is ProgressEvent


def joined(event: LogEvent, previous: LogEvent, keep: int) -> LogEvent:
    """Two waiting batches of log lines as one, keeping the last `keep` lines."""
    lines = [*previous.lines, *event.lines]
    return msgspec.structs.replace(event, lines=lines[-keep:])


def append_coalesced(log: list[Event], event: Event) -> bool:
    """Append one execution's event to its log, replacing the progress it supersedes.

    True when the log grew.
    """
    # `supersedes`, inlined: this runs for every event a store keeps.
    if log and type(event) is ProgressEvent and type(log[-1]) is ProgressEvent:
        log[-1] = event
        return False
    log.append(event)
    return True


def coalesced(events: Iterable[Event]) -> list[Event]:
    """One execution's events as a log keeps them: `append_coalesced` of each in turn."""
    log: list[Event] = []
    for event in events:
        append_coalesced(log, event)
    return log


def status_of(record: ExecutionRecord, seq: int) -> StatusEvent:
    """The `status` message for a record as it is now, numbered `seq`."""
    return StatusEvent(
        execution_id=record.execution_id,
        seq=seq,
        status=record.status,
        pipeline=record.pipeline,
        progress=record.progress,
    )


def as_created(record: ExecutionRecord) -> ExecutionRecord:
    """The record as it was made, pending with nothing run: what its first event (seq 1) follows."""
    return msgspec.structs.replace(
        record,
        status="pending",
        progress=None,
        started_at=None,
        finished_at=None,
        outputs=None,
        error=None,
        last_seq=1,
        steps=[
            StepState(name=step.name, index=step.index, status="pending", weight=step.weight)
            for step in record.steps
        ],
    )


def status_at(record: ExecutionRecord, log: Iterable[Event], seq: int) -> StatusEvent:
    """The status message of `record` as its log says it stood at `seq`: the log folded anew."""
    past = msgspec.structs.replace(
        record, status="pending", progress=None, steps=list(record.steps)
    )
    for event in log:
        if event.seq <= seq:
            apply_event(past, event)
    return status_of(past, seq=seq)
