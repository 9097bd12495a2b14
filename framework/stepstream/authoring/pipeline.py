"""Pipelines of decorated steps, checked when declared so that what is declared can run."""

from __future__ import annotations

import copy
import inspect
import math
import os
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

from ..errors import InputError, PipelineDefinitionError
from .policy import Attempts, attempts_for, check_timeout, is_plain
from .progress import Progress

F = TypeVar("F", bound=Callable[..., Any])


class Step:
    """One declared step: the function, how it is called and its share of the percentage."""

    __slots__ = (
        "attempts",
        "fn",
        "from_inputs",
        "from_steps",
        "is_async",
        "name",
        "progress_param",
        "takes_value_only",
        "upstream",
        "value_param",
        "weight",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        weight: float,
        value_param: str | None,
        progress_param: str | None,
        attempts: Attempts | None = None,
        links: Links | None = None,
        params: list[inspect.Parameter] | None = None,
    ) -> None:
        self.fn = fn
        self.attempts = attempts  # retries and timeout; None: called once, however long
        self.name = name
        self.weight = weight
        # value_param takes the previous step's result (a chain); otherwise `links` say
        # which parameters take which earlier steps' results and which take inputs.
        self.value_param = value_param
        links = links or Links()
        self.from_steps = links.steps
        self.from_inputs = links.inputs
        self.upstream = links.upstream
        self.progress_param = progress_param
        self.is_async = inspect.iscoroutinefunction(fn)
        if params is None:
            params = _parameters(fn)
        first = params[0] if params else None
        # The common case, called positionally on the hot path: `def step(previous): ...`.
        self.takes_value_only = (
            progress_param is None
            and first is not None
            and first.name == value_param
            and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD)
        )

    def __repr__(self) -> str:
        return f"Step({self.name!r}, weight={self.weight})"


class Links(msgspec.Struct, frozen=True):
    """What a step takes besides the previous result: earlier steps' results and inputs."""

    steps: tuple[tuple[str, int], ...] = ()  # (parameter, index of the step it takes)
    inputs: tuple[str, ...] = ()  # parameters that take the pipeline input of that name
    upstream: tuple[int, ...] = ()  # the steps it waits for, ascending


class InputField(msgspec.Struct, frozen=True):
    """One input of a pipeline: the first step's parameter it feeds."""

    name: str
    type: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        """True when the caller must provide a value."""
        return self.default is inspect.Parameter.empty


def _describe(fn: Callable[..., Any]) -> str:
    """`name (file.py:line)`: where a person finds the function, whatever its module is called."""
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__name__", repr(fn))
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """What `inspect.signature` says of `fn`'s parameters, read straight off a plain function.

    A plain function's code object holds them; `inspect.signature`'s general path
    costs more than the rest of declaring a step, 100,000 times for a long pipeline.
    """
    code = getattr(fn, "__code__", None)
    if type(fn) is not types.FunctionType or code is None or hasattr(fn, "__wrapped__"):
        return list(inspect.signature(fn).parameters.values())
    Param = inspect.Parameter
    empty = Param.empty
    names = code.co_varnames
    positional = code.co_argcount
    defaults = fn.__defaults__ or ()
    first_default = positional - len(defaults)
    params = []
    for i in range(positional):
        kind = Param.POSITIONAL_ONLY if i < code.co_posonlyargcount else Param.POSITIONAL_OR_KEYWORD
        default = defaults[i - first_default] if i >= first_default else empty
        params.append(Param(names[i], kind, default=default))
    at = positional + code.co_kwonlyargcount
    if code.co_flags & inspect.CO_VARARGS:
        params.append(Param(names[at], Param.VAR_POSITIONAL))
        at += 1
    kwdefaults = fn.__kwdefaults__ or {}
    for name in names[positional : positional + code.co_kwonlyargcount]:
        params.append(Param(name, Param.KEYWORD_ONLY, default=kwdefaults.get(name, empty)))
    if code.co_flags & inspect.CO_VARKEYWORDS:
        params.append(Param(names[at], Param.VAR_KEYWORD))
    return params


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)  # keeps msgspec.Meta limits
    except Exception as exc:
        raise PipelineDefinitionError(
            f"step {_describe(fn)} has type hints that cannot be resolved ({exc}); "
            "import the names its annotations use at module level"
        ) from exc
    return {name: _strip_progress(hint) for name, hint in hints.items()}


def _strip_progress(hint: Any) -> Any:
    """`Annotated[Progress, ...]` and `Progress | None` still ask for the Progress handle."""
    if typing.get_origin(hint) is typing.Annotated:
        return Progress if _strip_progress(typing.get_args(hint)[0]) is Progress else hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = set(typing.get_args(hint)) - {type(None)}
        return Progress if members == {Progress} else hint
    return hint


class Pipeline:
    """A named graph of steps, declared in order; the first step's parameters are its inputs.

    A step takes the previous step's result, or, when its parameters name earlier
    steps and inputs, theirs; steps that do not wait for each other run at once,
    sync ones at most `max_parallel` at a time. The outputs are the last step's
    result, or with `outputs=[...]` a dict of the named steps' results.
    `timeout` (seconds, or None) bounds a whole execution, from its first step's start.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        *,
        timeout: float | None = None,
        max_parallel: int | None = None,
        outputs: list[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise PipelineDefinitionError("a pipeline needs a non-empty name, e.g. Pipeline('etl')")
        self.name = name
        self.description = description
        self.timeout = check_timeout(timeout, f"pipeline {name!r}")
        self.max_parallel = _check_max_parallel(max_parallel, name)
        self.outputs = _check_outputs(outputs, name)
        self.steps: list[Step] = []
        self.is_graph = False  # True once a step takes more than the previous result
        self._index: dict[str, int] = {}
        self._inputs: list[InputField] = []
        self._input_schema: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={[s.name for s in self.steps]})"

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(
        self,
        *,
        name: str | None = None,
        weight: float = 1.0,
        retries: int = 0,
        retry_delay: float = 0.0,
        backoff: float = 1.0,
        retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        weight: float = 1.0,
        retries: int = 0,
        retry_delay: float = 0.0,
        backoff: float = 1.0,
        retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
        timeout: float | None = None,
    ) -> F | Callable[[F], F]:
        """Declare a step: `@pipeline.step` or `@pipeline.step(name=..., weight=..., ...)`.

        A step that raises one of `retry_on` is tried again up to `retries` times,
        waiting `retry_delay` seconds, times `backoff` after each further failure;
        `timeout` bounds each attempt (see docs/authoring.md, "Retries and timeouts").
        """
        policy = (retries, retry_delay, backoff, retry_on, timeout)  # checked in _add
        if fn is not None:
            self._add(fn, name, weight, policy)
            return fn

        def decorate(func: F) -> F:
            self._add(func, name, weight, policy)
            return func

        return decorate

    def _add(
        self,
        fn: Callable[..., Any],
        name: str | None,
        weight: float,
        policy: tuple[Any, ...],
    ) -> None:
        if not callable(fn):
            raise PipelineDefinitionError(
                f"@{self.name}.step decorates functions, got {fn!r}; "
                "use @pipeline.step or @pipeline.step(name=..., weight=...)"
            )
        step_name = name or fn.__name__
        if step_name in self._index:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} already has a step named {step_name!r} "
                f"({_describe(fn)}); give one of them another name with "
                "@pipeline.step(name=...)"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 < weight < math.inf
        ):
            raise PipelineDefinitionError(
                f"step {step_name!r} ({_describe(fn)}) has weight {weight!r}; "
                "a weight is a finite positive number"
            )
        attempts = None
        if not is_plain(*policy):
            attempts = attempts_for(f"step {step_name!r} ({_describe(fn)})", *policy)
        hints = _hints(fn) if getattr(fn, "__annotations__", None) else {}
        params = _parameters(fn)
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise PipelineDefinitionError(
                    f"step {_describe(fn)} takes {'**' if p.kind == p.VAR_KEYWORD else '*'}"
                    f"{p.name}; "
                    "steps take named parameters only"
                )
        progress_params = [p.name for p in params if hints.get(p.name) is Progress]
        if len(progress_params) > 1:
            raise PipelineDefinitionError(
                f"step {_describe(fn)} has more than one Progress parameter "
                f"({', '.join(progress_params)}); keep one"
            )
        progress_param = progress_params[0] if progress_params else None
        others = [p for p in params if p.name != progress_param]
        value_param = None
        links = None
        if not self.steps:
            self._inputs = [InputField(p.name, hints.get(p.name, Any), p.default) for p in others]
            self._input_schema = None
        elif len(others) == 1 and others[0].name not in self._index:
            value_param = others[0].name  # a chain: `def step(previous): ...`, as always
            if others[0].name == step_name:
                raise _cycle(fn, step_name)
        else:
            links = self._link(fn, step_name, others)
            previous = len(self.steps) - 1
            if len(links.steps) == 1 and links.steps[0][1] == previous and not links.inputs:
                value_param, links = links.steps[0][0], None  # names the previous step: a chain
            else:
                self.is_graph = True
        if links is None and self.steps:
            links = Links(upstream=(len(self.steps) - 1,))
        step = Step(
            fn, step_name, float(weight), value_param, progress_param, attempts, links, params
        )
        by_position = [p.name for p in params if p.kind is p.POSITIONAL_ONLY]
        if by_position and not (step.takes_value_only and by_position == [value_param]):
            raise PipelineDefinitionError(
                f"step {_describe(fn)} takes {', '.join(by_position)} by position only (before "
                "`/`); a step is given its inputs and earlier results by name: remove the `/`"
            )
        self._index[step_name] = len(self.steps)
        self.steps.append(step)

    def _link(self, fn: Callable[..., Any], step_name: str, params: list[Any]) -> Links:
        """Which earlier steps' results and which inputs a step's parameters take."""
        if not params:
            raise PipelineDefinitionError(
                f"step {_describe(fn)} takes no parameters besides Progress; a step after "
                "the first takes the previous step's result (one parameter) or names the "
                f"earlier steps and inputs it needs, e.g. def {fn.__name__}(value): ..."
            )
        inputs = {f.name for f in self._inputs}
        steps: list[tuple[str, int]] = []
        taken_inputs: list[str] = []
        for p in params:
            if p.name == step_name:
                raise _cycle(fn, step_name)
            if p.name in self._index and p.name in inputs:
                raise PipelineDefinitionError(
                    f"step {_describe(fn)} takes {p.name!r}, which names both a step and an "
                    "input of the pipeline; rename the step with @pipeline.step(name=...) "
                    "or the first step's parameter"
                )
            if p.name in self._index:
                steps.append((p.name, self._index[p.name]))
            elif p.name in inputs:
                taken_inputs.append(p.name)
            elif p.default is inspect.Parameter.empty:
                raise PipelineDefinitionError(
                    f"step {_describe(fn)} takes {p.name!r}, which matches no earlier step "
                    f"({_listing(self._index)}) and no input ({_listing(inputs)}); name one "
                    "of them, give the parameter a default, or declare the step it needs "
                    "above this one"
                )
        upstream = tuple(sorted({index for _, index in steps}))
        return Links(steps=tuple(steps), inputs=tuple(taken_inputs), upstream=upstream)

    def downstream(self) -> list[list[int]]:
        """For each step, the steps that wait for it."""
        waiting: list[list[int]] = [[] for _ in self.steps]
        for index, step in enumerate(self.steps):
            for before in step.upstream:
                waiting[before].append(index)
        return waiting

    @property
    def inputs(self) -> list[InputField]:
        """The pipeline's inputs, from the first step's signature."""
        return list(self._inputs)

    def check_runnable(self) -> None:
        """Raise PipelineDefinitionError unless the pipeline has something to run."""
        if not self.steps:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} has no steps; decorate a function with @{self.name}.step"
            )
        unknown = [name for name in self.outputs or () if name not in self._index]
        if unknown:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} names outputs={unknown!r}, but it has no step of that "
                f"name (its steps: {_listing(self._index)}); name declared steps"
            )

    def output_of(self, results: dict[int, Any]) -> Any:
        """The execution's outputs from the steps' results: the last one's, or the named ones."""
        if self.outputs is None:
            return results[len(self.steps) - 1]
        return {name: results[self._index[name]] for name in self.outputs}

    def validate_inputs(self, inputs: dict[str, Any] | None) -> dict[str, Any]:
        """Convert inputs to the first step's types; report every bad field at once."""
        self.check_runnable()
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise InputError(self.name, {"inputs": f"expected an object, got {_type_name(inputs)}"})
        problems: dict[str, str] = {}
        known = {f.name for f in self._inputs}
        for key in inputs:
            if key not in known:
                expected = ", ".join(sorted(known)) or "no inputs"
                problems[key] = f"unknown input (expected: {expected})"
        converted: dict[str, Any] = {}
        for field in self._inputs:
            if field.name not in inputs:
                if field.required:
                    problems[field.name] = f"missing (expected {_type_label(field.type)})"
                else:
                    converted[field.name] = field.default
                continue
            try:
                converted[field.name] = msgspec.convert(inputs[field.name], field.type)
            except msgspec.ValidationError as exc:
                problems[field.name] = _mismatch(field, inputs[field.name], exc)
            except TypeError:
                converted[field.name] = inputs[field.name]
        if problems:
            raise InputError(self.name, problems)
        return converted

    def for_inputs(self, inputs: dict[str, Any]) -> Pipeline:
        """The pipeline to run for these validated inputs; a subclass may shape steps by them."""
        return self

    def input_schema(self) -> dict[str, Any]:
        """The inputs as a JSON Schema object, for forms and for the server's OpenAPI."""
        if self._input_schema is None:
            self.check_runnable()
            try:
                struct = msgspec.defstruct(
                    f"{self.name}_inputs",
                    [_schema_field(f) for f in self._inputs],
                    kw_only=True,
                )
                schema = msgspec.json.schema(struct)
            except (TypeError, ValueError):  # a type JSON Schema cannot express
                schema = {"type": "object", "properties": {f.name: {} for f in self._inputs}}
            defs = schema.pop("$defs", {})
            ref = schema.get("$ref", "")
            body = defs.pop(ref.rsplit("/", 1)[-1], schema) if ref else schema
            body.pop("title", None)
            for f in self._inputs:
                if not f.required and _mutable(f.default):
                    body["properties"][f.name]["default"] = msgspec.to_builtins(
                        f.default, enc_hook=repr
                    )
            if defs:
                body["$defs"] = defs
            self._input_schema = body
        return self._input_schema

    def run(self, **inputs: Any) -> Any:
        """Run the pipeline to completion and return its outputs (see `runtime.oneshot`)."""
        # The one upward import, made when called: running needs the runtime, and the
        # runtime knows pipelines only through their interface, never this module.
        import asyncio

        from ..runtime.oneshot import run_pipeline

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run_pipeline(self, inputs)
        raise RuntimeError(
            f"{self.name}.run() blocks until the pipeline ends, and an event loop runs here; "
            f"in async code use `record = await stepstream.Engine().run({self.name}, inputs)`"
        )


def _cycle(fn: Callable[..., Any], step_name: str) -> PipelineDefinitionError:
    return PipelineDefinitionError(
        f"step {_describe(fn)} takes a parameter named after itself, {step_name!r}: a step "
        "cannot wait for its own result (a cycle); rename the parameter, or the step with "
        "@pipeline.step(name=...)"
    )


def _listing(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


def _check_max_parallel(value: int | None, pipeline: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineDefinitionError(
            f"pipeline {pipeline!r} has max_parallel={value!r}; give a whole number of steps "
            "of at least 1, or None for the default"
        )
    return value


def _check_outputs(outputs: list[str] | None, pipeline: str) -> list[str] | None:
    if outputs is None:
        return None
    if (
        isinstance(outputs, str)
        or not isinstance(outputs, list | tuple)
        or not outputs
        or not all(isinstance(name, str) for name in outputs)
    ):
        raise PipelineDefinitionError(
            f"pipeline {pipeline!r} has outputs={outputs!r}; give a non-empty list of step "
            'names, e.g. outputs=["clean", "stats"]'
        )
    return list(outputs)


def _mutable(value: Any) -> bool:
    return isinstance(value, list | dict | set | bytearray)


def _schema_field(field: InputField) -> tuple[Any, ...]:
    """A defstruct field; msgspec refuses mutable defaults, so those get a factory."""
    if field.required:
        return (field.name, field.type)
    if _mutable(field.default):
        return (
            field.name,
            field.type,
            msgspec.field(default_factory=lambda value=field.default: copy.deepcopy(value)),
        )
    return (field.name, field.type, msgspec.field(default=field.default))


def _type_label(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if tp is Any:
        return "any value"
    if typing.get_args(tp) or not hasattr(tp, "__name__"):
        return str(tp).replace("typing.", "")
    return tp.__name__


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _mismatch(field: InputField, value: Any, exc: msgspec.ValidationError) -> str:
    """Our words for a wrong type; msgspec's when they say more (a limit, a nested path)."""
    text = str(exc)
    if text.startswith("Expected `") and ", got `" in text and " - at `" not in text:
        return f"expected {_type_label(field.type)}, got {_type_name(value)}"
    return text.replace("`$", f"`{field.name}").replace(" - at ", " at ")
