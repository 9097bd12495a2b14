"""Events survive a trip through JSON, applying one twice changes nothing, ids sort by creation."""

from __future__ import annotations

import re
import threading

import anyio
import msgspec
import pytest

from stepstream import Engine, Pipeline, Progress, ProgressSnapshot
from stepstream.model.events import (
    CancelledEvent,
    CompletedEvent,
    ErrorEvent,
    Event,
    ExecutionRecord,
    FailedEvent,
    ProgressEvent,
    StartedEvent,
    StatusEvent,
    decode_event,
    encode,
    record_decoder,
)
from stepstream.model.ids import new_execution_id

from fw_support import RecordingStore, engine_with, new_record

ULID = re.compile(r"^exec_[0-9A-HJKMNP-TV-Z]{26}$")


def _pipeline(mode: str) -> Pipeline:
    p = Pipeline(f"trip-{mode}")

    @p.step
    def first(progress: Progress, n: int = 5) -> dict:
        progress.message = "counting"
        for _ in progress.iter(range(n)):
            pass
        return {"n": n, "nested": [1.5, None, "x"]}

    @p.step
    async def second(value: dict) -> dict:
        if mode == "fail":
            raise LookupError("no such row")
        if mode == "cancel":
            await anyio.sleep(3600)
        return value

    return p


async def _all_kinds_of_events() -> tuple[list[Event], dict[str, ExecutionRecord]]:
    store = RecordingStore()
    records: dict[str, ExecutionRecord] = {}
    async with engine_with(store=store) as engine:
        for mode in ("complete", "fail"):
            records[mode] = await engine.run(_pipeline(mode), {})
        cancelled = engine.submit(_pipeline("cancel"), {}).execution_id
        while engine.get(cancelled).progress is None or (
            engine.get(cancelled).progress.current_step != 1
        ):
            await anyio.sleep(0.001)
        engine.cancel(cancelled)
        records["cancel"] = await engine.wait(cancelled)
    stream_error = ErrorEvent(execution_id="exec_x", seq=0, message="no such execution")
    events = [*store.appended, stream_error]
    return events, records


@pytest.mark.anyio
async def test_every_event_type_round_trips_through_json() -> None:
    events, _ = await _all_kinds_of_events()
    kinds = {type(e) for e in events}
    assert kinds == {
        StatusEvent,
        StartedEvent,
        ProgressEvent,
        CompletedEvent,
        FailedEvent,
        CancelledEvent,
        ErrorEvent,
    }
    for event in events:
        data = encode(event)
        assert msgspec.json.decode(data)["type"] == type(event).__struct_config__.tag
        back = decode_event(data)
        assert type(back) is type(event)
        assert back == event
        assert encode(back) == data


@pytest.mark.anyio
async def test_records_round_trip_and_carry_the_seed_fields() -> None:
    _, records = await _all_kinds_of_events()
    for record in records.values():
        data = encode(record)
        back = record_decoder.decode(data)
        assert encode(back) == data
        assert back.status == record.status
        assert back.steps == record.steps
        seed = msgspec.json.decode(data)["progress"]
        assert {"current_step", "total_steps", "percentage", "current_step_name"} <= set(seed)
    assert records["fail"].error is not None
    assert record_decoder.decode(encode(records["fail"])).error == records["fail"].error


@pytest.mark.anyio
async def test_ingesting_an_applied_event_returns_false_and_changes_nothing() -> None:
    store = RecordingStore()
    engine = engine_with(store=store)
    record = await engine.run(_pipeline("complete"), {})
    before = encode(engine.get(record.execution_id))
    log_before = engine.events(record.execution_id)
    for event in store.all_events(record.execution_id):
        assert engine.ingest(decode_event(encode(event))) is False
    assert encode(engine.get(record.execution_id)) == before
    assert engine.events(record.execution_id) == log_before


@pytest.mark.anyio
async def test_ingest_applies_a_new_event_once() -> None:
    p = _pipeline("complete")
    engine = Engine(store=RecordingStore(), load_entrypoints=False)
    record = new_record(engine, p, {"n": 1})
    cancelled = CancelledEvent(
        execution_id=record.execution_id,
        seq=2,
        finished_at=record.created_at,
        reason="stopped elsewhere",
    )
    status = StatusEvent(
        execution_id=record.execution_id, seq=1, status="pending", pipeline=p.name, progress=None
    )
    assert engine.ingest(status) is False
    assert engine.ingest(cancelled) is True
    assert engine.get(record.execution_id).status == "cancelled"
    assert engine.ingest(cancelled) is False
    assert [e.seq for e in engine.events(record.execution_id)] == [1, 2]
    late = ProgressEvent(
        execution_id=record.execution_id,
        seq=3,
        progress=ProgressSnapshot(
            current_step=0, total_steps=2, percentage=1.0, current_step_name="first"
        ),
    )
    assert engine.ingest(late) is False
    assert engine.get(record.execution_id).status == "cancelled"


def test_ids_are_prefixed_unique_and_sort_by_creation_order() -> None:
    p = _pipeline("complete")
    engine = Engine(load_entrypoints=False)
    ids = [engine.create(p, {}).execution_id for _ in range(500)]
    assert all(ULID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert [r.execution_id for r in engine.list(limit=1000)] == ids[::-1]


def test_ids_made_on_many_threads_never_collide() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        for _ in range(2000):
            bucket.append(new_execution_id())

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for bucket in made for i in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in made:
        assert bucket == sorted(bucket)
