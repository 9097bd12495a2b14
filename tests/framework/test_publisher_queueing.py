"""A transport with a queue of its own: the publisher runs its delivery and counts its queue.

`Mailbag` is a real QueueingTransport kept in memory: `publish` only queues, and
its `deliver` task hands what is queued over once `open` is set.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from stepstream import CompletedEvent, Engine, Envelope, Pipeline
from stepstream.transports import Gap
from stepstream.transports.publisher import publishing

pytestmark = pytest.mark.anyio

WAIT = 20.0


class Mailbag:
    """Queues batches at once; delivers them while `open` is set."""

    url = "mailbag://test"

    def __init__(self) -> None:
        self.queued: list[Envelope] = []
        self.delivered: list[Envelope] = []
        self.open = anyio.Event()
        self.flush_given: float | None = None
        self.delivering = False
        self.closed = False

    @classmethod
    def from_url(cls, url: str) -> Mailbag:
        return cls()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        self.queued += envelopes
        return []

    async def deliver(self) -> None:
        self.delivering = True
        while True:
            await self.open.wait()
            self.delivered += self.queued
            self.queued.clear()
            await anyio.sleep(0.01)

    async def flush(self, timeout: float) -> int:
        self.flush_given = timeout
        with anyio.move_on_after(timeout):
            while self.queued:
                await anyio.sleep(0.01)
        return len(self.queued)

    async def aclose(self) -> None:
        self.closed = True


def _pipeline() -> Pipeline:
    p = Pipeline("bagged")

    @p.step
    def only(n: int = 2) -> int:
        return n

    return p


async def test_the_transports_delivery_runs_and_its_drained_queue_leaves_nothing() -> None:
    bag = Mailbag()
    bag.open.set()
    engine = Engine(load_entrypoints=False)
    with anyio.fail_after(WAIT):
        async with publishing(engine, [bag], flush_timeout=WAIT) as publishers:
            record = await engine.run(_pipeline())
    assert bag.delivering and bag.closed
    assert publishers[0].left == 0
    delivered = [e.event for e in bag.delivered if e.event.execution_id == record.execution_id]
    assert isinstance(delivered[-1], CompletedEvent)


async def test_what_the_transport_still_holds_at_the_end_counts_as_left() -> None:
    bag = Mailbag()  # never opened: nothing leaves its queue
    engine = Engine(load_entrypoints=False)
    async with publishing(engine, [bag], flush_timeout=0.5) as publishers:
        await engine.run(_pipeline())
    assert bag.delivered == []
    assert publishers[0].left == len(bag.queued) > 0
    assert bag.closed


async def test_every_publisher_flushes_at_once_with_the_whole_timeout() -> None:
    bags = [Mailbag(), Mailbag()]  # neither drains: a sequential flush would starve the second
    engine = Engine(load_entrypoints=False)
    async with publishing(engine, bags, flush_timeout=2.0) as publishers:
        await engine.run(_pipeline())
    assert all(p.left > 0 for p in publishers)
    assert all(b.flush_given is not None and b.flush_given > 1.0 for b in bags)


class Handover:
    """Hands each published batch straight to a receiving engine, as a server ingests it."""

    url = "handover://test"

    def __init__(self, receiver: Engine) -> None:
        self.receiver = receiver

    @classmethod
    def from_url(cls, url: str) -> Handover:
        raise NotImplementedError("made in the test, around its receiver")

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        for envelope in envelopes:
            self.receiver.receive(envelope)
        return []

    async def aclose(self) -> None:
        pass


async def test_a_first_batch_that_leaves_after_the_run_still_carries_its_whole_history() -> None:
    worker = Engine(load_entrypoints=False, progress_interval=0)
    receiver = Engine(load_entrypoints=False)
    async with publishing(worker, [Handover(receiver)], flush_timeout=WAIT, linger=0.3):
        record = await worker.run(_pipeline(), {})  # over before the first batch leaves
    assert receiver.get(record.execution_id) == record
    assert [e.seq for e in receiver.events(record.execution_id)] == [
        e.seq for e in worker.events(record.execution_id)
    ]
    assert len(receiver.events(record.execution_id)) > 2  # started, steps: not just the end
