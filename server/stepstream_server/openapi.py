"""The OpenAPI document as served: the start request spelled out for each registered pipeline.

Litestar describes `POST /api/v1/executions` from `SubmitRequest`: any `pipeline`
string, any `inputs` object. Pipelines are registered at run time, so the document
is completed when it is served: `SubmitRequest` becomes one alternative per
pipeline, its name as a constant and its inputs' JSON Schema (`Pipeline.input_schema`,
unknown inputs refused, as the server refuses them). Clients and API fuzzers
(tests/e2e/test_api_fuzz.py) then know the real names and inputs.

`POST /api/v1/events` reads its body itself (an event of a type this version does
not know is skipped, not refused), so its body, a transport `Batch`, is described
here from msgspec's schema of it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin

from stepstream import Engine, Pipeline
from stepstream.transports.wire import Batch

SUBMIT = "SubmitRequest"
EVENTS = "/api/v1/events"
WIRE = "wire."  # prefix of the components msgspec describes the ingest body with
_NAME = re.compile(r"[^A-Za-z0-9._-]")


def with_pipelines(document: dict[str, Any], pipelines: Mapping[str, Pipeline]) -> dict[str, Any]:
    """`document` with `SubmitRequest` naming each pipeline and its inputs; not changed in place."""
    schemas = document.get("components", {}).get("schemas", {})
    if SUBMIT not in schemas or not pipelines:
        return document
    schemas = dict(schemas)
    variants = []
    for name in sorted(pipelines):
        inputs = _inputs_schema(name, pipelines[name], schemas)
        variants.append(
            {
                "type": "object",
                "title": f"Start {name}",
                "properties": {
                    "pipeline": {"const": name},
                    "inputs": {"oneOf": [inputs, {"type": "null"}]},
                },
                "required": ["pipeline"],
                "additionalProperties": False,
            }
        )
    schemas[SUBMIT] = {
        "title": SUBMIT,
        "description": "Which pipeline to run, with which inputs (omitted: the defaults)",
        "type": "object",
        "properties": {"pipeline": {"type": "string", "enum": sorted(pipelines)}},
        "required": ["pipeline"],
        "oneOf": variants,
    }
    return {**document, "components": {**document["components"], "schemas": schemas}}


def _inputs_schema(name: str, pipeline: Pipeline, schemas: dict[str, Any]) -> dict[str, Any]:
    """A pipeline's input schema for the document: its `$defs` moved to the components."""
    schema = copy.deepcopy(pipeline.input_schema())
    schema.setdefault("additionalProperties", False)  # validate_inputs refuses unknown inputs
    defs = schema.pop("$defs", {})
    prefix = _NAME.sub("_", name)
    renamed = {f"#/$defs/{key}": f"#/components/schemas/{prefix}.{key}" for key in defs}
    for key, value in defs.items():
        schemas[f"{prefix}.{key}"] = _rewrite_refs(value, renamed)
    return _rewrite_refs(schema, renamed)


def _rewrite_refs(node: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: renamed.get(value, value) if key == "$ref" else _rewrite_refs(value, renamed)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, renamed) for item in node]
    return node


def with_ingest_body(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the body of `POST /api/v1/events` described; not changed in place."""
    route = document.get("paths", {}).get(EVENTS, {}).get("post")
    if route is None:
        return document
    (batch,), components = msgspec.json.schema_components(
        [Batch], ref_template=f"#/components/schemas/{WIRE}{{name}}"
    )
    route = {
        **route,
        "requestBody": {"required": True, "content": {"application/json": {"schema": batch}}},
    }
    schemas = {
        **document.get("components", {}).get("schemas", {}),
        **{f"{WIRE}{name}": schema for name, schema in components.items()},
    }
    paths = {**document["paths"], EVENTS: {**document["paths"][EVENTS], "post": route}}
    return {
        **document,
        "paths": paths,
        "components": {**document["components"], "schemas": schemas},
    }


def completed(document: dict[str, Any], engine: Engine) -> dict[str, Any]:
    """The document as served: pipelines spelled out, the ingest body described."""
    return with_ingest_body(with_pipelines(document, engine.pipelines))


class PipelinesJson(JsonRenderPlugin):
    """`/schema/openapi.json`, completed with the engine's pipelines."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, completed(openapi_schema, self.engine))


class PipelinesYaml(YamlRenderPlugin):
    """`/schema/openapi.yaml`, completed with the engine's pipelines."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, completed(openapi_schema, self.engine))
