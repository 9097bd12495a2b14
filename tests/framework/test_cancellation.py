"""Cancelling ends an execution `cancelled`: sync steps at a Progress call, async ones via anyio."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import anyio
import pytest

from stepstream import Cancelled, ExecutionFinished, Pipeline, Progress, UnknownExecution

from fw_support import HookRecorder, engine_with


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for a condition another thread makes true; the timeout only guards against hangs."""
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.002)


class SyncLoop:
    """A pipeline whose sync middle step loops forever on a Progress call, noting how it ended."""

    def __init__(self, style: str) -> None:
        self.running = threading.Event()
        self.ended_by: str | None = None
        self.count = 0
        self.pipeline = p = Pipeline(f"sync-{style}")

        @p.step
        def prepare(n: int = 1) -> int:
            return n

        @p.step
        def spin(n: int, progress: Progress) -> int:
            self.running.set()
            try:
                if style == "advance":
                    while True:
                        progress.advance()
                        self.count += 1
                elif style == "iter":
                    for _ in progress.iter(itertools.count()):
                        self.count += 1
                else:
                    while True:
                        progress.check()
                        self.count += 1
            except Cancelled:
                self.ended_by = "Cancelled"
                raise
            return n

        @p.step
        def after(n: int) -> int:
            self.ended_by = "after ran"
            return n


@pytest.mark.anyio
@pytest.mark.parametrize("style", ["advance", "iter", "check"])
async def test_a_looping_sync_step_is_cancelled_at_its_next_progress_call(style: str) -> None:
    loop = SyncLoop(style)
    recorder = HookRecorder()
    async with engine_with(recorder) as engine:
        execution_id = engine.submit(loop.pipeline, {}).execution_id
        await _until(loop.running.is_set)
        await _until(lambda: loop.count > 1000)
        engine.cancel(execution_id)
        record = await engine.wait(execution_id)
    assert loop.ended_by == "Cancelled"
    assert record.status == "cancelled"
    assert record.error is None
    assert record.outputs is None
    assert record.finished_at is not None
    assert [s.status for s in record.steps] == ["completed", "cancelled", "pending"]
    assert recorder.of("step_failed") == []
    finished = recorder.of("execution_finished")
    assert [f["status"] for f in finished] == ["cancelled"]
    assert type(engine.events(execution_id)[-1]).__name__ == "CancelledEvent"


@pytest.mark.anyio
async def test_an_async_step_awaiting_a_long_sleep_is_cancelled_through_anyio() -> None:
    entered = anyio.Event()
    outcome: list[str] = []
    p = Pipeline("sleepy")

    @p.step
    async def wait_long(seconds: float = 3600) -> float:
        entered.set()
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        return seconds

    @p.step
    async def after(value: float) -> float:
        outcome.append("after ran")
        return value

    recorder = HookRecorder()
    async with engine_with(recorder) as engine:
        execution_id = engine.submit(p, {}).execution_id
        with anyio.fail_after(10):
            await entered.wait()
        assert engine.get(execution_id).status == "running"
        engine.cancel(execution_id)
        with anyio.fail_after(10):
            record = await engine.wait(execution_id)
    assert outcome == ["cancelled"]
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled", "pending"]
    assert [f["status"] for f in recorder.of("execution_finished")] == ["cancelled"]


@pytest.mark.anyio
async def test_a_sync_step_without_progress_is_stopped_before_the_next_step() -> None:
    release = threading.Event()
    entered = threading.Event()
    ran: list[str] = []
    p = Pipeline("between")

    @p.step
    def blocking(n: int = 1) -> int:
        entered.set()
        release.wait(10)
        ran.append("blocking")
        return n

    @p.step
    def next_one(n: int) -> int:
        ran.append("next_one")
        return n

    async with engine_with() as engine:
        execution_id = engine.submit(p, {}).execution_id
        await _until(entered.is_set)
        engine.cancel(execution_id)
        release.set()
        record = await engine.wait(execution_id)
    assert ran == ["blocking"]
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["completed", "pending"]


@pytest.mark.anyio
async def test_cancelling_a_queued_execution_ends_it_at_once_without_running_it() -> None:
    gate = anyio.Event()
    ran: list[int] = []
    p = Pipeline("queued")

    @p.step
    async def work(k: int) -> int:
        ran.append(k)
        await gate.wait()
        return k

    recorder = HookRecorder()
    async with engine_with(recorder, max_concurrent=1) as engine:
        first = engine.submit(p, {"k": 1}).execution_id
        second = engine.submit(p, {"k": 2}).execution_id
        await _until(lambda: ran == [1])
        assert engine.get(second).status == "pending"
        record = engine.cancel(second)
        assert record.status == "cancelled"
        assert record.started_at is None
        assert (await engine.wait(second)).status == "cancelled"
        gate.set()
        assert (await engine.wait(first)).status == "completed"
    assert ran == [1]
    assert [c["execution_id"] for c in recorder.of("execution_started")] == [first]
    finished = {c["execution_id"]: c["status"] for c in recorder.of("execution_finished")}
    assert finished == {first: "completed", second: "cancelled"}


@pytest.mark.anyio
@pytest.mark.parametrize("turns", range(6))
async def test_cancelling_just_after_submit_never_runs_the_step(
    turns: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the dispatcher was doing (queued, being started), a cancel wins."""
    ran: list[int] = []
    p = Pipeline("racy")

    @p.step
    async def work(k: int) -> int:
        ran.append(k)
        return k

    recorder = HookRecorder()
    async with engine_with(recorder) as engine:
        execution_id = engine.submit(p, {"k": turns}).execution_id
        for _ in range(turns):
            await anyio.sleep(0)
        record = engine.get(execution_id)
        if record.finished:
            with pytest.raises(ExecutionFinished):
                engine.cancel(execution_id)
        else:
            engine.cancel(execution_id)
        record = await engine.wait(execution_id)
        await anyio.sleep(0.01)
    if record.status == "cancelled":
        assert ran == []
        assert recorder.names(execution_id) == ["execution_finished"]
    else:
        assert record.status == "completed"
        assert ran == [turns]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.anyio
async def test_cancelling_a_finished_or_unknown_execution_is_an_error() -> None:
    p = Pipeline("quick")

    @p.step
    def only() -> int:
        return 1

    async with engine_with() as engine:
        execution_id = engine.submit(p, {}).execution_id
        await engine.wait(execution_id)
        with pytest.raises(ExecutionFinished) as info:
            engine.cancel(execution_id)
        assert info.value.status == "completed"
        assert "already finished: completed" in str(info.value)
        with pytest.raises(UnknownExecution, match="exec_nope"):
            engine.cancel("exec_nope")
        assert engine.get(execution_id).status == "completed"


@pytest.mark.anyio
async def test_leaving_the_engine_cancels_what_is_running() -> None:
    loop = SyncLoop("advance")
    async with engine_with() as engine:
        execution_id = engine.submit(loop.pipeline, {}).execution_id
        await _until(loop.running.is_set)
    assert engine.get(execution_id).status == "cancelled"
    assert loop.ended_by == "Cancelled"


@pytest.mark.anyio
async def test_a_step_catching_exception_does_not_swallow_cancellation() -> None:
    p = Pipeline("greedy")
    entered = threading.Event()

    @p.step
    def greedy(progress: Progress) -> str:
        entered.set()
        while True:
            try:
                progress.advance()
            except Exception:
                return "swallowed"

    async with engine_with() as engine:
        execution_id = engine.submit(p).execution_id
        await anyio.to_thread.run_sync(entered.wait)
        engine.cancel(execution_id)
        record = await engine.wait(execution_id)
    assert record.status == "cancelled"
    assert record.outputs is None
