"""Declaring a pipeline that cannot run fails at once, naming the function and the fix."""

from __future__ import annotations

import inspect
import math

import pytest

from stepstream import Engine, Pipeline, PipelineDefinitionError, Progress


def _two_step_pipeline() -> Pipeline:
    p = Pipeline("demo")

    @p.step
    def first(n: int) -> int:
        return n

    return p


def test_steps_run_in_declaration_order_and_the_decorator_returns_the_function() -> None:
    p = Pipeline("order", description="three steps")

    @p.step
    def a(x: int) -> list[str]:
        return ["a"]

    @p.step(name="bee", weight=2)
    def b(trail: list[str]) -> list[str]:
        return [*trail, "b"]

    @p.step
    def c(trail: list[str], progress: Progress) -> list[str]:
        return [*trail, "c"]

    assert [s.name for s in p.steps] == ["a", "bee", "c"]
    assert [s.weight for s in p.steps] == [1.0, 2.0, 1.0]
    assert p.description == "three steps"
    assert b(["x"]) == ["x", "b"]
    assert p.run(x=1) == ["a", "b", "c"]


def test_a_pipeline_without_steps_fails_when_added_or_run() -> None:
    empty = Pipeline("empty")
    with pytest.raises(PipelineDefinitionError, match=r"'empty' has no steps.*@empty\.step"):
        Engine(load_entrypoints=False).add_pipeline(empty)
    with pytest.raises(PipelineDefinitionError, match="has no steps"):
        empty.run()
    with pytest.raises(PipelineDefinitionError, match="has no steps"):
        empty.input_schema()


def test_a_pipeline_needs_a_name() -> None:
    with pytest.raises(PipelineDefinitionError, match="non-empty name"):
        Pipeline("  ")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def later():\n    return 1\n", "takes no parameters besides Progress"),
        ("def later(progress: Progress):\n    return 1\n", "takes no parameters besides Progress"),
        ("def later(a, b):\n    return a\n", "takes 'a', which matches no earlier step"),
        (
            "def later(a, b, progress: Progress):\n    return a\n",
            "takes 'a', which matches no earlier step",
        ),
    ],
)
def test_a_later_step_takes_the_previous_result_or_names_what_it_takes(
    source: str, problem: str
) -> None:
    p = _two_step_pipeline()
    namespace: dict = {"Progress": Progress}
    exec(source, namespace)
    with pytest.raises(PipelineDefinitionError) as info:
        p.step(namespace["later"])
    message = str(info.value)
    assert "later" in message
    assert problem in message
    assert [s.name for s in p.steps] == ["first"]


def test_a_later_step_with_one_value_and_progress_is_fine() -> None:
    p = _two_step_pipeline()

    @p.step
    def second(value: int, progress: Progress) -> int:
        return value + 1

    assert p.run(n=1) == 2


def test_two_steps_with_one_name_are_refused_naming_both_and_the_fix() -> None:
    p = _two_step_pipeline()

    with pytest.raises(PipelineDefinitionError) as info:

        @p.step(name="first")
        def other(value: int) -> int:
            return value

    message = str(info.value)
    assert "already has a step named 'first'" in message
    assert "other" in message
    assert "@pipeline.step(name=...)" in message


def test_same_function_name_twice_is_a_duplicate_too() -> None:
    p = _two_step_pipeline()

    def first(value: int) -> int:
        return value

    with pytest.raises(PipelineDefinitionError, match="already has a step named 'first'"):
        p.step(first)


@pytest.mark.parametrize("weight", [0, -1, "3", True, None, math.nan, math.inf])
def test_a_weight_must_be_a_positive_finite_number(weight: object) -> None:
    p = _two_step_pipeline()

    def heavy(value: int) -> int:
        return value

    with pytest.raises(PipelineDefinitionError) as info:
        p.step(name="heavy", weight=weight)(heavy)  # type: ignore[arg-type]
    assert "heavy" in str(info.value)
    assert "finite positive number" in str(info.value)


def test_star_args_and_kwargs_are_refused() -> None:
    p = Pipeline("stars")

    def takes_args(*rows: int) -> int:
        return 0

    def takes_kwargs(**options: int) -> int:
        return 0

    with pytest.raises(
        PipelineDefinitionError,
        match=r"takes_args \(test_authoring.py:\d+\) takes \*rows.*named parameters",
    ):
        p.step(takes_args)
    with pytest.raises(PipelineDefinitionError, match=r"takes_kwargs \(.*\) takes \*\*options"):
        p.step(takes_kwargs)
    assert p.steps == []


def test_two_progress_parameters_are_refused() -> None:
    p = Pipeline("twice")

    def both(a: Progress, b: Progress) -> None:
        return None

    with pytest.raises(
        PipelineDefinitionError,
        match=r"both \(test_authoring.py:\d+\) has more than one Progress.*a, b",
    ):
        p.step(both)


def test_unresolvable_annotations_name_the_function() -> None:
    p = Pipeline("hints")

    def odd(x: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0

    odd.__annotations__["x"] = "NotDefinedAnywhere"
    with pytest.raises(
        PipelineDefinitionError, match=r"odd \(test_authoring.py:\d+\) has type hints that cannot"
    ):
        p.step(odd)


def test_decorating_something_not_callable_is_refused() -> None:
    p = Pipeline("junk")
    with pytest.raises(PipelineDefinitionError, match="decorates functions"):
        p.step(42)  # type: ignore[call-overload]


def test_an_optional_progress_parameter_is_still_the_progress_handle() -> None:
    p = Pipeline("optional")

    @p.step
    def first(rows: int = 2, progress: Progress | None = None) -> int:
        assert isinstance(progress, Progress)
        return rows

    @p.step
    def second(rows: int, progress: Progress | None = None) -> int:
        assert isinstance(progress, Progress)
        return rows * 2

    assert [f.name for f in p.inputs] == ["rows"]
    assert p.run() == 4


@pytest.mark.anyio
async def test_pipeline_run_inside_a_running_loop_says_what_to_use_instead() -> None:
    p = Pipeline("nested")

    @p.step
    def only() -> int:
        return 1

    with pytest.raises(RuntimeError, match=r"await stepstream.Engine\(\).run"):
        p.run()


def test_every_kind_of_parameter_is_read_as_python_reads_it() -> None:
    p = Pipeline("kinds")

    @p.step
    def first(a: int, b: int = 2, *, c: int, d: int = 4) -> int:
        return a + b + c + d

    @p.step
    def second(value: int, /) -> int:  # a chained value may come by position
        return value * 10

    assert [(f.name, f.required, f.default) for f in p.inputs] == [
        ("a", True, inspect.Parameter.empty),
        ("b", False, 2),
        ("c", True, inspect.Parameter.empty),
        ("d", False, 4),
    ]
    assert p.run(a=1, c=1) == 80


def test_inputs_by_position_only_are_refused_at_declaration() -> None:
    p = Pipeline("by-position")
    with pytest.raises(PipelineDefinitionError, match=r"takes a, b by position only .*remove"):

        @p.step
        def first(a: int, b: int = 2, /) -> int:
            return a + b

    assert p.steps == []
