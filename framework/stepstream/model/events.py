"""The wire format: execution records and the events of an execution, as msgspec Structs.

Every event encodes to JSON bytes and back losslessly, so an event produced by a
worker elsewhere can be carried by a transport and ingested by any tracker.
Message `type` values match the progress query API: `status`, `started`,
`progress`, `completed`, `failed`, `cancelled` and, on a WebSocket only, `error`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "completed", "failed", "cancelled"]

FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class ProgressSnapshot(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Where an execution is: the seed's four fields first, then optional extras."""

    current_step: int
    total_steps: int
    percentage: float
    current_step_name: str | None
    items_done: int | None = None
    items_total: int | None = None
    message: str | None = None
    elapsed_seconds: float | None = None
    rate: float | None = None
    eta_seconds: float | None = None


class ErrorInfo(msgspec.Struct, kw_only=True):
    """Why an execution failed: enough for a person to act without the server's logs.

    Every field is always sent (`null` when unknown), so clients can rely on the keys.
    """

    message: str
    type: str = "Error"
    step: str | None = None
    traceback: str | None = None
    attempts: int | None = None  # how many times the failed step was tried, when it may retry


class StepState(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One step of one execution: its status, its timing and its items."""

    # No defaults on status and weight: omit_defaults would drop them from the wire.
    name: str
    index: int
    status: StepStatus
    weight: float
    started_at: datetime | None = None
    duration_seconds: float | None = None
    items_done: int | None = None
    items_total: int | None = None
    attempt: int | None = None  # which try this is, once a step with retries is tried again


class Origin(msgspec.Struct, kw_only=True, frozen=True):
    """Where an execution runs: the host and process that run its steps."""

    host: str
    pid: int


class ExecutionRecord(msgspec.Struct, kw_only=True):
    """Everything known about one execution; the seed's shape plus history."""

    execution_id: str
    pipeline: str
    status: Status
    progress: ProgressSnapshot | None
    inputs: dict[str, Any]
    created_at: datetime
    steps: list[StepState]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: Any = None
    error: ErrorInfo | None = None
    last_seq: int = 0
    idempotency_key: str | None = None  # the submitter's key: the same key never runs twice
    origin: Origin | None = None  # where it runs; None in records kept before it was recorded

    @property
    def finished(self) -> bool:
        """True once the execution reached a terminal status."""
        return self.status in FINISHED


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every message; `seq` orders an execution's events and resumes a stream."""

    execution_id: str
    seq: int


class StatusEvent(Event, tag="status"):
    """The execution's state: logged when it is created, sent first on every stream."""

    status: Status
    pipeline: str
    progress: ProgressSnapshot | None  # no default, so a pending one still says "progress": null


class StartedEvent(Event, tag="started"):
    """The execution moved from `pending` to `running`."""

    started_at: datetime
    progress: ProgressSnapshot


class ProgressEvent(Event, tag="progress"):
    """Progress changed; `step` is set when a step started, finished or failed.

    `steps` holds the step changes of earlier progress events this one stands for,
    when a queue coalesced them into it (a slow reader, a transport), so a reader
    that folds events still ends with every step's state.
    """

    progress: ProgressSnapshot
    step: StepState | None = None
    steps: list[StepState] | None = None


class CompletedEvent(Event, tag="completed"):
    """Success; `outputs` is the last step's return value."""

    finished_at: datetime
    progress: ProgressSnapshot
    outputs: Any = None


class FailedEvent(Event, tag="failed"):
    """A step raised; `error` names the step, the exception type and message."""

    finished_at: datetime
    error: ErrorInfo
    progress: ProgressSnapshot | None = None


class CancelledEvent(Event, tag="cancelled"):
    """The execution was cancelled before it finished; `error` says so when a step ignored it."""

    finished_at: datetime
    progress: ProgressSnapshot | None = None
    reason: str | None = None
    error: ErrorInfo | None = None


class ErrorEvent(Event, tag="error"):
    """A stream-level problem (unknown execution, bad request); never logged."""

    message: str


LogStream = Literal["stdout", "stderr", "log"]


class LogLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line a step printed or logged; `n` numbers an execution's lines from 1."""

    n: int
    at: datetime
    stream: LogStream
    message: str
    step: str | None = None
    level: str | None = None  # for `log` lines: the logging level's name


class LogEvent(Event, tag="log"):
    """Lines captured from the steps: sent on a stream only to a client that asked (`?logs=1`).

    Its `seq` is the execution's seq when the lines were sent; lines resume by `n`.
    """

    lines: list[LogLine]


AnyEvent = (
    StatusEvent
    | StartedEvent
    | ProgressEvent
    | CompletedEvent
    | FailedEvent
    | CancelledEvent
    | ErrorEvent
    | LogEvent
)
TERMINAL_EVENTS = (CompletedEvent, FailedEvent, CancelledEvent)
LIFECYCLE_EVENTS = (StatusEvent, StartedEvent, *TERMINAL_EVENTS)


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event as a transport carries it between processes.

    `after` is the seq of the event its sender sent before this one for the same
    execution (0 for its first), so a receiver can tell a gap from a coalesced run
    of progress. `record` comes with a sender's first event of an execution: a
    snapshot of the record at or after `event`, from which a receiver that has
    never seen the execution starts.
    """

    event: AnyEvent
    after: int = 0
    record: ExecutionRecord | None = None


encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(AnyEvent)
record_decoder = msgspec.json.Decoder(ExecutionRecord)
envelopes_decoder = msgspec.json.Decoder(list[Envelope])


def encode(obj: Any) -> bytes:
    """Encode a Struct (or anything msgspec handles) to JSON bytes."""
    return encoder.encode(obj)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode one event from JSON, whatever its type."""
    return event_decoder.decode(data)
