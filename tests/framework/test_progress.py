"""Progress inside a step: cheap counters, throttled hooks, always a final count."""

from __future__ import annotations

import time

import anyio
import pytest

from stepstream import Engine, Pipeline, Progress

from fw_support import HookRecorder, engine_with

MILLION = 1_000_000


def _million(total: bool) -> tuple[Pipeline, dict[str, float]]:
    timing: dict[str, float] = {}
    p = Pipeline("million")

    @p.step
    def count(progress: Progress, n: int = MILLION) -> int:
        if total:
            progress.total = n
        began = time.perf_counter()
        for _ in range(n):
            progress.advance()
        timing["elapsed"] = time.perf_counter() - began
        return n

    return p, timing


@pytest.mark.anyio
@pytest.mark.parametrize("total", [True, False])
async def test_a_million_advances_emit_a_bounded_number_of_progress_hooks(total: bool) -> None:
    p, timing = _million(total)
    recorder = HookRecorder()
    engine = engine_with(recorder)
    record = await engine.run(p, {})
    calls = recorder.of("step_progress")
    interval = engine.progress_interval
    assert interval == 0.05
    # At most one per interval (plus the first one) while looping, plus one at the step's end.
    assert 2 <= len(calls) <= timing["elapsed"] / interval + 3
    assert len(calls) < 1000
    last = calls[-1]
    assert last["done"] == MILLION
    assert last["total"] == (MILLION if total else None)
    assert [c["done"] for c in calls] == sorted(c["done"] for c in calls)
    assert record.steps[0].items_done == MILLION
    assert record.progress is not None
    assert record.progress.items_done == MILLION


def _paced(items: int) -> Pipeline:
    p = Pipeline("paced")

    @p.step
    def slow(progress: Progress, n: int = items) -> int:
        for _ in range(n):
            time.sleep(0.003)
            progress.advance()
        return n

    return p


@pytest.mark.anyio
async def test_progress_interval_is_configurable_on_the_engine() -> None:
    every, rarely = HookRecorder(), HookRecorder()
    await engine_with(every, progress_interval=0).run(_paced(20), {})
    await engine_with(rarely, progress_interval=3600).run(_paced(20), {})
    assert [c["done"] for c in every.of("step_progress")][:20] == list(range(1, 21))
    assert [c["done"] for c in rarely.of("step_progress")] == [1, 20]


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="progress_interval"):
        Engine(load_entrypoints=False, progress_interval=-1)


@pytest.mark.anyio
async def test_iter_takes_the_total_from_len_and_a_generator_reports_counts_only() -> None:
    p = Pipeline("items")

    @p.step
    def sized(progress: Progress, n: int = 7) -> int:
        progress.message = "reading"
        return sum(1 for _ in progress.iter(list(range(n))))

    @p.step
    def unsized(n: int, progress: Progress) -> int:
        return sum(1 for _ in progress.iter(i for i in range(n * 2)))

    @p.step
    def explicit(n: int, progress: Progress) -> int:
        progress.total = n * 3
        for _ in range(n * 3):
            progress.advance()
        progress.message = "done counting"
        return n

    recorder = HookRecorder()
    record = await engine_with(recorder).run(p, {})
    finals = {c["index"]: c for c in recorder.of("step_progress")}
    assert (finals[0]["done"], finals[0]["total"], finals[0]["message"]) == (7, 7, "reading")
    assert (finals[1]["done"], finals[1]["total"]) == (14, None)
    assert (finals[2]["done"], finals[2]["total"]) == (42, 42)
    assert finals[2]["message"] == "done counting"
    steps = record.steps
    assert [(s.items_done, s.items_total) for s in steps] == [(7, 7), (14, None), (42, 42)]


@pytest.mark.anyio
async def test_the_running_steps_counts_and_message_show_in_the_snapshot() -> None:
    halfway = anyio.Event()
    resume = anyio.Event()
    p = Pipeline("snap")

    @p.step
    async def work(progress: Progress, n: int = 10) -> int:
        progress.total = n
        progress.message = "halfway there"
        progress.advance(n // 2)
        halfway.set()
        await resume.wait()
        progress.advance(n - n // 2)
        return n

    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(p, {}).execution_id
        with anyio.fail_after(10):
            await halfway.wait()
        snapshot = engine.get(execution_id).progress
        resume.set()
        await engine.wait(execution_id)
    assert snapshot is not None
    assert (snapshot.items_done, snapshot.items_total) == (5, 10)
    assert snapshot.message == "halfway there"
    assert snapshot.percentage == 50.0
    assert snapshot.current_step == 0
    assert snapshot.current_step_name == "work"
    assert snapshot.elapsed_seconds is not None and snapshot.elapsed_seconds >= 0
    assert snapshot.eta_seconds is not None and snapshot.eta_seconds >= 0
    assert snapshot.rate is not None and snapshot.rate > 0


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True])
def test_a_total_must_be_a_non_negative_int(bad: object) -> None:
    p = Pipeline("bad-total")

    @p.step
    def first(progress: Progress) -> None:
        progress.total = bad  # type: ignore[assignment]

    with pytest.raises(Exception, match=r"progress\.total must be a non-negative int"):
        p.run()


@pytest.mark.anyio
async def test_a_step_without_progress_calls_emits_no_progress_hook() -> None:
    p = Pipeline("quiet")

    @p.step
    def first(progress: Progress) -> int:
        return 1

    recorder = HookRecorder()
    await engine_with(recorder).run(p, {})
    assert recorder.of("step_progress") == []


@pytest.mark.anyio
async def test_updates_keep_flowing_when_items_slow_down_after_a_fast_burst() -> None:
    """The clock-check stride grows during a fast burst; pokes keep slow items reported."""
    p = Pipeline("burst")

    @p.step
    def work(fast: int = 300_000, slow: int = 40, progress: Progress | None = None) -> int:
        assert progress is not None
        for _ in range(fast):
            progress.advance()
        for _ in range(slow):
            time.sleep(0.01)
            progress.advance()
        return progress.done

    recorder = HookRecorder()
    async with engine_with(recorder, progress_interval=0.05) as engine:
        record = await engine.run(p)
    assert record.outputs == 300_040
    during_slow_part = [c for c in recorder.of("step_progress") if 300_000 < c["done"] < 300_040]
    assert len(during_slow_part) >= 3, "0.4 s of slow items should give several updates"


def test_the_clock_check_stride_stays_bounded_however_long_a_fast_loop_runs() -> None:
    """An unbounded stride grew into a huge int, making each call slower than the last."""
    from stepstream.authoring.progress import MAX_STRIDE, Progress, Throttle

    progress = Progress(lambda _: None, Throttle(interval=0.05))
    for _ in range(2_000_000):
        progress.check()
    assert progress._stride <= MAX_STRIDE


@pytest.mark.anyio
async def test_pokes_pause_while_every_call_reads_the_clock_and_resume_when_the_stride_grows() -> (
    None
):
    """A step reporting now and then must not wake the loop every 10 ms for nothing."""
    from stepstream.authoring.progress import Throttle

    throttle = Throttle(0.0)
    progress = Progress(lambda p: None, throttle)
    stop = throttle.keep_fresh()
    try:
        await anyio.sleep(0.05)
        assert throttle._resume is not None, "at stride 1 the pokes should wait"
        for _ in range(10_000):
            progress.advance()
        assert progress._stride > 1
        await anyio.sleep(0.05)
        assert throttle._resume is None, "a grown stride should have resumed the pokes"
        assert progress._check_at == -1, "and a poke should have made the next call look"
    finally:
        stop()
