"""Sync steps never block the event loop, consecutive ones share one worker thread, and
threads are reused, uncapped, retired when idle, and see the caller's context."""

from __future__ import annotations

import contextvars
import threading
import time

import anyio
import anyio.from_thread
import pytest

from stepstream import Engine, Pipeline, Progress
from stepstream.runtime import threads

from fw_support import HookRecorder, engine_with

TICKS_WANTED = 5


def _ticking_pipeline(ticks: list[float], mode: str) -> Pipeline:
    """A sync step that waits, without yielding, until the event loop has ticked enough."""
    p = Pipeline(f"hog-{mode}")

    @p.step
    def hog(deadline: float = 10.0) -> int:
        start = len(ticks)
        give_up = time.monotonic() + deadline
        while len(ticks) - start < TICKS_WANTED and time.monotonic() < give_up:
            if mode == "sleep":
                time.sleep(0.005)
        return len(ticks) - start

    return p


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["busy", "sleep"])
async def test_a_sync_step_does_not_block_the_event_loop(mode: str) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        record = await engine_with().run(_ticking_pipeline(ticks, mode), {})
        tg.cancel_scope.cancel()
    assert record.status == "completed"
    assert record.outputs >= TICKS_WANTED


@pytest.mark.anyio
async def test_consecutive_sync_steps_run_in_one_worker_thread_and_async_ones_on_the_loop() -> None:
    seen: dict[str, int] = {}
    p = Pipeline("threads")

    @p.step
    def a(n: int = 1) -> int:
        seen["a"] = threading.get_ident()
        return n

    @p.step
    def b(n: int, progress: Progress) -> int:
        progress.advance()
        seen["b"] = threading.get_ident()
        return n

    @p.step
    def c(n: int) -> int:
        seen["c"] = threading.get_ident()
        return n

    @p.step
    async def d(n: int) -> int:
        seen["d"] = threading.get_ident()
        return n

    recorder = HookRecorder()
    record = await engine_with(recorder).run(p, {})
    assert record.status == "completed"
    loop_thread = threading.get_ident()
    assert seen["a"] == seen["b"] == seen["c"] != loop_thread
    assert seen["d"] == loop_thread
    hook_threads = {
        kwargs["index"]: thread for name, kwargs, thread in recorder.calls if name == "step_started"
    }
    assert hook_threads == {0: seen["a"], 1: seen["a"], 2: seen["a"], 3: loop_thread}


@pytest.mark.anyio
async def test_executions_one_after_another_reuse_one_thread_and_an_idle_one_retires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.2)
    p = Pipeline("reuse")
    seen: list[threading.Thread] = []

    @p.step
    def where(n: int = 0) -> int:
        if threading.current_thread() not in seen:
            seen.append(threading.current_thread())
        return n

    async with Engine(load_entrypoints=False) as engine:
        for _ in range(20):
            assert (await engine.run(p, {})).status == "completed"
        assert len(seen) == 1
        with anyio.fail_after(5):
            while seen[0].is_alive():
                await anyio.sleep(0.05)
        assert (await engine.run(p, {})).status == "completed"  # on a new thread
        assert len(seen) == 2


@pytest.mark.anyio
async def test_more_sync_steps_than_anyios_default_limit_run_at_once() -> None:
    """Each execution's sync steps get a thread of their own: none waits for another's."""
    count = 60  # anyio's default limiter would hold all but 40 back, and the barrier never fill
    meeting = threading.Barrier(count, timeout=10)
    p = Pipeline("crowd")

    @p.step
    def meet(n: int = 0) -> int:
        meeting.wait()
        return n

    async with Engine(load_entrypoints=False) as engine:
        with anyio.fail_after(20):
            jobs = [engine.create(p, {}) for _ in range(count)]
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(engine.execute, job)
        assert {engine.get(job.execution_id).status for job in jobs} == {"completed"}


@pytest.mark.anyio
async def test_a_sync_step_sees_the_callers_context_and_can_call_back_into_the_loop() -> None:
    request = contextvars.ContextVar("request", default="none")
    p = Pipeline("context")
    loop_thread = threading.get_ident()

    async def on_loop() -> int:
        return threading.get_ident()

    @p.step
    def look(n: int = 0) -> dict[str, object]:
        anyio.from_thread.check_cancelled()  # not cancelled: returns
        return {"request": request.get(), "loop": anyio.from_thread.run(on_loop)}

    request.set("r-1")
    record = await engine_with().run(p, {})
    assert record.status == "completed"
    assert record.outputs == {"request": "r-1", "loop": loop_thread}


@pytest.mark.anyio
async def test_past_the_thread_cap_sync_steps_wait_for_a_thread_and_all_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "MAX_THREADS", 2)
    lock = threading.Lock()
    running, most, order = [0], [0], []
    p = Pipeline("capped")

    @p.step
    def busy(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            order.append(n)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return n

    async with Engine(load_entrypoints=False) as engine:
        with anyio.fail_after(20):
            jobs = [engine.create(p, {"n": n}) for n in range(6)]
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(engine.execute, job)
                    await anyio.sleep(0.005)  # so they ask for a thread in this order
        assert [engine.get(job.execution_id).outputs for job in jobs] == list(range(6))
    assert most[0] == 2
    assert set(order[:2]) == {0, 1}  # the first to ask ran first; the rest waited for them
