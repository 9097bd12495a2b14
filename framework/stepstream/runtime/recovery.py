"""Recovery: what a restarted engine does with the executions a stopped process left unfinished.

A running execution of a stopped process cannot be resumed, so it ends
`failed` with a `ServerStopped` error saying when. One that runs elsewhere (its
origin is another host, or a process on this host that is still alive: a worker
publishing to this server) is left running: it is watched for silence instead.
A pending one is queued again, oldest first, if its pipeline is still
registered with the same steps and its inputs still fit; otherwise it ends
`failed` saying why. The first new event of each is
numbered `last_seq + store.seq_headroom + 1`, past any seq the stopped process
may have sent without having stored it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..model.events import ErrorInfo, ExecutionRecord, FailedEvent, Origin, StatusEvent
from ..tracking.recorder import this_process

if TYPE_CHECKING:
    from ..authoring.pipeline import Pipeline
    from ..stores import ExecutionStore
    from ..tracking.recorder import Recorder

log = logging.getLogger("stepstream.recovery")


class Requeued:
    """A pending execution to run again: its record, pipeline and inputs as validated anew."""

    def __init__(self, record: ExecutionRecord, pipeline: Pipeline, inputs: dict[str, Any]) -> None:
        self.record = record
        self.pipeline = pipeline
        self.inputs = inputs


def recover(
    store: ExecutionStore, recorder: Recorder, pipelines: Mapping[str, Pipeline]
) -> tuple[list[Requeued], list[str]]:
    """End or requeue every unfinished execution in the store.

    Returns what to queue, oldest first, and the ids of the executions running elsewhere.
    """
    now = datetime.now(UTC)
    requeued = []
    elsewhere = []
    for record in store.unfinished():
        seq = record.last_seq + store.seq_headroom + 1
        execution_id = record.execution_id
        if record.status == "running" and runs_elsewhere(record.origin):
            elsewhere.append(execution_id)
            continue
        if record.status == "running":
            error = _stopped_error(record, now)
        else:
            found = _requeued(record, pipelines)
            if isinstance(found, Requeued):
                recorder.ingest(
                    StatusEvent(
                        execution_id=execution_id,
                        seq=seq,
                        status="pending",
                        pipeline=record.pipeline,
                        progress=record.progress,
                    )
                )
                requeued.append(found)
                log.info("requeued pending execution %s of %s", execution_id, record.pipeline)
                continue
            error = found
        recorder.ingest(
            FailedEvent(
                execution_id=execution_id,
                seq=seq,
                finished_at=now,
                error=error,
                progress=record.progress,
            )
        )
        log.info("execution %s ended failed on restart: %s", execution_id, error.message)
    store.flush()
    return requeued, elsewhere


def runs_elsewhere(origin: Origin | None) -> bool:
    """Whether an execution's process may still be running: another host, or a live pid here."""
    if origin is None:  # recorded before origins were: it ran here
        return False
    mine = this_process()
    if origin.host != mine.host:
        return True
    if origin.pid == mine.pid:
        return False
    try:
        os.kill(origin.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _requeued(record: ExecutionRecord, pipelines: Mapping[str, Pipeline]) -> Requeued | ErrorInfo:
    """How to run a stored pending execution again, or why it cannot run."""
    pipeline = pipelines.get(record.pipeline)
    if pipeline is None:
        known = ", ".join(sorted(pipelines)) or "none registered"
        return ErrorInfo(
            type="PipelineNotFound",
            message=f"pipeline {record.pipeline!r} is not registered after the restart "
            f"(known: {known}), so this queued execution cannot start",
        )
    try:
        inputs = pipeline.validate_inputs(record.inputs)
    except InputError as exc:
        return ErrorInfo(
            type="InputError",
            message=f"the recorded inputs no longer fit after the restart: {exc}",
        )
    pipeline = pipeline.for_inputs(inputs)
    if [s.name for s in pipeline.steps] != [s.name for s in record.steps]:
        return ErrorInfo(
            type="PipelineChanged",
            message=f"pipeline {record.pipeline!r} has other steps than when this execution "
            f"was queued ({', '.join(s.name for s in record.steps)}), so it cannot start",
        )
    return Requeued(record, pipeline, inputs)


def _stopped_error(record: ExecutionRecord, now: datetime) -> ErrorInfo:
    """Why a running execution of a stopped process ended, and when, as far as its record says."""
    running = [s.name for s in record.steps if s.status == "running"]
    return ErrorInfo(
        type="ServerStopped",
        step=running[0] if running else None,
        message=(
            "the server stopped while this execution ran (last event at "
            f"{_last_activity(record).isoformat(timespec='milliseconds')}); "
            f"it was marked failed at {now.isoformat(timespec='milliseconds')} on restart"
        ),
    )


def _last_activity(record: ExecutionRecord) -> datetime:
    """The latest moment the record vouches for: its start plus the elapsed time of its progress."""
    moments = [record.created_at]
    if record.started_at is not None:
        moments.append(record.started_at)
        if record.progress is not None and record.progress.elapsed_seconds is not None:
            moments.append(record.started_at + timedelta(seconds=record.progress.elapsed_seconds))
    for step in record.steps:
        if step.started_at is not None:
            moments.append(step.started_at + timedelta(seconds=step.duration_seconds or 0.0))
    return max(moments)
