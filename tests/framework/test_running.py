"""Steps run in order, sync or async, each fed the previous result; failures are recorded."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from stepstream import Pipeline, Progress, StepFailedError, hookimpl
from stepstream.model.events import encode

from fw_support import HookRecorder, engine_with


class Sensor:
    """An output msgspec cannot encode, to check the record keeps its repr."""

    def __repr__(self) -> str:
        return "Sensor()"


class QuotaExceeded(RuntimeError):
    """A user's own exception type, to check the record names it."""


def _mixed() -> Pipeline:
    p = Pipeline("mixed")

    @p.step
    def load(n: int, scale: int = 10) -> list[int]:
        return [i * scale for i in range(n)]

    @p.step
    async def double(values: list[int]) -> list[int]:
        await anyio.sleep(0)
        return [v * 2 for v in values]

    @p.step
    def total(values: list[int], progress: Progress) -> int:
        return sum(progress.iter(values))

    @p.step
    async def describe(result: int) -> dict[str, int]:
        return {"total": result}

    return p


def _failing(async_step: bool) -> Pipeline:
    p = Pipeline("failing")

    @p.step
    def prepare(n: int = 3) -> int:
        return n

    if async_step:

        @p.step(name="charge")
        async def charge_async(n: int) -> int:
            await anyio.sleep(0)
            raise QuotaExceeded(f"quota of {n} exceeded")

    else:

        @p.step(name="charge")
        def charge_sync(n: int) -> int:
            raise QuotaExceeded(f"quota of {n} exceeded")

    @p.step
    def never(n: int) -> int:
        return n

    return p


def test_pipeline_run_returns_the_last_steps_value() -> None:
    assert _mixed().run(n=4) == {"total": 120}


def test_pipeline_run_returns_outputs_as_they_are_not_as_json() -> None:
    p = Pipeline("objects")

    @p.step
    def make() -> tuple[Sensor, int]:
        return (Sensor(), 1)

    outputs = p.run()
    assert isinstance(outputs, tuple)
    assert isinstance(outputs[0], Sensor)


@pytest.mark.parametrize("async_step", [False, True])
def test_pipeline_run_raises_step_failed_error_chained_to_the_original(async_step: bool) -> None:
    with pytest.raises(StepFailedError) as info:
        _failing(async_step).run(n=7)
    message = str(info.value)
    assert "'charge'" in message
    assert "'failing'" in message
    assert "QuotaExceeded: quota of 7 exceeded" in message
    assert isinstance(info.value.__cause__, QuotaExceeded)
    assert str(info.value.__cause__) == "quota of 7 exceeded"


@pytest.mark.anyio
async def test_outputs_pass_between_sync_and_async_steps_and_end_in_the_record() -> None:
    recorder = HookRecorder()
    engine = engine_with(recorder)
    record = await engine.run(_mixed(), {"n": 3, "scale": 1})
    assert record.status == "completed"
    assert record.outputs == {"total": 6}
    assert record.inputs == {"n": 3, "scale": 1}
    assert record.error is None
    assert [s.status for s in record.steps] == ["completed"] * 4
    assert all(s.duration_seconds is not None and s.duration_seconds >= 0 for s in record.steps)
    assert record.steps[2].items_done == 3
    assert record.steps[2].items_total == 3
    assert record.created_at <= record.started_at <= record.finished_at
    assert recorder.of("execution_finished")[0]["status"] == "completed"
    assert recorder.of("execution_finished")[0]["outputs"] == {"total": 6}
    assert [c["index"] for c in recorder.of("step_done")] == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_hooks_fire_in_lifecycle_order() -> None:
    recorder = HookRecorder()
    engine = engine_with(recorder)
    record = await engine.run(_mixed(), {"n": 2})
    names = [n for n in recorder.names(record.execution_id) if n != "step_progress"]
    assert names == [
        "execution_started",
        *["step_started", "step_done"] * 4,
        "execution_finished",
    ]
    assert recorder.of("execution_started")[0]["inputs"] == {"n": 2, "scale": 10}


@pytest.mark.anyio
async def test_outputs_msgspec_cannot_encode_are_kept_as_repr() -> None:
    p = Pipeline("odd")

    @p.step
    def make() -> dict[str, object]:
        return {"sensor": Sensor(), "when": (1, 2)}

    record = await engine_with().run(p, {})
    assert msgspec.json.decode(encode(record))["outputs"] == {"sensor": "Sensor()", "when": [1, 2]}


@pytest.mark.anyio
@pytest.mark.parametrize("async_step", [False, True])
async def test_a_failed_step_is_recorded_with_name_type_message_and_traceback(
    async_step: bool,
) -> None:
    recorder = HookRecorder()
    engine = engine_with(recorder)
    record = await engine.run(_failing(async_step), {"n": 5})
    assert record.status == "failed"
    assert record.outputs is None
    assert record.finished_at is not None
    error = record.error
    assert error is not None
    assert error.step == "charge"
    assert error.type == "QuotaExceeded"
    assert error.message == "quota of 5 exceeded"
    assert error.traceback is not None
    assert "Traceback (most recent call last)" in error.traceback
    assert 'raise QuotaExceeded(f"quota of {n} exceeded")' in error.traceback
    assert [s.status for s in record.steps] == ["completed", "failed", "pending"]
    assert record.steps[1].duration_seconds is not None
    assert record.progress is not None and record.progress.current_step == 1
    assert recorder.of("step_failed")[0]["error"] == error
    assert recorder.of("execution_finished")[0]["status"] == "failed"
    assert recorder.of("execution_finished")[0]["error"] == error
    assert "never" not in [c["name"] for c in recorder.of("step_started")]
    last = engine.events(record.execution_id)[-1]
    assert type(last).__name__ == "FailedEvent"
    assert last.error == error


@pytest.mark.anyio
async def test_an_exception_without_message_is_named_by_its_type() -> None:
    p = Pipeline("silent")

    @p.step
    def first() -> None:
        raise KeyError

    record = await engine_with().run(p, {})
    assert record.error is not None
    assert record.error.type == "KeyError"
    assert record.error.message == "KeyError"


@pytest.mark.anyio
async def test_the_engine_runs_pipelines_by_name_and_lists_them() -> None:
    p = _mixed()
    async with engine_with() as engine:
        engine.add_pipeline(p)
        engine.add_pipeline(p)
        assert engine.pipeline("mixed") is p
        with pytest.raises(KeyError, match=r"no pipeline named 'nope' \(known: mixed\)"):
            engine.pipeline("nope")
        other = Pipeline("mixed")

        @other.step
        def first() -> int:
            return 1

        with pytest.raises(Exception, match="two pipelines are named 'mixed'"):
            engine.add_pipeline(other)
        submitted = engine.submit("mixed", {"n": 2})
        assert submitted.status == "pending"
        record = await engine.wait(submitted.execution_id)
        assert record.status == "completed"
        assert record.outputs == {"total": 20}


@pytest.mark.anyio
async def test_queued_executions_start_in_order_at_most_max_concurrent_at_a_time() -> None:
    gate = anyio.Event()
    running: list[int] = []
    peak = 0
    p = Pipeline("queue")

    @p.step
    async def work(k: int) -> int:
        nonlocal peak
        running.append(k)
        peak = max(peak, len(running))
        await gate.wait()
        running.remove(k)
        return k

    started: list[int] = []

    class Starts:
        @hookimpl
        def execution_started(self, inputs: dict) -> None:
            started.append(inputs["k"])

    async with engine_with(Starts(), max_concurrent=2) as engine:
        ids = [engine.submit(p, {"k": k}).execution_id for k in range(5)]
        while len(running) < 2:
            await anyio.sleep(0.001)
        assert engine.running == 2
        assert [engine.get(i).status for i in ids] == ["running"] * 2 + ["pending"] * 3
        gate.set()
        records = [await engine.wait(i) for i in ids]
    assert [r.status for r in records] == ["completed"] * 5
    assert started == [0, 1, 2, 3, 4]
    assert peak == 2


def test_submit_needs_a_running_engine() -> None:
    with pytest.raises(RuntimeError, match="async with Engine"):
        engine_with().submit(_mixed(), {"n": 1})


@pytest.mark.anyio
async def test_an_engine_block_that_never_awaits_exits_cleanly() -> None:
    async with engine_with() as engine:
        assert engine.running == 0
