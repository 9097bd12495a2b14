"""`Subscription.send_now`: events skip a caught-up reader's buffer, never its order or its end."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from stepstream import ProgressSnapshot, Subscription
from stepstream.model.events import CompletedEvent, Event, ProgressEvent, StatusEvent

pytestmark = pytest.mark.anyio

ID = "exec-1"
SNAPSHOT = ProgressSnapshot(current_step=0, total_steps=1, percentage=0.0, current_step_name="s")


def _progress(seq: int) -> ProgressEvent:
    return ProgressEvent(execution_id=ID, seq=seq, progress=SNAPSHOT)


def _completed(seq: int) -> CompletedEvent:
    return CompletedEvent(
        execution_id=ID, seq=seq, finished_at=datetime.now(UTC), progress=SNAPSHOT
    )


class Writer:
    """A `send_now` that writes while `open`, recording what it wrote."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[Event] = []

    def __call__(self, event: Event) -> bool:
        if self.open:
            self.written.append(event)
        return self.open


async def _waiting_reader(writer: Writer, after: int = 0) -> tuple[Subscription, asyncio.Task]:
    """A subscription whose reader has taken the replay and now waits, nothing buffered."""
    subscription = Subscription(unsubscribe=lambda s: None, execution_id=ID)
    subscription.begin(
        StatusEvent(execution_id=ID, seq=after, status="running", pipeline="p", progress=SNAPSHOT),
        [],
    )
    subscription.send_now = writer
    received: list[Event] = []

    async def read() -> list[Event]:
        async for event in subscription:
            received.append(event)
        return received

    task = asyncio.create_task(read())
    await asyncio.sleep(0)  # the reader now waits
    return subscription, task


async def test_a_caught_up_reader_is_not_woken_and_only_its_terminal_event_reaches_it() -> None:
    writer = Writer()
    subscription, reader = await _waiting_reader(writer)
    for seq in (1, 2, 3):
        subscription.push(_progress(seq))
    await asyncio.sleep(0)
    assert [e.seq for e in writer.written] == [1, 2, 3]
    assert subscription.pending == 0
    subscription.push(_completed(4))
    received = await asyncio.wait_for(reader, 5)
    assert [type(e).__name__ for e in received] == ["CompletedEvent"]
    assert [e.seq for e in writer.written] == [1, 2, 3]


async def test_a_reader_that_cannot_take_an_event_gets_it_and_the_rest_in_order() -> None:
    writer = Writer()
    subscription, reader = await _waiting_reader(writer)
    subscription.push(_progress(1))
    writer.open = False  # the socket's buffer is full: the event waits in the subscription
    subscription.push(_progress(2))
    writer.open = True
    subscription.push(_progress(3))  # the reader is behind: buffered after 2, coalesced with it
    subscription.push(_completed(4))
    received = await asyncio.wait_for(reader, 5)
    assert [e.seq for e in writer.written] == [1]
    assert [e.seq for e in received] == [3, 4]


async def test_events_already_covered_by_the_status_are_dropped_not_sent() -> None:
    writer = Writer()
    subscription, reader = await _waiting_reader(writer, after=5)
    subscription.push(_progress(4))
    subscription.push(_progress(6))
    subscription.push(_progress(6))
    assert [e.seq for e in writer.written] == [6]
    subscription.close()
    await asyncio.wait_for(reader, 5)


async def test_an_event_pushed_from_another_thread_goes_through_the_reader() -> None:
    writer = Writer()
    subscription, reader = await _waiting_reader(writer)
    pusher = threading.Thread(target=subscription.push, args=(_progress(1),))
    pusher.start()
    pusher.join()
    await asyncio.sleep(0.05)
    subscription.push(_completed(2))
    received = await asyncio.wait_for(reader, 5)
    assert writer.written == []
    assert [e.seq for e in received] == [1, 2]
