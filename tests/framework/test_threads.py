"""Sync steps never block the event loop, and consecutive ones share one worker thread."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from stepstream import Pipeline, Progress

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
