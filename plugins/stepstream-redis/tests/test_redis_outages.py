"""Redis down when a run starts, or lost mid-run: the run goes on, its events arrive later."""

from __future__ import annotations

import asyncio
import time

import pytest

from stepstream import Engine
from stepstream.transports.publisher import publishing

from redis_support import (
    HOST,
    WAIT,
    Gate,
    Proxy,
    counting,
    finished,
    gated,
    known,
    subscribed,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_redis_down_when_the_run_starts_neither_slows_nor_fails_it(
    url: str, prefix: str, proxy: Proxy, server: Engine, transports
) -> None:
    await proxy.stop()
    worker = Engine(load_entrypoints=False, progress_interval=0)
    through_proxy = transports(f"redis://{HOST}:{proxy.port}/0?prefix={prefix}")
    async with publishing(worker, [through_proxy], flush_timeout=WAIT) as (publisher,):
        began = time.monotonic()
        record = await worker.run(counting(), {"n": 20, "pause": 0.005})
        assert time.monotonic() - began < 2.0  # ~0.1 s of work: nothing waited for Redis
        assert record.status == "completed"
        assert publisher.undelivered and not publisher.delivered
        await proxy.start()  # Redis is back
    assert publisher.left == 0
    async with subscribed(server, transports(url)):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_redis_lost_mid_run_gets_the_rest_once_it_is_back(
    prefix: str, proxy: Proxy, server: Engine, transports
) -> None:
    through_proxy = f"redis://{HOST}:{proxy.port}/0?prefix={prefix}"
    gate = Gate()
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with (
        subscribed(server, transports(through_proxy)),  # the server loses Redis too
        publishing(worker, [transports(through_proxy)], flush_timeout=WAIT) as (publisher,),
    ):
        running = asyncio.create_task(worker.run(gated(gate), {"n": 50}))
        await wait_until(gate.reached.is_set)
        execution_id = worker.list()[0].execution_id

        def running_on_server() -> bool:
            record = known(server, execution_id)
            return record is not None and record.status == "running"

        await wait_until(running_on_server)
        await proxy.stop()  # Redis goes away mid-run
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
