"""The memory store: a finished ten-step run keeps under 10 KiB; status filters use an index."""

from __future__ import annotations

import gc
import random
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import ExecutionRecord
from stepstream.model.fold import apply_event, status_of
from stepstream.stores.memory import MemoryStore

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


def _scan(records: list[ExecutionRecord], **wanted: Any) -> list[str]:
    """What `list` returned when it scanned every record: newest first, filtered, paged."""
    status, pipeline, before = wanted.get("status"), wanted.get("pipeline"), wanted.get("before")
    ids = [
        r.execution_id
        for r in sorted(records, key=lambda r: r.execution_id, reverse=True)
        if (status is None or r.status == status)
        and (pipeline is None or r.pipeline == pipeline)
        and (before is None or r.execution_id < before)
    ]
    return ids[: wanted.get("limit", 50)]


def test_status_filters_read_an_index_that_follows_every_status_change_and_prune() -> None:
    store = MemoryStore()
    rng = random.Random(3)
    records = []
    for i in range(300):
        record = ExecutionRecord(
            execution_id=f"exec_{i:05d}",
            pipeline=rng.choice(["a", "b"]),
            status="pending",
            progress=None,
            inputs={},
            created_at=datetime.now(UTC),
            steps=[],
        )
        changes = rng.choice([[], ["running"], ["running", "completed"], ["failed"]])
        for seq, status in enumerate(["pending", *changes], start=1):
            record.status = status
            event = status_of(record, seq)
            apply_event(record, event)
            store.append(record, event)
        records.append(record)
    store.prune(keep_count=50)
    kept = [r for r in records if store.get(r.execution_id) is not None]
    assert len(kept) < len(records)
    middle = kept[len(kept) // 2].execution_id
    for status in (None, "pending", "running", "completed", "failed", "cancelled"):
        for wanted in ({}, {"pipeline": "a"}, {"before": middle}, {"limit": 7, "pipeline": "b"}):
            query: dict[str, Any] = {"status": status, **wanted}
            assert [r.execution_id for r in store.list(**query)] == _scan(kept, **query)
    assert [r.execution_id for r in store.unfinished()] == sorted(
        r.execution_id for r in kept if not r.finished
    )
