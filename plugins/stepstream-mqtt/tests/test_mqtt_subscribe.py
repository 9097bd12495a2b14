"""A server subscribed to the broker ends with the worker's record, whatever MQTT does meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid

import aiomqtt
import msgspec
import pytest

from stepstream import Engine
from stepstream.model.fold import coalesced
from stepstream.transports.publisher import publishing
from stepstream.transports.wire import decode_envelope

from mqtt_support import (
    HOST,
    PORT,
    WAIT,
    Gate,
    counting,
    finished,
    gated,
    listening,
    open_session,
    run_published,
    subscribed,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_a_subscribed_server_ends_with_the_workers_record(
    url: str, prefix: str, server: Engine, transports
) -> None:
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    async with subscribed(server, reader):
        record, _ = await run_published(counting(), {"n": 5}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert [e.seq for e in server.events(record.execution_id)][-1] == record.last_seq


async def test_a_server_away_during_the_run_reads_it_from_its_session_when_back(
    url: str, prefix: str, server: Engine, transports
) -> None:
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")  # ran before
    record, _ = await run_published(counting(), {"n": 5}, transports(url))  # while it is away
    async with subscribed(server, reader):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_a_server_first_subscribing_mid_run_starts_from_the_retained_status(
    url: str, prefix: str, server: Engine, transports, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with publishing(worker, [transports(url)], flush_timeout=WAIT) as (publisher,):
        running = asyncio.create_task(worker.run(gated(gate), {"n": 4}))
        await wait_until(gate.reached.is_set)
        await wait_until(lambda: publisher.delivered and not publisher.undelivered)
        reader = transports(url)  # its session starts now: the first events are gone for it
        await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
        async with subscribed(server, reader):
            gate.opened.set()
            record = await running
            assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert "lost" not in caplog.text


async def test_a_server_killed_before_it_kept_a_batch_reads_it_again(
    url: str, prefix: str, server: Engine, transports
) -> None:
    first = transports(url)
    await open_session(first.settings.client_id, f"{prefix}/executions/+/events")
    record, publisher = await run_published(counting(), {"n": 3}, transports(url))
    reading = first.read()
    assert (await anext(reading)).envelopes  # read, never acknowledged
    await first.aclose()  # the server dies here
    await reading.aclose()
    again = transports(url)  # restarted, with the same URL: the same session
    async with subscribed(server, again) as subscriber:
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
        await wait_until(lambda: subscriber.received >= publisher.delivered)
    assert subscriber.received == publisher.delivered  # all of it again, the first batch too


async def test_the_same_events_delivered_twice_change_nothing(
    url: str, prefix: str, server: Engine, transports
) -> None:
    async with listening(f"{prefix}/executions/+/events") as listener:
        record, publisher = await run_published(counting(), {"n": 3}, transports(url))
        await wait_until(lambda: len(listener.seen) == publisher.delivered)
    sent = [m.payload for m in listener.seen]  # the run's messages, as a broker carried them
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    async with aiomqtt.Client(HOST, PORT) as client:
        for payload in [*itertools.chain.from_iterable(zip(sent, sent, strict=True)), *sent]:
            await client.publish(listener.seen[0].topic, payload, qos=1)
    async with subscribed(server, reader) as subscriber:
        await wait_until(lambda: subscriber.received == 3 * len(sent))
    assert server.get(record.execution_id) == record
    # Each kept once; a progress event is still replaced by the progress that follows it, as
    # every store does (how many the worker coalesced before sending depends on the machine's pace).
    kept = coalesced(decode_envelope(payload).event for payload in sent)
    assert [e.seq for e in server.events(record.execution_id)] == [e.seq for e in kept]


async def test_an_event_of_an_unknown_type_is_ignored_with_one_log_line(
    url: str, prefix: str, server: Engine, transports, caplog: pytest.LogCaptureFixture
) -> None:
    kind = f"teleported-{uuid.uuid4().hex[:8]}"  # from a newer worker
    newer = {"event": {"type": kind, "execution_id": "exec_future", "seq": 1}}
    reader = transports(url)
    await open_session(reader.settings.client_id, f"{prefix}/executions/+/events")
    caplog.set_level(logging.WARNING)
    async with subscribed(server, reader):
        async with aiomqtt.Client(HOST, PORT) as client:
            for _ in range(3):
                await client.publish(
                    f"{prefix}/executions/exec_future/events", msgspec.json.encode(newer), qos=1
                )
        record, _ = await run_published(counting(), {"n": 2}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert [r.getMessage() for r in caplog.records if kind in r.getMessage()] == [
        f"ignoring events of type {kind!r}, unknown to this version"
    ]
