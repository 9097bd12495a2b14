"""ETA from history: useful from the first second once a pipeline has run before."""

from __future__ import annotations

import time

import pytest

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import StartedEvent

STEP_SECONDS = (0.3, 0.6, 0.3)


def _sleepy() -> Pipeline:
    pipeline = Pipeline("sleepy")

    @pipeline.step
    def first(start: int = 0) -> int:
        time.sleep(STEP_SECONDS[0])
        return start

    @pipeline.step
    def second(value: int) -> int:
        time.sleep(STEP_SECONDS[1])
        return value

    @pipeline.step
    def third(value: int) -> int:
        time.sleep(STEP_SECONDS[2])
        return value

    return pipeline


@pytest.mark.anyio
async def test_first_run_has_no_eta_until_it_has_a_rate() -> None:
    engine = Engine(load_entrypoints=False)
    record = await engine.run(_sleepy())
    started = engine.events(record.execution_id)[1]
    assert started.progress.eta_seconds is None


@pytest.mark.anyio
async def test_eta_from_history_is_present_at_start_and_close_to_the_truth() -> None:
    pipeline = _sleepy()
    engine = Engine(load_entrypoints=False, progress_interval=0.01)
    await engine.run(pipeline)

    async with engine:
        record = engine.submit(pipeline)
        started_wall = time.perf_counter()
        seen: list[tuple[float, float]] = []
        async with engine.subscribe(record.execution_id, after=0) as events:
            async for event in events:
                progress = getattr(event, "progress", None)
                if progress is not None and progress.eta_seconds is not None:
                    seen.append((time.perf_counter() - started_wall, progress.eta_seconds))
        finished_wall = time.perf_counter() - started_wall

    total = sum(STEP_SECONDS)
    assert seen, "no ETA was reported"
    first_at, _ = seen[0]
    assert first_at < 0.2, "the ETA should appear before the first step ends"
    for at, eta in seen:
        remaining = finished_wall - at
        assert abs(eta - remaining) < 0.25 * total, (at, eta, remaining)


@pytest.mark.anyio
async def test_history_survives_a_new_engine_on_the_same_store(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    pipeline = _sleepy()
    first = Engine(store=url, load_entrypoints=False)
    await first.run(pipeline)
    first.store.close()

    second = Engine(store=url, load_entrypoints=False)
    record = await second.run(pipeline)
    events = second.events(record.execution_id)
    second.store.close()
    started = events[1]
    assert isinstance(started, StartedEvent)
    assert started.progress.eta_seconds == pytest.approx(sum(STEP_SECONDS), rel=0.3)


def _counting(*, then_quick: bool = True) -> Pipeline:
    """One step over `n` items of `pause` seconds each, then (maybe) a quick second step."""
    pipeline = Pipeline("counting")

    @pipeline.step
    def count(progress: Progress, n: int = 10, pause: float = 0.01) -> int:
        for _ in progress.iter(range(n)):
            time.sleep(pause)
        return n

    if then_quick:

        @pipeline.step
        def done(n: int) -> int:
            return n

    return pipeline


async def _etas(engine: Engine, pipeline: Pipeline, inputs: dict) -> tuple[list, float]:
    """(seconds since start, ETA, percentage) of every progress event, and the run's length."""
    seen: list[tuple[float, float | None, float]] = []
    async with engine:
        record = engine.submit(pipeline, inputs)
        began = time.perf_counter()
        async with engine.subscribe(record.execution_id, after=0) as events:
            async for event in events:
                progress = getattr(event, "progress", None)
                if progress is not None:
                    seen.append(
                        (time.perf_counter() - began, progress.eta_seconds, progress.percentage)
                    )
        return seen, time.perf_counter() - began


@pytest.mark.anyio
async def test_history_of_runs_with_other_inputs_is_scaled_by_the_pace() -> None:
    """Ten quick items last time, fifty now: the ETA follows this run, not the last one."""
    pipeline = _counting()
    engine = Engine(load_entrypoints=False, progress_interval=0.02)
    await engine.run(pipeline, {"n": 10, "pause": 0.01})
    seen, total = await _etas(engine, pipeline, {"n": 50, "pause": 0.02})
    middle = [(at, eta) for at, eta, pct in seen if 30 <= pct <= 45 and eta is not None]
    assert middle, seen
    for at, eta in middle:
        assert abs(eta - (total - at)) < 0.25 * total, (at, eta, total, seen)


@pytest.mark.anyio
async def test_without_history_there_is_no_eta_until_a_step_has_a_rate() -> None:
    engine = Engine(load_entrypoints=False, progress_interval=0.02)
    seen, total = await _etas(engine, _counting(then_quick=False), {"n": 40, "pause": 0.02})
    assert seen[0][1] is None  # started: nothing to base an ETA on
    late = [(at, eta) for at, eta, pct in seen if 20 <= pct <= 40]
    assert late and all(eta is not None for _, eta in late), seen
    for at, eta in late:
        assert abs(eta - (total - at)) < 0.25 * total, (at, eta, total)
