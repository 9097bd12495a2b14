"""Cancels heard by a publisher: it cancels what it runs, and nothing that runs elsewhere.

`Loopback` is a real CancelRelay kept in memory: a request is heard by its
listener, as every publisher on a broker hears it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence

import anyio
import msgspec
import pytest

from stepstream import Engine, Envelope, Origin, Pipeline, Progress
from stepstream.transports import Gap
from stepstream.transports.publisher import publishing

from fw_support import worker_envelopes

pytestmark = pytest.mark.anyio

WAIT = 20.0


class Loopback:
    """Publishes nowhere; every cancel requested is heard by its listener."""

    url = "loopback://test"

    def __init__(self) -> None:
        self.requested: list[str] = []
        self._send, self._heard = anyio.create_memory_object_stream[str](100)

    @classmethod
    def from_url(cls, url: str) -> Loopback:
        return cls()

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        return []

    async def request_cancel(self, execution_id: str) -> None:
        self.requested.append(execution_id)
        await self._send.send(execution_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        async for execution_id in self._heard:
            yield execution_id

    async def aclose(self) -> None:
        pass


async def test_a_cancel_heard_for_an_execution_run_elsewhere_is_not_passed_on_again() -> None:
    envelopes, _ = await worker_envelopes()
    first = envelopes[0]
    assert first.record is not None
    elsewhere = Origin(host="another-host", pid=1)
    envelopes[0] = Envelope(
        event=first.event, record=msgspec.structs.replace(first.record, origin=elsewhere)
    )
    relay = Loopback()
    server = Engine(load_entrypoints=False)  # subscribes and publishes through one broker
    async with server, publishing(server, [relay], flush_timeout=1.0):
        server.relay_cancels(relay)
        for envelope in envelopes[:2]:  # started, running
            server.receive(envelope)
        execution_id = first.event.execution_id
        server.cancel(execution_id)
        await anyio.sleep(0.5)  # a publisher acting on it would ask again, and again
        assert relay.requested == [execution_id]
        assert server.get(execution_id).status == "running"  # until its worker reports


async def test_a_cancel_heard_for_an_execution_run_here_cancels_it() -> None:
    started = threading.Event()
    pipeline = Pipeline("cancellable")

    @pipeline.step
    def spin(progress: Progress) -> None:
        started.set()
        while True:
            progress.advance()
            threading.Event().wait(0.01)

    relay = Loopback()
    worker = Engine(load_entrypoints=False)
    async with worker, publishing(worker, [relay], flush_timeout=1.0):
        job = worker.submit(pipeline)
        with anyio.fail_after(WAIT):
            while not started.is_set():
                await anyio.sleep(0.01)
            await relay.request_cancel(job.execution_id)
            record = await worker.wait(job.execution_id)
    assert record.status == "cancelled"
