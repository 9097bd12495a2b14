"""A finished execution's record and event log stay small: under 10 KiB for ten steps."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from stepstream import Engine, Pipeline, Progress

from fw_support import engine_with

BUDGET = 10 * 1024
RUNS = 20


def _ten_steps() -> Pipeline:
    p = Pipeline("ten")

    def first(progress: Progress, n: int = 100) -> int:
        progress.message = "reading"
        for _ in progress.iter(range(n)):
            pass
        return n

    def later(n: int, progress: Progress) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    p.step(name="step0")(first)
    for i in range(1, 10):
        p.step(name=f"step{i}")(later)
    return p


async def _retained_per_execution(engine: Engine, pipeline: Pipeline) -> float:
    for _ in range(3):
        await engine.run(pipeline, {})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        records = [await engine.run(pipeline, {}) for _ in range(RUNS)]
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert all(r.status == "completed" for r in records)
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / RUNS


@pytest.mark.anyio
async def test_a_finished_ten_step_execution_keeps_under_10_kib() -> None:
    engine = engine_with()
    per_execution = await _retained_per_execution(engine, _ten_steps())
    record = await engine.run(_ten_steps(), {})
    kinds = [type(e).__name__ for e in engine.events(record.execution_id)]
    assert kinds == ["StatusEvent", "StartedEvent", "ProgressEvent", "CompletedEvent"]
    assert [s.status for s in record.steps] == ["completed"] * 10
    print(f"retained per finished 10-step execution: {per_execution:.0f} B")
    assert 0 < per_execution < BUDGET
