"""Request and response bodies of the HTTP API that stepstream.events does not already define."""

from __future__ import annotations

from typing import Any

import msgspec

from stepstream import AnyEvent, ExecutionRecord, Pipeline


class SubmitRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /executions`: which pipeline to run, with what; a misspelt key is an error."""

    pipeline: str
    inputs: dict[str, Any] | None = None


class ExecutionPage(msgspec.Struct):
    """One page of executions, newest first; pass `next_cursor` back as `cursor` for the next."""

    items: list[ExecutionRecord]
    next_cursor: str | None


class EventLog(msgspec.Struct):
    """An execution's logged events after a sequence number, for clients that missed messages."""

    execution_id: str
    events: list[AnyEvent]
    last_seq: int


class StepInfo(msgspec.Struct):
    """A declared step: its name, its share of the percentage and the steps it waits for."""

    name: str
    weight: float
    upstream: list[str] = msgspec.field(default_factory=list)  # names; a chain: the previous


class PipelineInfo(msgspec.Struct):
    """What a client needs to start a pipeline: its steps and the JSON Schema of its inputs."""

    name: str
    description: str
    steps: list[StepInfo]
    input_schema: dict[str, Any]
    max_parallel: int | None = None  # sync steps at once in a graph; None: the default
    outputs: list[str] | None = None  # the steps whose results are the outputs; None: the last

    @classmethod
    def of(cls, pipeline: Pipeline) -> PipelineInfo:
        """Describe a registered pipeline, its graph included, so a dashboard can draw it."""
        steps = pipeline.steps
        return cls(
            name=pipeline.name,
            description=pipeline.description,
            steps=[
                StepInfo(name=s.name, weight=s.weight, upstream=[steps[i].name for i in s.upstream])
                for s in steps
            ],
            input_schema=pipeline.input_schema(),
            max_parallel=pipeline.max_parallel,
            outputs=pipeline.outputs,
        )


class PipelineList(msgspec.Struct):
    """Every pipeline this server can run, by name."""

    items: list[PipelineInfo]


class Health(msgspec.Struct):
    """Liveness (`ok`: the process answers) or readiness (`ready`: the store writes)."""

    status: str = "ok"
