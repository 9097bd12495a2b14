"""Timeouts: an async step is cancelled, a sync step stopped at its next Progress call, a sync
step that makes none abandoned after the cancel grace; each run then fails naming the step."""

from __future__ import annotations

import contextlib
import threading
import time

import anyio
import pytest

from stepstream import (
    Engine,
    Pipeline,
    PipelineTimeout,
    Progress,
    StepFailedError,
    StepTimeout,
)

pytestmark = pytest.mark.anyio

LIMIT = 0.2


def _busy(progress: Progress, stop: threading.Event | None = None) -> None:
    """Work that checks in with Progress until `stop` (or forever)."""
    while stop is None or not stop.is_set():
        progress.check()
        time.sleep(0.005)


async def _run(pipeline: Pipeline, **options: float) -> object:
    async with Engine(load_entrypoints=False, **options) as engine:
        with anyio.fail_after(20):
            return await engine.run(pipeline, {})


async def test_an_async_step_is_cancelled_at_its_timeout() -> None:
    p = Pipeline("async-timeout")
    reached: list[str] = []

    @p.step(timeout=LIMIT)
    async def slow() -> None:
        await anyio.sleep(30)

    @p.step
    def after(value: None) -> None:
        reached.append("after")

    record = await _run(p)
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("StepTimeout", "slow")
    assert record.error.message == "step 'slow' timed out after 0.2 s"
    assert record.steps[0].status == "failed" and record.steps[1].status == "pending"
    assert reached == []


async def test_a_sync_step_is_stopped_at_its_next_progress_call() -> None:
    p = Pipeline("sync-timeout")

    @p.step(timeout=LIMIT)
    def busy(progress: Progress) -> None:
        with contextlib.suppress(Exception):  # a step's own handler does not swallow it
            _busy(progress)

    record = await _run(p)
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("StepTimeout", "busy")
    assert "timed out after 0.2 s" in record.error.message


async def test_a_timed_out_attempt_is_retried_and_the_next_step_runs_unhindered() -> None:
    p = Pipeline("retry-after-timeout")
    tries: list[int] = []

    @p.step(timeout=LIMIT, retries=1)
    def busy(progress: Progress) -> int:
        tries.append(1)
        if len(tries) == 1:
            _busy(progress)
        return len(tries)

    @p.step
    def after(value: int, progress: Progress) -> int:
        for _ in progress.iter(range(50)):  # the first attempt's timeout must not reach here
            time.sleep(0.001)
        return value

    record = await _run(p)
    assert record.status == "completed", record.error
    assert record.outputs == 2
    assert record.steps[0].attempt == 2


async def test_a_timeout_is_not_retried_unless_retry_on_includes_it() -> None:
    p = Pipeline("no-retry-on-timeout")
    tries: list[int] = []

    @p.step(timeout=LIMIT, retries=3, retry_on=(OSError,))
    async def slow() -> None:
        tries.append(1)
        await anyio.sleep(30)

    record = await _run(p)
    assert record.status == "failed"
    assert (record.error.type, record.error.attempts) == ("StepTimeout", 1)
    assert tries == [1]


async def test_a_sync_step_returning_after_its_timeout_without_noticing_fails() -> None:
    p = Pipeline("late")

    @p.step(timeout=LIMIT)
    def late(progress: Progress) -> str:  # takes the handle, never calls it
        time.sleep(LIMIT * 2)
        return "too late"

    record = await _run(p, cancel_grace=10)
    assert record.status == "failed"
    assert record.error.type == "StepTimeout"
    assert record.outputs is None


async def test_a_sync_step_that_never_calls_progress_is_abandoned_after_timeout_and_grace() -> None:
    p = Pipeline("deaf")
    release = threading.Event()

    @p.step(timeout=LIMIT)
    def deaf() -> str:
        release.wait(30)
        return "finally"

    try:
        async with Engine(load_entrypoints=False, cancel_grace=0.3) as engine:
            with anyio.fail_after(10):
                record = await engine.run(p, {})
            assert engine.abandoned_threads == 1
    finally:
        release.set()
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("StepTimeout", "deaf")
    assert "timed out after 0.2 s" in record.error.message
    assert "its thread was abandoned" in record.error.message


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_pipeline_timeout_fails_the_execution_naming_the_running_step(
    is_async: bool,
) -> None:
    p = Pipeline(f"bounded-{is_async}", timeout=0.3)

    @p.step
    def quick() -> int:
        return 1

    if is_async:

        @p.step
        async def forever(value: int) -> None:
            await anyio.sleep(30)
    else:

        @p.step
        def forever(value: int, progress: Progress) -> None:
            _busy(progress)

    record = await _run(p)
    assert record.status == "failed"
    assert (record.error.type, record.error.step) == ("PipelineTimeout", "forever")
    assert record.error.message == (
        f"pipeline 'bounded-{is_async}' timed out after 0.3 s in step 'forever'"
    )
    assert [s.status for s in record.steps] == ["completed", "failed"]


async def test_a_pipeline_timeout_ends_a_backoff_wait() -> None:
    p = Pipeline("bounded-retries", timeout=0.3)

    @p.step(retries=5, retry_delay=60)
    def fetch() -> None:
        raise OSError("down")

    record = await _run(p)
    assert record.status == "failed"
    assert record.error.type == "PipelineTimeout"


async def test_a_cancel_is_not_reported_as_a_timeout() -> None:
    p = Pipeline("cancelled-not-timed-out", timeout=0.5)
    started = threading.Event()

    @p.step(timeout=0.5)
    def busy(progress: Progress) -> None:
        started.set()
        _busy(progress)

    async with Engine(load_entrypoints=False) as engine:
        execution_id = engine.submit(p).execution_id
        await anyio.to_thread.run_sync(started.wait, 10)
        engine.cancel(execution_id)
        with anyio.fail_after(10):
            record = await engine.wait(execution_id)
        await anyio.sleep(0.6)  # past both limits: nothing changes the ending
        assert engine.get(execution_id).status == "cancelled"
    assert record.status == "cancelled"
    assert record.error is None


@pytest.mark.parametrize(
    ("timeouts", "kind"), [({"step": LIMIT}, StepTimeout), ({"pipeline": LIMIT}, PipelineTimeout)]
)
def test_pipeline_run_raises_the_timeout(timeouts: dict[str, float], kind: type) -> None:
    p = Pipeline("run-timeout", timeout=timeouts.get("pipeline"))

    @p.step(timeout=timeouts.get("step"))
    def busy(progress: Progress) -> None:
        _busy(progress)

    with pytest.raises(StepFailedError, match=r"timed out after 0\.2 s") as raised:
        p.run()
    assert isinstance(raised.value.__cause__, kind)
