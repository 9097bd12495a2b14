"""What a broken step, odd outputs or a failing store must never do: hang or stop the engine."""

from __future__ import annotations

import sys
from collections import Counter

import anyio
import pytest

from stepstream import Engine, Pipeline
from stepstream.model.events import ProgressEvent, ProgressSnapshot, StepState
from stepstream.stores.memory import MemoryStore

from fw_support import engine_with


def _exiting(is_async: bool) -> Pipeline:
    p = Pipeline(f"exiting_{is_async}")

    if is_async:

        @p.step
        async def leave() -> int:
            sys.exit(3)

    else:

        @p.step
        def leave() -> int:
            sys.exit(3)

    return p


def _fine() -> Pipeline:
    p = Pipeline("fine")

    @p.step
    async def ok() -> str:
        await anyio.sleep(0.05)
        return "ok"

    return p


@pytest.mark.anyio
@pytest.mark.parametrize("is_async", [False, True])
async def test_a_step_calling_sys_exit_fails_its_execution_and_spares_the_others(
    is_async: bool,
) -> None:
    async with engine_with() as engine:
        other = engine.submit(_fine()).execution_id
        exiting = engine.submit(_exiting(is_async)).execution_id
        failed = await engine.wait(exiting)
        survived = await engine.wait(other)
    assert failed.status == "failed"
    assert failed.error.type == "SystemExit" and failed.error.step == "leave"
    assert survived.status == "completed" and survived.outputs == "ok"


@pytest.mark.anyio
async def test_outputs_msgspec_cannot_encode_still_complete_the_execution() -> None:
    p = Pipeline("pairs")

    @p.step
    def count() -> Counter:
        return Counter({("a", "b"): 2, ("c", "d"): 1})

    async with engine_with() as engine:
        record = await engine.run(p)
    assert record.status == "completed"
    assert record.outputs == {"('a', 'b')": 2, "('c', 'd')": 1}


class _NoHistoryStore(MemoryStore):
    def step_durations(self, pipeline: str, limit: int = 20) -> dict[str, list[float]]:
        raise OSError("disk on fire")


@pytest.mark.anyio
async def test_a_store_that_cannot_read_history_costs_only_the_early_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Engine(store=_NoHistoryStore(), load_entrypoints=False) as engine:
        record = await engine.wait(engine.submit(_fine()).execution_id)
    assert record.status == "completed"
    assert "no step history for fine" in caplog.text


@pytest.mark.anyio
async def test_waiting_on_a_queued_execution_ends_when_the_engine_stops() -> None:
    p = Pipeline("blocker")
    release = anyio.Event()

    @p.step
    async def hold() -> int:
        await release.wait()
        return 1

    waited: list[str] = []
    async with anyio.create_task_group() as tg:
        async with Engine(load_entrypoints=False, max_concurrent=1) as engine:
            engine.submit(p)
            queued = engine.submit(p).execution_id

            async def wait_for_queued() -> None:
                waited.append((await engine.wait(queued)).status)

            tg.start_soon(wait_for_queued)
            await anyio.sleep(0.05)
        with anyio.fail_after(5):
            while not waited:
                await anyio.sleep(0.01)
    assert waited == ["pending"]


@pytest.mark.anyio
async def test_creating_on_a_closed_store_leaves_nothing_behind() -> None:
    class ClosedStore(MemoryStore):
        def append(self, record, event) -> None:  # type: ignore[no-untyped-def]
            raise OSError("closed")

    engine = Engine(store=ClosedStore(), load_entrypoints=False)
    with pytest.raises(OSError):
        engine.create(_fine(), {})
    assert engine.subscriber_count() == 0
    assert engine.list() == []


@pytest.mark.anyio
async def test_an_ingested_event_naming_a_step_that_does_not_exist_is_refused() -> None:
    engine = Engine(load_entrypoints=False)
    record = engine.create(_fine(), {})
    bad = ProgressEvent(
        execution_id=record.execution_id,
        seq=2,
        progress=ProgressSnapshot(
            current_step=7, total_steps=1, percentage=10.0, current_step_name="x"
        ),
        step=StepState(name="x", index=7, status="running", weight=1.0),
    )
    with pytest.raises(ValueError, match="names step 7"):
        engine.ingest(bad)
    assert engine.get(record.execution_id).last_seq == 1


def test_mutable_defaults_appear_in_the_input_schema() -> None:
    p = Pipeline("defaults")

    @p.step
    def first(tags: list[str] = ["a"], limits: dict[str, int] = {}) -> int:  # noqa: B006
        return len(tags)

    properties = p.input_schema()["properties"]
    assert properties["tags"]["default"] == ["a"]
    assert properties["limits"]["default"] == {}
