"""A cancel a step ignores is never reported as a clean success, and never holds a slot forever."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import CancelledEvent, ProgressEvent

from fw_support import RecordingStore

pytestmark = pytest.mark.anyio

GRACE = 0.3


def _deaf(
    release: threading.Event,
    started: threading.Event,
    *,
    last: bool,
    returning: threading.Event | None = None,
) -> Pipeline:
    """A sync step that never calls Progress: it waits for `release`, then returns."""
    p = Pipeline(f"deaf-{'last' if last else 'first'}")

    @p.step
    def wait(progress: Progress) -> str:  # takes the handle, never uses it
        started.set()
        release.wait(30)
        if returning is not None:
            returning.set()
        return "returned"

    if not last:

        @p.step
        def after(value: str) -> str:
            return value

    return p


@pytest.mark.parametrize("last", [True, False])
async def test_a_step_that_ignores_a_cancel_but_returns_in_time_ends_cancelled_saying_so(
    last: bool,
) -> None:
    release, started = threading.Event(), threading.Event()
    async with Engine(load_entrypoints=False, cancel_grace=30) as engine:
        execution_id = engine.submit(_deaf(release, started, last=last)).execution_id
        await anyio.to_thread.run_sync(started.wait, 20)
        engine.cancel(execution_id)
        await anyio.sleep(0.1)
        release.set()
        record = await engine.wait(execution_id)
    assert record.status == "cancelled"
    assert record.outputs is None
    assert record.steps[0].status == "completed"  # truthfully: it did run to its end
    assert record.error is not None
    assert record.error.type == "CancelIgnored" and record.error.step == "wait"
    reason = engine.events(execution_id)[-1]
    assert isinstance(reason, CancelledEvent)
    assert reason.reason is not None
    assert "step 'wait' did not stop at it" in reason.reason
    assert "discarded" in reason.reason


async def test_a_sync_step_that_outlives_the_grace_period_is_abandoned_and_frees_its_slot() -> None:
    release, started, returning = threading.Event(), threading.Event(), threading.Event()
    store = RecordingStore()
    quick = Pipeline("quick")

    @quick.step
    def only() -> int:
        return 1

    try:
        async with Engine(
            store=store, load_entrypoints=False, max_concurrent=1, cancel_grace=GRACE
        ) as engine:
            deaf = _deaf(release, started, last=False, returning=returning)
            stuck = engine.submit(deaf).execution_id
            queued = engine.submit(quick).execution_id
            await anyio.to_thread.run_sync(started.wait, 20)
            began = time.monotonic()
            engine.cancel(stuck)
            record = await engine.wait(stuck)
            waited = time.monotonic() - began
            assert record.status == "cancelled"
            assert (await engine.wait(queued)).status == "completed"  # the slot was freed
            assert engine.abandoned_threads == 1
    finally:
        release.set()  # the abandoned thread returns now, long after its execution ended
    assert GRACE <= waited < GRACE + 10
    last = store.all_events(stuck)[-1]
    assert isinstance(last, CancelledEvent)
    assert last.reason is not None
    assert f"did not stop within {GRACE:g} s" in last.reason and "abandoned" in last.reason
    await anyio.to_thread.run_sync(returning.wait, 20)
    await anyio.sleep(0.3)  # a window for the thread to (wrongly) report its step's end
    events = store.all_events(stuck)
    assert events[-1] is last, "the abandoned thread reported after the execution ended"
    assert not any(isinstance(e, ProgressEvent) and e.seq > last.seq for e in events)


async def test_shutting_down_waits_at_most_the_grace_period_for_a_deaf_step() -> None:
    release, started = threading.Event(), threading.Event()
    try:
        engine = Engine(load_entrypoints=False, cancel_grace=GRACE)
        async with engine:
            stuck = engine.submit(_deaf(release, started, last=True)).execution_id
            await anyio.to_thread.run_sync(started.wait, 20)
            began = time.monotonic()
        closed_after = time.monotonic() - began
    finally:
        release.set()
    assert closed_after < GRACE + 10
    record = engine.get(stuck)
    assert record.status == "cancelled"


async def test_an_async_step_that_returns_after_a_cancel_ends_cancelled_saying_so() -> None:
    p = Pipeline("busy-async")
    engine = Engine(load_entrypoints=False)
    submitted: dict[str, str] = {}

    @p.step
    async def spin() -> str:
        await anyio.sleep(0)
        engine.cancel(submitted["id"])  # the cancel arrives while the step runs on ...
        return "returned"  # ... and it returns without awaiting again

    async with engine:
        submitted["id"] = engine.submit(p).execution_id
        record = await engine.wait(submitted["id"])
    assert record.status == "cancelled"
    assert record.outputs is None
    last = engine.events(submitted["id"])[-1]
    assert isinstance(last, CancelledEvent)
    assert last.reason is not None and "step 'spin' did not stop at it" in last.reason
