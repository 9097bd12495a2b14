"""The percentage is step-weighted, moves inside a step, never goes back and ends at 100."""

from __future__ import annotations

import pytest

from stepstream import Pipeline, Progress
from stepstream.model.events import (
    CompletedEvent,
    FailedEvent,
    ProgressEvent,
    StartedEvent,
    StatusEvent,
)

from fw_support import RecordingStore, engine_with


def _weighted(fail_in_last: bool = False) -> Pipeline:
    p = Pipeline("weighted")

    @p.step
    def small(progress: Progress, n: int = 40) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    @p.step(name="big", weight=3)
    def big(n: int, progress: Progress) -> int:
        progress.total = n
        for _ in range(n):
            progress.advance()
        return n

    @p.step
    async def tail(n: int, progress: Progress) -> int:
        for _ in progress.iter(range(n)):
            pass
        if fail_in_last:
            raise RuntimeError("tail failed")
        return n

    return p


def _percentages(events: list) -> list[float]:
    return [e.progress.percentage for e in events if getattr(e, "progress", None) is not None]


@pytest.mark.anyio
async def test_percentage_is_monotonic_weighted_and_reaches_100() -> None:
    store = RecordingStore()
    record = await engine_with(store=store, progress_interval=0).run(_weighted(), {})
    events = store.all_events(record.execution_id)
    percentages = _percentages(events)
    assert percentages == sorted(percentages)
    assert percentages[0] == 0.0
    assert percentages[-1] == 100.0
    assert record.progress is not None and record.progress.percentage == 100.0

    boundaries = {
        (e.step.index, e.step.status): e.progress.percentage
        for e in events
        if isinstance(e, ProgressEvent) and e.step is not None
    }
    assert boundaries == {
        (0, "running"): 0.0,
        (0, "completed"): 20.0,
        (1, "running"): 20.0,
        (1, "completed"): 80.0,
        (2, "running"): 80.0,
        (2, "completed"): 100.0,
    }
    inside_big = [
        e.progress
        for e in events
        if isinstance(e, ProgressEvent) and e.step is None and e.progress.current_step == 1
    ]
    assert len(inside_big) > 2
    for snapshot in inside_big:
        expected = 20.0 + 60.0 * snapshot.items_done / snapshot.items_total
        assert snapshot.percentage == pytest.approx(expected, abs=0.01)
    assert any(20.0 < s.percentage < 80.0 for s in inside_big)


@pytest.mark.anyio
async def test_the_seed_fields_are_always_there_and_mean_what_the_seed_says() -> None:
    store = RecordingStore()
    record = await engine_with(store=store).run(_weighted(), {})
    for event in store.all_events(record.execution_id):
        if isinstance(event, StatusEvent):
            assert event.progress is None
            continue
        snapshot = event.progress
        assert snapshot.total_steps == 3
        assert 0 <= snapshot.current_step < 3
        assert snapshot.current_step_name == ["small", "big", "tail"][snapshot.current_step]
        assert 0.0 <= snapshot.percentage <= 100.0
    started = next(e for e in store.appended if isinstance(e, StartedEvent))
    assert (started.progress.current_step, started.progress.percentage) == (0, 0.0)
    completed = store.appended[-1]
    assert isinstance(completed, CompletedEvent)
    assert completed.progress.current_step == 2
    assert completed.progress.current_step_name == "tail"
    assert completed.progress.eta_seconds is None  # a finished execution has no ETA
    assert completed.progress.rate is None


@pytest.mark.anyio
async def test_a_growing_total_does_not_move_the_percentage_back() -> None:
    p = Pipeline("growing")

    @p.step
    def grow(progress: Progress) -> int:
        progress.total = 10
        progress.advance(8)
        progress.total = 100
        progress.advance(2)
        return 10

    @p.step
    def done(n: int) -> int:
        return n

    store = RecordingStore()
    record = await engine_with(store=store, progress_interval=0).run(p, {})
    percentages = _percentages(store.all_events(record.execution_id))
    assert 40.0 in percentages
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100.0


@pytest.mark.anyio
async def test_a_failed_execution_keeps_its_last_progress() -> None:
    store = RecordingStore()
    record = await engine_with(store=store).run(_weighted(fail_in_last=True), {})
    assert record.status == "failed"
    failed = store.appended[-1]
    assert isinstance(failed, FailedEvent)
    assert record.progress is not None
    assert record.progress.current_step == 2
    assert 80.0 <= record.progress.percentage < 100.0
    percentages = _percentages(store.all_events(record.execution_id))
    assert percentages == sorted(percentages)


@pytest.mark.anyio
async def test_a_pending_execution_has_no_progress_yet() -> None:
    async with engine_with() as engine:
        record = engine.submit(_weighted(), {})
        assert record.status == "pending"
        assert record.progress is None
        assert [s.status for s in record.steps] == ["pending"] * 3
        assert [s.weight for s in record.steps] == [1.0, 3.0, 1.0]
        await engine.wait(record.execution_id)
