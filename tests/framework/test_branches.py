"""Pipelines as graphs: parameters named after steps and inputs, steps that run at once,
several outputs, declaration errors that say what to fix, progress that keeps its meaning."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from stepstream import Engine, Pipeline, PipelineDefinitionError, Progress
from stepstream.model.events import ProgressEvent

from fw_support import HookRecorder, RecordingStore, engine_with

pytestmark = pytest.mark.anyio
WAIT = 10.0  # seconds a test waits for steps that must meet before it gives up


async def _run(pipeline: Pipeline, inputs: dict[str, Any] | None = None, **options: Any) -> Any:
    async with Engine(load_entrypoints=False, **options) as engine:
        with anyio.fail_after(30):
            return await engine.run(pipeline, inputs or {})


def _fan_out(*, max_parallel: int | None = None) -> tuple[Pipeline, list[int]]:
    """load → (left, right) → join; left and right are sync and must meet at a barrier."""
    p = Pipeline("fan", max_parallel=max_parallel)
    meeting = threading.Barrier(2, timeout=WAIT)
    at_once: list[int] = []
    running = [0]
    lock = threading.Lock()

    def side(rows: list[int], factor: int) -> int:
        with lock:
            running[0] += 1
            at_once.append(running[0])
        try:
            if max_parallel is None:
                meeting.wait()  # passes only if the other side runs at the same time
            time.sleep(0.05)
            return sum(rows) * factor
        finally:
            with lock:
                running[0] -= 1

    @p.step
    def load(n: int) -> list[int]:
        return list(range(n))

    @p.step
    def left(load: list[int]) -> int:
        return side(load, 1)

    @p.step
    def right(load: list[int]) -> int:
        return side(load, 10)

    @p.step
    def join(left: int, right: int, n: int) -> dict[str, int]:
        return {"left": left, "right": right, "n": n}

    return p, at_once


# -- declaring -------------------------------------------------------------------


def test_parameters_named_after_earlier_steps_and_inputs_take_their_values() -> None:
    p, _ = _fan_out()
    assert p.is_graph
    assert [s.upstream for s in p.steps] == [(), (0,), (0,), (1, 2)]
    assert p.run(n=4) == {"left": 6, "right": 60, "n": 4}


def test_a_lone_parameter_still_takes_the_previous_result_even_if_it_names_an_input() -> None:
    p = Pipeline("chain")

    @p.step
    def first(n: int) -> int:
        return n + 1

    @p.step
    def second(n: int) -> int:  # `n` is also the input: a lone parameter chains, as always
        return n * 10

    @p.step
    def third(second: int) -> int:  # names the previous step: still a plain chain
        return second + 1

    assert not p.is_graph
    assert p.run(n=1) == 21


def test_outputs_names_the_steps_whose_results_are_returned() -> None:
    p = Pipeline("two-outputs", outputs=["double", "square"])

    @p.step
    def number(n: int) -> int:
        return n

    @p.step
    def double(number: int) -> int:
        return number * 2

    @p.step
    def square(number: int) -> int:
        return number * number

    assert p.run(n=3) == {"double": 6, "square": 9}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def later(later, n):\n    return n\n", "named after itself, 'later'"),
        ("def later(later):\n    return 1\n", "a cycle"),
        ("def later(first, missing):\n    return 1\n", "'missing', which matches no earlier"),
        ("def later(first, afterwards):\n    return 1\n", "declare the step it needs above"),
    ],
)
def test_declaration_errors_name_the_function_and_the_fix(source: str, problem: str) -> None:
    p = Pipeline("bad")

    @p.step
    def first(n: int) -> int:
        return n

    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(PipelineDefinitionError) as info:
        p.step(namespace["later"])
    assert "later" in str(info.value) and problem in str(info.value)
    assert [s.name for s in p.steps] == ["first"]


def test_a_parameter_naming_both_a_step_and_an_input_is_ambiguous() -> None:
    p = Pipeline("ambiguous")

    @p.step
    def first(rows: int) -> int:
        return rows

    @p.step(name="rows")
    def count(first: int) -> int:
        return first

    with pytest.raises(PipelineDefinitionError, match="names both a step and an input"):

        @p.step
        def report(rows: int, first: int) -> int:
            return rows


def test_a_parameter_with_a_default_may_name_nothing() -> None:
    p = Pipeline("defaults")

    @p.step
    def first(n: int) -> int:
        return n

    @p.step
    def scaled(first: int, n: int, factor: int = 3) -> int:
        return first * factor + n

    assert p.run(n=2) == 8


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_max_parallel_must_be_a_positive_whole_number(value: Any) -> None:
    with pytest.raises(PipelineDefinitionError, match="max_parallel"):
        Pipeline("p", max_parallel=value)


@pytest.mark.parametrize("value", ["a", [], [1], {"a": 1}])
def test_outputs_must_be_a_list_of_step_names(value: Any) -> None:
    with pytest.raises(PipelineDefinitionError, match="outputs"):
        Pipeline("p", outputs=value)


def test_outputs_naming_no_step_is_refused_before_running() -> None:
    p = Pipeline("p", outputs=["nowhere"])

    @p.step
    def first(n: int) -> int:
        return n

    with pytest.raises(PipelineDefinitionError, match=r"outputs=\['nowhere'\].*first"):
        p.run(n=1)


def test_declaring_many_steps_takes_time_in_proportion() -> None:
    p = Pipeline("long")
    for i in range(20_000):
        p.step(name=f"s{i}")(lambda value=0: value)
    assert len(p.steps) == 20_000 and not p.is_graph


# -- running ---------------------------------------------------------------------


async def test_independent_sync_steps_run_at_once() -> None:
    p, at_once = _fan_out()
    record = await _run(p, {"n": 3})
    assert record.status == "completed", record.error
    assert max(at_once) == 2
    assert record.outputs == {"left": 3, "right": 30, "n": 3}


async def test_two_slow_steps_side_by_side_take_the_time_of_one() -> None:
    p = Pipeline("slow-pair")

    @p.step
    def start(n: int) -> int:
        return n

    @p.step
    def sync_side(start: int) -> int:
        time.sleep(0.3)
        return start

    @p.step
    async def async_side(start: int) -> int:
        await anyio.sleep(0.3)
        return start

    @p.step
    def both(sync_side: int, async_side: int) -> int:
        return sync_side + async_side

    began = time.perf_counter()
    record = await _run(p, {"n": 1})
    assert record.outputs == 2
    assert time.perf_counter() - began < 0.55


async def test_max_parallel_bounds_the_sync_steps_running_at_once() -> None:
    p, at_once = _fan_out(max_parallel=1)
    record = await _run(p, {"n": 3})
    assert record.status == "completed"
    assert max(at_once) == 1


async def test_progress_counts_finished_steps_names_running_ones_and_never_goes_back() -> None:
    p = Pipeline("watched")
    both_running = threading.Barrier(2, timeout=WAIT)

    @p.step
    def begin(n: int) -> int:
        return n

    def counting(n: int, progress: Progress) -> int:
        both_running.wait()
        progress.total = n
        for _ in range(n):
            progress.advance()
            time.sleep(0.002)
        return n

    @p.step(weight=2)
    def fast(begin: int, progress: Progress) -> int:
        return counting(begin, progress)

    @p.step(weight=3)
    def slow(begin: int, progress: Progress) -> int:
        return counting(begin * 2, progress)

    @p.step
    def end(fast: int, slow: int) -> int:
        return fast + slow

    store = RecordingStore()
    record = await _run(p, {"n": 40}, store=store, progress_interval=0)
    assert record.status == "completed"
    snapshots = [
        e.progress for e in store.all_events(record.execution_id) if isinstance(e, ProgressEvent)
    ]
    percentages = [s.percentage for s in snapshots]
    assert percentages == sorted(percentages) and percentages[-1] == 100.0
    assert any(s.current_step_name == "fast, slow" for s in snapshots)
    assert all(s.total_steps == 4 for s in snapshots)
    assert [s.current_step for s in snapshots] == sorted(s.current_step for s in snapshots)
    assert {s.current_step for s in snapshots} == {0, 1, 2, 3}
    assert [s.status for s in record.steps] == ["completed"] * 4
    assert record.progress.current_step == 3 and record.progress.percentage == 100.0


async def test_a_failing_branch_stops_the_others_and_fails_with_its_error() -> None:
    p = Pipeline("one-fails")
    stopped: list[str] = []

    @p.step
    def begin(n: int) -> int:
        return n

    @p.step
    def boom(begin: int) -> int:
        time.sleep(0.05)
        raise ValueError("no good")

    @p.step
    def patient(begin: int, progress: Progress) -> int:
        try:
            while True:
                progress.check()
                time.sleep(0.005)
        finally:
            stopped.append("patient")

    @p.step
    async def waiting(begin: int) -> int:
        try:
            await anyio.sleep(60)
        finally:
            stopped.append("waiting")
        return 0

    @p.step
    def never(boom: int, patient: int, waiting: int) -> int:
        return 0

    record = await _run(p, {"n": 1})
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("ValueError", "boom")
    assert sorted(stopped) == ["patient", "waiting"]
    assert [s.status for s in record.steps] == [
        "completed",
        "failed",
        "cancelled",
        "cancelled",
        "pending",
    ]


async def test_a_cancel_stops_every_running_branch() -> None:
    p = Pipeline("cancel-all")
    both_running = threading.Barrier(3, timeout=WAIT)

    @p.step
    def begin(n: int) -> int:
        return n

    @p.step
    def one(begin: int, progress: Progress) -> int:
        both_running.wait()
        while True:
            progress.check()
            time.sleep(0.005)

    @p.step
    def two(begin: int, progress: Progress) -> int:
        both_running.wait()
        while True:
            progress.check()
            time.sleep(0.005)

    async with Engine(load_entrypoints=False) as engine:
        job = engine.submit(p, {"n": 1})
        await anyio.to_thread.run_sync(both_running.wait)
        engine.cancel(job.execution_id)
        with anyio.fail_after(WAIT):
            record = await engine.wait(job.execution_id)
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["completed", "cancelled", "cancelled"]


async def test_a_branch_timing_out_fails_naming_it_not_its_sibling() -> None:
    p = Pipeline("timeouts")

    @p.step
    def begin(n: int) -> int:
        return n

    @p.step(timeout=0.2)
    def slow(begin: int, progress: Progress) -> int:
        while True:
            progress.check()
            time.sleep(0.005)

    @p.step
    def steady(begin: int, progress: Progress) -> int:
        for _ in progress.iter(range(20)):
            time.sleep(0.005)
        return begin

    record = await _run(p, {"n": 1})
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("StepTimeout", "slow")
    assert record.steps[2].status == "completed"


async def test_a_retried_branch_keeps_the_percentage_from_going_back() -> None:
    p = Pipeline("retry-branch")
    tries: list[int] = []

    @p.step
    def begin(n: int) -> int:
        return n

    @p.step(retries=2)
    def flaky(begin: int, progress: Progress) -> int:
        tries.append(1)
        for _ in progress.iter(range(10)):
            time.sleep(0.001)
        if len(tries) < 3:
            raise OSError("try again")
        return begin

    @p.step
    def other(begin: int, progress: Progress) -> int:
        for _ in progress.iter(range(10)):
            time.sleep(0.003)
        return begin

    store = RecordingStore()
    record = await _run(p, {"n": 1}, store=store, progress_interval=0)
    assert record.status == "completed" and len(tries) == 3
    assert record.steps[1].attempt == 3
    percentages = [
        e.progress.percentage
        for e in store.all_events(record.execution_id)
        if isinstance(e, ProgressEvent)
    ]
    assert percentages == sorted(percentages)


async def test_what_parallel_steps_print_is_captured_under_each_step() -> None:
    p = Pipeline("printing")
    meeting = threading.Barrier(2, timeout=WAIT)

    @p.step
    def begin(n: int) -> int:
        return n

    def talk(tag: str, n: int) -> int:
        meeting.wait()
        for i in range(n):
            print(f"{tag} {i}")
            time.sleep(0.001)
        return n

    @p.step
    def left(begin: int) -> int:
        return talk("left", begin)

    @p.step
    def right(begin: int) -> int:
        return talk("right", begin)

    async with Engine(load_entrypoints=False) as engine:
        record = await engine.run(p, {"n": 20})
        lines = engine.logs(record.execution_id)
    assert record.status == "completed"
    for tag in ("left", "right"):
        assert [line.message for line in lines if line.step == tag] == [
            f"{tag} {i}" for i in range(20)
        ]


async def test_a_step_taking_only_inputs_starts_with_the_first() -> None:
    p = Pipeline("inputs-only")
    meeting = threading.Barrier(2, timeout=WAIT)

    @p.step
    def first(n: int, m: int) -> int:
        meeting.wait()  # passes only if `other` runs meanwhile
        return n

    @p.step
    def other(n: int, m: int) -> int:
        meeting.wait()
        return n * m

    @p.step
    def both(first: int, other: int) -> int:
        return first + other

    assert [s.upstream for s in p.steps] == [(), (), (0, 1)]
    record = await _run(p, {"n": 2, "m": 5})
    assert record.outputs == 12


async def test_every_step_fires_its_hooks_once_in_a_graph() -> None:
    hooks = HookRecorder()
    p, _ = _fan_out()
    async with engine_with(hooks) as engine:
        record = await engine.run(p, {"n": 2})
    assert record.status == "completed"
    for hook in ("step_started", "step_done"):
        assert sorted(call["index"] for call in hooks.of(hook)) == [0, 1, 2, 3]
    names = hooks.names(record.execution_id)
    assert names[0] == "execution_started" and names[-1] == "execution_finished"
