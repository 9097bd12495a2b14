"""Subscribers replay what they missed, then follow live; a slow one loses progress only."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from stepstream import Pipeline, Progress, UnknownExecution
from stepstream.model.events import (
    CancelledEvent,
    CompletedEvent,
    Event,
    ProgressEvent,
    StartedEvent,
    StatusEvent,
)

from fw_support import engine_with


class Gated:
    """An async pipeline that reports items, then waits at a gate until the test opens it."""

    def __init__(self, items: int = 20) -> None:
        self.reached = anyio.Event()
        self.gate = anyio.Event()
        self.pipeline = p = Pipeline("gated")

        @p.step
        async def before(progress: Progress, n: int = items) -> int:
            progress.total = n
            for _ in range(n):
                progress.advance()
                await anyio.sleep(0)
            self.reached.set()
            await self.gate.wait()
            return n

        @p.step(weight=2)
        async def after(n: int, progress: Progress) -> int:
            for _ in progress.iter(range(n)):
                await anyio.sleep(0)
            return n

    async def wait_at_gate(self) -> None:
        with anyio.fail_after(10):
            await self.reached.wait()


async def _drain(subscription: object) -> list[Event]:
    with anyio.fail_after(10):
        return [event async for event in subscription]  # type: ignore[attr-defined]


def _assert_ordered(events: list[Event]) -> None:
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), f"not strictly increasing: {seqs}"


@pytest.mark.anyio
async def test_subscribe_after_a_seq_replays_the_rest_then_follows_live_to_the_end() -> None:
    gated = Gated()
    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(gated.pipeline, {}).execution_id
        await gated.wait_at_gate()
        logged = engine.events(execution_id)
        at_subscribe = engine.get(execution_id).last_seq
        assert at_subscribe > 3
        subscription = engine.subscribe(execution_id, after=2)
        assert isinstance(subscription.status, StatusEvent)
        assert subscription.status.status == "running"
        assert subscription.status.seq == 2
        received: list[Event] = []

        async def read() -> None:
            received.extend(await _drain(subscription))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.01)
            gated.gate.set()
        record = await engine.wait(execution_id)
    _assert_ordered(received)
    assert all(e.seq > 2 for e in received)
    replayed = [e for e in received if e.seq <= at_subscribe]
    assert replayed == [e for e in logged if e.seq > 2]
    live = [e for e in received if e.seq > at_subscribe]
    assert live, "nothing followed live"
    assert isinstance(received[-1], CompletedEvent)
    assert received[-1].seq == record.last_seq
    assert received[-1].outputs == 20
    assert engine.subscriber_count(execution_id) == 0


@pytest.mark.anyio
async def test_subscribe_without_after_starts_from_now() -> None:
    gated = Gated()
    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(gated.pipeline, {}).execution_id
        await gated.wait_at_gate()
        now = engine.get(execution_id).last_seq
        subscription = engine.subscribe(execution_id)
        assert subscription.status.seq == now
        assert subscription.status.progress == engine.get(execution_id).progress
        gated.gate.set()
        received = await _drain(subscription)
    _assert_ordered(received)
    assert received[0].seq > now
    assert isinstance(received[-1], CompletedEvent)


@pytest.mark.anyio
async def test_a_finished_execution_gives_its_status_then_only_the_terminal_event() -> None:
    gated = Gated(items=3)
    gated.gate.set()
    async with engine_with() as engine:
        record = await engine.run(gated.pipeline, {})
        subscription = engine.subscribe(record.execution_id)
        assert subscription.status.status == "completed"
        assert subscription.status.progress == record.progress
        received = await _drain(subscription)
        assert [type(e) for e in received] == [CompletedEvent]
        assert received[0].seq == record.last_seq
        everything = await _drain(engine.subscribe(record.execution_id, after=0))
    assert everything == engine.events(record.execution_id)
    assert isinstance(everything[0], StatusEvent)
    assert isinstance(everything[-1], CompletedEvent)


@pytest.mark.anyio
async def test_subscribing_to_an_unknown_execution_raises() -> None:
    async with engine_with() as engine:
        with pytest.raises(UnknownExecution):
            engine.subscribe("exec_missing")


@pytest.mark.anyio
async def test_unsubscribing_frees_the_subscriber() -> None:
    gated = Gated()
    async with engine_with() as engine:
        tracker = engine
        execution_id = engine.submit(gated.pipeline, {}).execution_id
        await gated.wait_at_gate()
        first = tracker.subscribe(execution_id)
        async with tracker.subscribe(execution_id) as second:
            assert tracker.subscriber_count(execution_id) == 2
            assert tracker.subscriber_count() == 2
        assert tracker.subscriber_count(execution_id) == 1
        first.close()
        first.close()
        assert tracker.subscriber_count(execution_id) == 0
        assert tracker.subscriber_count() == 0
        watcher = tracker.watch()
        assert tracker.subscriber_count() == 1
        await watcher.aclose()
        assert tracker.subscriber_count() == 0
        gated.gate.set()
        await engine.wait(execution_id)
    assert [e async for e in first] == []
    assert [e async for e in second] == []


@pytest.mark.anyio
async def test_a_reader_that_stops_early_frees_its_subscription() -> None:
    gated = Gated()
    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(gated.pipeline, {}).execution_id
        await gated.wait_at_gate()
        async with engine.subscribe(execution_id, after=0) as subscription:
            async for event in subscription:
                if isinstance(event, StartedEvent):
                    break
        assert engine.subscriber_count() == 0
        gated.gate.set()
        await engine.wait(execution_id)


@pytest.mark.anyio
async def test_a_lagging_subscriber_gets_every_lifecycle_event_and_the_latest_progress() -> None:
    p = Pipeline("chatty")

    @p.step
    def count(progress: Progress, n: int = 500) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    @p.step
    def again(n: int, progress: Progress) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(p, {}).execution_id
        subscription = engine.subscribe(execution_id)
        record = await engine.wait(execution_id)
        assert record.last_seq > 10
        received = await _drain(subscription)
    assert [type(e) for e in received] == [StartedEvent, ProgressEvent, CompletedEvent]
    _assert_ordered(received)
    latest_progress = engine.events(execution_id)[-2]
    coalesced = received[1]
    assert isinstance(coalesced, ProgressEvent)
    assert msgspec.structs.replace(coalesced, steps=None) == latest_progress
    assert coalesced.seq == record.last_seq - 1
    # The step changes of the progress events it stands for ride along, so a reader
    # folding what it received knows every step's state, not only the last one's.
    carried = {s.index: s for s in coalesced.steps or ()}
    assert carried[0] == record.steps[0]
    assert coalesced.step == record.steps[1]


@pytest.mark.anyio
async def test_a_slow_subscriber_does_not_slow_a_fast_one_or_the_pipeline() -> None:
    gated = Gated(items=200)
    gated.gate.set()
    async with engine_with(progress_interval=0) as engine:
        execution_id = engine.submit(gated.pipeline, {}).execution_id
        slow = engine.subscribe(execution_id)
        fast = engine.subscribe(execution_id)
        fast_events = await _drain(fast)
        record = await engine.wait(execution_id)
        assert record.status == "completed"
        assert slow.pending <= 4
        slow_events = await _drain(slow)
    _assert_ordered(fast_events)
    _assert_ordered(slow_events)
    assert isinstance(fast_events[-1], CompletedEvent)
    assert [type(e) for e in slow_events] == [StartedEvent, ProgressEvent, CompletedEvent]
    assert len(fast_events) > len(slow_events)

    def bare(event: Event) -> Event:  # without the step changes a queue let ride along
        return msgspec.structs.replace(event, steps=None) if type(event) is ProgressEvent else event

    fast_by_seq = {e.seq: bare(e) for e in fast_events}
    assert all(bare(e) == fast_by_seq[e.seq] for e in slow_events)


@pytest.mark.anyio
async def test_watch_follows_several_executions() -> None:
    p = Pipeline("watched")

    @p.step
    async def only(k: int) -> int:
        return k

    async with engine_with() as engine:
        watcher = engine.watch()
        ids = [engine.submit(p, {"k": k}).execution_id for k in range(3)]
        for execution_id in ids:
            await engine.wait(execution_id)
        completed: set[str] = set()
        with anyio.fail_after(10):
            async for event in watcher:
                if isinstance(event, CompletedEvent):
                    completed.add(event.execution_id)
                if completed == set(ids):
                    break
        watcher.close()
        assert engine.subscriber_count() == 0


@pytest.mark.anyio
async def test_a_subscriber_of_a_queued_execution_sees_it_cancelled_and_ends() -> None:
    gated = Gated()
    async with engine_with(max_concurrent=1) as engine:
        running = engine.submit(gated.pipeline, {}).execution_id
        queued = engine.submit(gated.pipeline, {}).execution_id
        await gated.wait_at_gate()
        subscription = engine.subscribe(queued)
        assert subscription.status.status == "pending"
        assert subscription.status.progress is None
        engine.cancel(queued)
        received = await _drain(subscription)
        gated.gate.set()
        await engine.wait(running)
    assert [type(e) for e in received] == [CancelledEvent]
    assert received[0].seq == 2
    assert engine.subscriber_count() == 0


def _quick() -> Pipeline:
    p = Pipeline("quick_sub")

    @p.step
    def only(n: int = 1) -> int:
        return n

    return p


@pytest.mark.anyio
async def test_a_watcher_that_falls_too_far_behind_ends_instead_of_growing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepstream import SubscriptionOverflow
    from stepstream.tracking import subscriptions as subscription_module

    monkeypatch.setattr(subscription_module, "WATCH_BUFFER", 20)
    async with engine_with() as engine:
        watcher = engine.watch()
        for _ in range(15):  # each finished execution leaves 3 lifecycle events queued
            await engine.run(_quick())
        with pytest.raises(SubscriptionOverflow):
            async for _ in watcher:
                pass
        assert engine.subscriber_count() == 0


@pytest.mark.anyio
async def test_a_closed_subscription_keeps_nothing_pushed_after_it_closed() -> None:
    async with engine_with() as engine:
        watcher = engine.watch()
        watcher.close()
        await engine.run(_quick())
        assert watcher.pending == 0


@pytest.mark.anyio
async def test_a_subscription_made_on_a_worker_thread_is_read_on_the_loop() -> None:
    """The server subscribes off the loop, since a store may read its file to replay."""
    async with engine_with() as engine:
        record = await engine.run(_quick())
        subscription = await anyio.to_thread.run_sync(engine.subscribe, record.execution_id, 0)
        received = await _drain(subscription)
    assert [type(e).__name__ for e in received] == [
        "StatusEvent",
        "StartedEvent",
        "ProgressEvent",
        "CompletedEvent",
    ]
