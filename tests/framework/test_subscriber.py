"""A subscriber keeps reading through a failing broker, and reports a run it cannot place once.

`Inbox` is a real ReadableTransport kept in memory: what the test puts in its
queue is read in order, and `fail_next` makes the next read raise as a lost
broker does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from stepstream import Engine, Envelope
from stepstream.transports import Gap, TransportError
from stepstream.transports.subscriber import Subscriber

from fw_support import worker_envelopes

pytestmark = pytest.mark.anyio

WAIT = 20.0


class Taken:
    """A delivery: acknowledged once the subscriber kept it."""

    def __init__(self, inbox: Inbox, envelopes: list[Envelope]) -> None:
        self.inbox = inbox
        self.envelopes = envelopes

    async def ack(self) -> None:
        self.inbox.acked += len(self.envelopes)


class Inbox:
    """Hands out what was put in, one envelope per delivery; holds nothing to backfill."""

    url = "inbox://user:secret@test"

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[Envelope](100)
        self.fail_next = 0
        self.reads = 0
        self.acked = 0

    @classmethod
    def from_url(cls, url: str) -> Inbox:
        return cls()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        for envelope in envelopes:
            await self.send.send(envelope)
        return []

    async def read(self) -> AsyncIterator[Taken]:
        self.reads += 1
        if self.fail_next:
            self.fail_next -= 1
            raise TransportError("connection to inbox://test lost")
        async for envelope in self.receive:
            yield Taken(self, [envelope])

    async def backfill(self, execution_id: str, after: int) -> list[Envelope]:
        return []

    async def aclose(self) -> None:
        self.send.close()


async def test_a_failing_read_is_tried_again_and_nothing_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelopes, final = await worker_envelopes()
    inbox = Inbox()
    inbox.fail_next = 2
    server = Engine(load_entrypoints=False)
    async with server, anyio.create_task_group() as tasks:
        await tasks.start(Subscriber(server, inbox).run)
        await inbox.publish(envelopes)
        with anyio.fail_after(WAIT):
            while inbox.acked < len(envelopes):
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert inbox.reads == 3
    assert server.get(final.execution_id).status == "completed"
    assert server.get(final.execution_id).outputs == final.outputs
    failures = [r.getMessage() for r in caplog.records if "reading" in r.getMessage()]
    assert failures == [
        "reading inbox://user:***@test failed: connection to inbox://test lost; "
        "reading again in 0.5s",
        "reading inbox://user:***@test failed: connection to inbox://test lost; "
        "reading again in 1s",
    ]


async def test_a_run_seen_from_its_middle_is_reported_once_then_taken_from_its_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelopes, final = await worker_envelopes()
    inbox = Inbox()
    server = Engine(load_entrypoints=False)
    subscriber = Subscriber(server, inbox)
    async with server, anyio.create_task_group() as tasks:
        await tasks.start(subscriber.run)
        with caplog.at_level(logging.WARNING, logger="stepstream.transports"):
            await inbox.publish(envelopes[2:])  # the start, with the record, never came
            with anyio.fail_after(WAIT):
                while inbox.acked < len(envelopes) - 2:
                    await anyio.sleep(0.01)
        assert server.list() == []
        lost = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
        assert lost == [
            f"inbox://user:***@test holds no start of {final.execution_id} "
            f"(first seen at event {envelopes[2].event.seq}); its events are set aside"
        ]
        await inbox.publish(envelopes)  # sent again from the start (a worker's refill)
        with anyio.fail_after(WAIT):
            while inbox.acked < 2 * len(envelopes) - 2:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert subscriber.gaps_reported == 1
    assert server.get(final.execution_id).status == "completed"


class OneBigDelivery(Inbox):
    """Hands out everything put in as one delivery, as a broker's large read does."""

    def __init__(self, envelopes: list[Envelope]) -> None:
        super().__init__()
        self.envelopes = envelopes

    async def read(self) -> AsyncIterator[Taken]:
        yield Taken(self, self.envelopes)
        await anyio.sleep_forever()


async def test_a_large_delivery_lets_other_tasks_run_while_it_is_applied() -> None:
    envelopes, final = await worker_envelopes()
    big = OneBigDelivery(envelopes * 500)  # the run, then its events again and again
    subscriber = Subscriber(Engine(load_entrypoints=False), big)
    seen_midway = False

    async def look_around() -> None:
        nonlocal seen_midway
        while not subscriber.received:
            known = subscriber.engine.list(limit=1)
            seen_midway = seen_midway or bool(known)
            await anyio.sleep(0)

    async with subscriber.engine, anyio.create_task_group() as tasks:
        await tasks.start(subscriber.run)
        tasks.start_soon(look_around)
        with anyio.fail_after(WAIT):
            while big.acked < len(big.envelopes):
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert seen_midway  # another task ran while the delivery was being applied
    assert subscriber.engine.get(final.execution_id) == final
