"""Inputs are checked against the first step before anything runs; every problem at once."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from stepstream import Engine, InputError, Pipeline, Progress


def _pipeline() -> Pipeline:
    p = Pipeline("shop")

    @p.step
    def first(
        rows: int,
        region: str,
        progress: Progress,
        ratio: float = 0.5,
        tags: list[str] | None = None,
        anything=3,
    ) -> dict[str, Any]:
        return {"rows": rows, "region": region, "ratio": ratio, "tags": tags, "anything": anything}

    @p.step
    def second(value: dict[str, Any]) -> dict[str, Any]:
        return value

    return p


def test_missing_unknown_and_mistyped_fields_are_reported_together_by_name() -> None:
    p = _pipeline()
    with pytest.raises(InputError) as info:
        p.validate_inputs({"region": 5, "colour": "red", "ratio": "high"})
    error = info.value
    assert error.pipeline == "shop"
    assert set(error.problems) == {"rows", "region", "colour", "ratio"}
    assert error.problems["rows"] == "missing (expected int)"
    assert error.problems["region"].startswith("expected str, got integer")
    assert error.problems["ratio"].startswith("expected float, got string")
    assert error.problems["colour"].startswith("unknown input")
    for name in ("anything", "ratio", "region", "rows", "tags"):
        assert name in error.problems["colour"]
    message = str(error)
    assert "'shop'" in message
    for field in ("rows:", "region:", "colour:", "ratio:"):
        assert field in message


def test_progress_is_not_an_input() -> None:
    p = _pipeline()
    with pytest.raises(InputError) as info:
        p.validate_inputs({"rows": 1, "region": "n", "progress": 1})
    assert set(info.value.problems) == {"progress"}


def test_nested_type_errors_say_where() -> None:
    p = _pipeline()
    with pytest.raises(InputError) as info:
        p.validate_inputs({"rows": 1, "region": "n", "tags": ["a", 2]})
    assert "tags[1]" in info.value.problems["tags"]


def test_inputs_must_be_an_object() -> None:
    with pytest.raises(InputError) as info:
        _pipeline().validate_inputs([1, 2])  # type: ignore[arg-type]
    assert info.value.problems == {"inputs": "expected an object, got array"}


def test_valid_inputs_are_converted_and_defaults_reach_the_step() -> None:
    p = _pipeline()
    assert p.validate_inputs({"rows": 3, "region": "north", "ratio": 1}) == {
        "rows": 3,
        "region": "north",
        "ratio": 1.0,
        "anything": 3,
        "tags": None,
    }
    assert p.run(rows=3, region="north") == {
        "rows": 3,
        "region": "north",
        "ratio": 0.5,
        "tags": None,
        "anything": 3,
    }


def test_bool_is_not_an_int() -> None:
    with pytest.raises(InputError) as info:
        _pipeline().validate_inputs({"rows": True, "region": "n"})
    assert info.value.problems == {"rows": "expected int, got boolean"}


@pytest.mark.anyio
async def test_bad_inputs_create_no_execution() -> None:
    p = _pipeline()
    async with Engine(load_entrypoints=False) as engine:
        with pytest.raises(InputError):
            engine.submit(p, {"rows": "many"})
        with pytest.raises(InputError):
            await engine.run(p, {})
        assert engine.list() == []


def test_run_raises_input_error_before_any_step() -> None:
    ran: list[int] = []
    p = Pipeline("guarded")

    @p.step
    def only(n: int) -> int:
        ran.append(n)
        return n

    with pytest.raises(InputError, match="n: missing"):
        p.run()
    assert ran == []


def test_input_schema_describes_types_defaults_and_required_fields() -> None:
    schema = _pipeline().input_schema()
    assert schema["type"] == "object"
    assert schema["required"] == ["rows", "region"]
    props = schema["properties"]
    assert list(props) == ["rows", "region", "ratio", "tags", "anything"]
    assert props["rows"] == {"type": "integer"}
    assert props["region"] == {"type": "string"}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["tags"]["default"] is None
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["anyOf"]
    assert props["anything"] == {"default": 3}
    assert "$ref" not in schema
    assert "title" not in schema


def test_input_schema_of_a_pipeline_without_inputs_requires_nothing() -> None:
    p = Pipeline("bare")

    @p.step
    def only() -> int:
        return 1

    schema = p.input_schema()
    assert schema["type"] == "object"
    assert schema["properties"] == {}
    assert schema.get("required", []) == []


class Point(msgspec.Struct):
    """A nested input type, to check its schema lands in `$defs`."""

    x: int
    y: int


def test_input_schema_keeps_nested_definitions() -> None:
    p = Pipeline("geo")

    @p.step
    def first(origin: Point) -> Point:
        return origin

    schema = p.input_schema()
    assert schema["required"] == ["origin"]
    ref = schema["properties"]["origin"]["$ref"]
    assert ref.rsplit("/", 1)[-1] in schema["$defs"]
    assert p.validate_inputs({"origin": {"x": 1, "y": 2}}) == {"origin": Point(1, 2)}
