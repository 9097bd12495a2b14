"""The OpenAPI document: a well-formed OpenAPI 3.1 document listing every HTTP route."""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec
import pytest

from stepstream import Pipeline

pytestmark = pytest.mark.anyio

ROUTES = {
    ("post", "/api/v1/executions"),
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{}"),
    ("get", "/api/v1/executions/{}/progress"),
    ("post", "/api/v1/executions/{}/cancel"),
    ("get", "/api/v1/executions/{}/events"),
    ("get", "/api/v1/pipelines"),
    ("get", "/api/v1/pipelines/{}"),
    ("get", "/health"),
    ("head", "/health"),
    ("get", "/health/ready"),
    ("head", "/health/ready"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer such as #/components/schemas/Problem."""
    assert ref.startswith("#/"), f"non-local $ref {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    """Every $ref string anywhere in the document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def test_openapi_document_is_3_1_and_lists_every_route(server: Any) -> None:
    response = await server.http.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/")
    document = response.json()
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"] and document["info"]["version"]

    listed = set()
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        for method, operation in item.items():
            if method not in METHODS:
                continue
            listed.add((method, re.sub(r"\{[^}]+\}", "{}", path.rstrip("/") or "/")))
            assert operation["responses"], (method, path)
            for name in re.findall(r"\{([^}]+)\}", path):
                params = operation.get("parameters", []) + item.get("parameters", [])
                params = [resolve(document, p["$ref"]) if "$ref" in p else p for p in params]
                assert any(
                    p["name"] == name and p["in"] == "path" and p["required"] for p in params
                ), f"{method.upper()} {path} does not declare its path parameter {name}"
    assert listed >= ROUTES, f"missing from OpenAPI: {sorted(ROUTES - listed)}"

    for ref in refs(document):
        resolve(document, ref)


async def test_openapi_describes_the_documented_status_codes(server: Any) -> None:
    paths = (await server.http.get("/schema/openapi.json")).json()["paths"]
    normalised = {re.sub(r"\{[^}]+\}", "{}", p.rstrip("/")): item for p, item in paths.items()}
    expected = {
        ("post", "/api/v1/executions"): {"202", "400", "404", "415", "422", "503"},
        ("get", "/api/v1/executions"): {"200", "400"},
        ("get", "/api/v1/executions/{}"): {"200", "404"},
        ("get", "/api/v1/executions/{}/progress"): {"200", "204", "404"},
        ("post", "/api/v1/executions/{}/cancel"): {"202", "404", "409", "503"},
        ("get", "/api/v1/executions/{}/events"): {"200", "400", "404"},
        ("get", "/api/v1/pipelines/{}"): {"200", "404"},
        ("get", "/health/ready"): {"200", "503"},
    }
    for (method, path), codes in expected.items():
        documented = set(normalised[path][method]["responses"])
        assert codes <= documented, f"{method.upper()} {path} documents {sorted(documented)}"


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(msgspec.Struct):
    x: int
    y: int


paint = Pipeline("paint", description="Inputs whose JSON Schema has $defs")


@paint.step
def brush(colour: Colour = Colour.RED, at: Point | None = None) -> str:
    """Uses an enum and a struct as inputs."""
    return colour.value


async def test_the_start_request_names_each_pipeline_and_its_inputs(server: Any) -> None:
    """The document said `pipeline: string, inputs: object`: no client (or fuzzer) could
    know what to send."""
    server.engine.add_pipeline(paint)  # registered after the app was made: still listed
    document = (await server.http.get("/schema/openapi.json")).json()
    submit = document["components"]["schemas"]["SubmitRequest"]
    names = sorted(server.engine.pipelines)
    assert submit["properties"]["pipeline"] == {"type": "string", "enum": names}
    variants = {v["properties"]["pipeline"]["const"]: v for v in submit["oneOf"]}
    assert sorted(variants) == names
    demo_inputs = variants["demo"]["properties"]["inputs"]["oneOf"][0]
    assert demo_inputs["properties"]["steps"]["maximum"] == 20
    assert demo_inputs["additionalProperties"] is False  # unknown inputs are refused
    # $defs move to the components, where their $refs now point.
    paint_inputs = variants["paint"]["properties"]["inputs"]["oneOf"][0]
    assert paint_inputs["properties"]["colour"]["$ref"] == "#/components/schemas/paint.Colour"
    assert document["components"]["schemas"]["paint.Colour"]["enum"] == ["blue", "red"]
    for ref in refs(document):
        resolve(document, ref)
    yaml = await server.http.get("/schema/openapi.yaml")
    assert "const: paint" in yaml.text
