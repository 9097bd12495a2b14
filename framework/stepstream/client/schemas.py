"""The server's answers that are not records or events: pages, event logs, pipeline descriptions."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ..model.events import AnyEvent, ExecutionRecord, LogLine


class ExecutionPage(msgspec.Struct):
    """One page of executions, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[ExecutionRecord]
    next_cursor: str | None


class EventLog(msgspec.Struct):
    """An execution's logged events after a seq; `last_seq` is where to resume from."""

    execution_id: str
    events: list[AnyEvent]
    last_seq: int


class LogPage(msgspec.Struct):
    """An execution's captured lines after a number; pass `next_after` as `after` for later ones."""

    execution_id: str
    lines: list[LogLine]
    next_after: int


class StepInfo(msgspec.Struct):
    """A declared step: its name and its share of the percentage."""

    name: str
    weight: float


class InputInfo(msgspec.Struct, kw_only=True):
    """One input of a pipeline, read from its JSON Schema: `type` is a short label."""

    name: str
    type: str
    required: bool
    default: Any = None


class PipelineInfo(msgspec.Struct):
    """What a server can run: the pipeline's steps and the JSON Schema of its inputs."""

    name: str
    description: str
    steps: list[StepInfo]
    input_schema: dict[str, Any]

    @property
    def inputs(self) -> list[InputInfo]:
        """Each input's name, type label, whether it is required and its default."""
        required = set(self.input_schema.get("required", ()))
        return [
            InputInfo(
                name=name,
                type=type_label(schema),
                required=name in required,
                default=schema.get("default"),
            )
            for name, schema in self.input_schema.get("properties", {}).items()
        ]


class PipelineList(msgspec.Struct):
    """`GET /api/v1/pipelines`."""

    items: list[PipelineInfo]


def type_label(schema: dict[str, Any]) -> str:
    """`integer`, `number | null`, `'plain' | 'fancy'`: a JSON Schema as a person reads it."""
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(type_label(option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict) and schema["items"]:
        return f"array of {type_label(schema['items'])}"
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind:
        return str(kind)
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return "any"


record_decoder = msgspec.json.Decoder(ExecutionRecord)
page_decoder = msgspec.json.Decoder(ExecutionPage)
log_decoder = msgspec.json.Decoder(EventLog)
lines_decoder = msgspec.json.Decoder(LogPage)
pipeline_decoder = msgspec.json.Decoder(PipelineInfo)
pipelines_decoder = msgspec.json.Decoder(PipelineList)
