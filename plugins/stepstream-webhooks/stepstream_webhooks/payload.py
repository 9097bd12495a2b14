"""The body a receiver gets: Standard Webhooks' `type`, `timestamp` and `data`, usable as is.

`data` sums up the execution as this event leaves it (what a CI job or a chat
message needs: pipeline, status, progress, error, outputs and a one-line
`text`) and carries the stepstream event itself, as the progress API sends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from stepstream import (
    AnyEvent,
    CancelledEvent,
    CompletedEvent,
    ErrorInfo,
    Event,
    ExecutionRecord,
    FailedEvent,
    Origin,
    ProgressSnapshot,
    StartedEvent,
    Status,
    encode,
)


class Data(msgspec.Struct, kw_only=True):
    """The execution after the event, and the event."""

    execution_id: str
    pipeline: str
    status: Status
    text: str
    progress: ProgressSnapshot | None
    error: ErrorInfo | None
    outputs: Any
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    origin: Origin | None
    event: AnyEvent


class Payload(msgspec.Struct, kw_only=True):
    """One webhook's body: `type` is `execution.` and the event's type."""

    type: str
    timestamp: datetime
    data: Data


def kind(event: Event) -> str:
    """The event's type as the progress API names it: `started`, `completed`, ..."""
    return type(event).__struct_config__.tag


def body(event: AnyEvent, record: ExecutionRecord, now: datetime) -> bytes:
    """The JSON body for `event`, `record` being the execution with the event applied."""
    occurred = getattr(event, "finished_at", None) or getattr(event, "started_at", None) or now
    return encode(
        Payload(
            type=f"execution.{kind(event)}",
            timestamp=occurred,
            data=Data(
                execution_id=record.execution_id,
                pipeline=record.pipeline,
                status=record.status,
                text=_text(event, record),
                progress=record.progress,
                error=record.error,
                outputs=record.outputs,
                created_at=record.created_at,
                started_at=record.started_at,
                finished_at=record.finished_at,
                origin=record.origin,
                event=event,
            ),
        )
    )


def _text(event: Event, record: ExecutionRecord) -> str:
    """One line a person reads in a chat: what happened to which pipeline."""
    name = record.pipeline
    if isinstance(event, CompletedEvent):
        if record.started_at is not None:
            seconds = (event.finished_at - record.started_at).total_seconds()
            return f"{name} completed in {seconds:.1f} s"
        return f"{name} completed"
    if isinstance(event, FailedEvent):
        where = f" at step {event.error.step!r}" if event.error.step else ""
        return f"{name} failed{where}: {event.error.type}: {event.error.message}"
    if isinstance(event, CancelledEvent):
        return f"{name} cancelled" + (f": {event.reason}" if event.reason else "")
    if isinstance(event, StartedEvent):
        return f"{name} started"
    progress = record.progress
    if progress is None:
        return f"{name} {record.status}"
    step = progress.current_step_name or "-"
    items = f", {progress.items_done}/{progress.items_total}" if progress.items_total else ""
    return f"{name} {progress.percentage:.0f}% ({step}{items})"
