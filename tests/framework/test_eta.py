"""ETA from history: useful from the first second once a pipeline has run before."""

from __future__ import annotations

import time

import pytest

from stepstream import Engine, Pipeline
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
