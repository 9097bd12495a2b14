"""The broker down when a run starts, or lost mid-run: the run goes on, its events arrive later."""

from __future__ import annotations

import asyncio
import time

import pytest

from stepstream import Engine
from stepstream.transports.publisher import publishing

from mqtt_support import (
    WAIT,
    Gate,
    Proxy,
    counting,
    finished,
    gated,
    known,
    open_session,
    subscribed,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_a_broker_down_when_the_run_starts_neither_slows_nor_fails_it(
    url: str, prefix: str, proxy: Proxy, server: Engine, transports
) -> None:
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    await proxy.stop()
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with publishing(worker, [transports(f"{proxy.url}/{prefix}")], flush_timeout=WAIT) as (
        publisher,
    ):
        began = time.monotonic()
        record = await worker.run(counting(), {"n": 20, "pause": 0.005})
        assert time.monotonic() - began < 2.0  # ~0.1 s of work: nothing waited for the broker
        assert record.status == "completed"
        assert publisher.undelivered and not publisher.delivered
        await proxy.start()  # the broker is back
    assert publisher.left == 0
    async with subscribed(server, reader):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_a_broker_lost_mid_run_gets_the_rest_once_it_is_back(
    url: str, prefix: str, proxy: Proxy, server: Engine, transports
) -> None:
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    gate = Gate()
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with (
        subscribed(server, reader),
        publishing(worker, [transports(f"{proxy.url}/{prefix}")], flush_timeout=WAIT) as (
            publisher,
        ),
    ):
        running = asyncio.create_task(worker.run(gated(gate), {"n": 50}))
        await wait_until(gate.reached.is_set)
        execution_id = worker.list()[0].execution_id

        def running_on_server() -> bool:
            record = known(server, execution_id)
            return record is not None and record.status == "running"

        await wait_until(running_on_server)
        await proxy.stop()  # the broker goes away mid-run
        gate.opened.set()
        began = time.monotonic()
        record = await asyncio.wait_for(running, WAIT)
        assert time.monotonic() - began < 2.0
        assert record.status == "completed"
        assert server.get(execution_id).status == "running"  # nothing could reach it
        assert publisher.undelivered
        await proxy.start()
        assert await wait_until(lambda: finished(server, execution_id)) == record
    assert publisher.left == 0
