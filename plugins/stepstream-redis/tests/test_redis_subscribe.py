"""A server reading the stream ends with the worker's record, whatever Redis does meanwhile."""

from __future__ import annotations

import logging
import random
import uuid

import msgspec
import pytest
from redis.asyncio import Redis

from stepstream import Engine, Pipeline, encode
from stepstream.transports.publisher import publishing
from stepstream_redis.reading import decode_entry

from redis_support import WAIT, counting, finished, run_published, subscribed, wait_until

pytestmark = pytest.mark.anyio


async def test_a_subscribed_server_ends_with_the_workers_record(
    url: str, server: Engine, transports
) -> None:
    async with subscribed(server, transports(url)):
        record, _ = await run_published(counting(), {"n": 5}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert [e.seq for e in server.events(record.execution_id)][-1] == record.last_seq


async def test_a_server_restarted_after_the_run_catches_up_from_its_group(
    url: str, server: Engine, transports
) -> None:
    async with subscribed(Engine(load_entrypoints=False), transports(url)) as before:
        await wait_until(lambda: before.transport._reader._connection is not None)
    record, _ = await run_published(counting(), {"n": 5}, transports(url))  # while it is down
    async with subscribed(server, transports(url)):  # the same URL: the same group
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_a_second_server_in_its_own_group_sees_everything_too(
    url: str, server: Engine, transports
) -> None:
    other = Engine(load_entrypoints=False)
    async with (
        subscribed(server, transports(url)),
        subscribed(other, transports(f"{url}&group=second")),
    ):
        record, _ = await run_published(counting(), {"n": 5}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
        assert await wait_until(lambda: finished(other, record.execution_id)) == record


async def test_a_server_killed_before_it_acknowledged_reads_the_batch_again(
    url: str, server: Engine, transports
) -> None:
    record, publisher = await run_published(counting(), {"n": 3}, transports(url))
    first = transports(url)
    reading = first.read()
    assert (await anext(reading)).envelopes  # read, never acknowledged
    await reading.aclose()
    await first.aclose()  # the server dies here
    async with subscribed(server, transports(url)) as subscriber:  # restarted, same consumer
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert subscriber.received == publisher.delivered  # all of it again, the first batch too


async def test_what_a_vanished_reader_left_pending_is_claimed_by_another(
    url: str, server: Engine, transports
) -> None:
    record, publisher = await run_published(counting(), {"n": 3}, transports(url))
    first = transports(f"{url}&consumer=gone")
    reading = first.read()
    assert len((await anext(reading)).envelopes) == publisher.delivered  # and never acknowledged
    await reading.aclose()
    await first.aclose()
    async with subscribed(server, transports(f"{url}&consumer=other&claim_after=0.2")):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_duplicates_and_disorder_change_nothing(
    url: str, prefix: str, redis: Redis, server: Engine, transports
) -> None:
    record, _ = await run_published(counting(), {"n": 6}, transports(url))
    entries = [fields for _, fields in await redis.xrange(prefix)]
    sent = [e.event.seq for fields in entries for e in decode_entry(fields, prefix)]
    jumbled = entries * 3
    random.Random(7).shuffle(jumbled)
    await redis.delete(prefix)
    for fields in jumbled:
        await redis.xadd(prefix, fields)
    async with subscribed(server, transports(url)) as subscriber:
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
        await wait_until(lambda: subscriber.received == 3 * len(sent))  # envelopes read
    kept = [e.seq for e in server.events(record.execution_id)]
    assert kept == sorted(set(kept)) and set(kept) <= set(sent)  # each once, in order
    assert kept[-1] == sent[-1] == record.last_seq  # the log may coalesce progress between
    assert server.get(record.execution_id) == record


async def test_an_event_of_an_unknown_type_is_ignored_with_one_log_line(
    url: str, prefix: str, redis: Redis, server: Engine, transports, caplog
) -> None:
    kind = f"teleported-{uuid.uuid4().hex[:8]}"  # from a newer worker
    newer = msgspec.json.encode({"event": {"type": kind, "execution_id": "exec_future", "seq": 1}})
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        await redis.xadd(prefix, {"envelope": newer})
    async with subscribed(server, transports(url)):
        record, _ = await run_published(counting(), {"n": 2}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert [r.getMessage() for r in caplog.records if kind in r.getMessage()] == [
        f"ignoring events of type {kind!r}, unknown to this version"
    ]


async def test_streams_are_trimmed_to_about_maxlen_and_expire(
    url: str, prefix: str, redis: Redis, transports
) -> None:
    worker = Engine(load_entrypoints=False, progress_interval=0)
    async with publishing(  # no linger: a batch per event, as a slow run's come
        worker, [transports(f"{url}&maxlen=100&ttl=600")], flush_timeout=WAIT, linger=0
    ) as (publisher,):
        records = [await worker.run(counting(), {"n": 2000}) for _ in range(10)]
    assert publisher.left == 0
    assert publisher.delivered > 1000
    stream = await redis.xinfo_stream(prefix)  # an entry per batch: enough of them to trim
    assert stream["length"] < 300 < stream["entries-added"]  # approximate: whole nodes of ~100
    own = f"{prefix}:exec:{records[-1].execution_id}"
    assert 0 < await redis.ttl(own) <= 600
    assert 0 < await redis.ttl(f"{prefix}:first:{records[-1].execution_id}") <= 600


async def test_a_start_trimmed_from_the_main_stream_is_filled_from_the_executions_own(
    url: str, prefix: str, redis: Redis, server: Engine, transports
) -> None:
    record, _ = await run_published(counting(), {"n": 6}, transports(url))
    await redis.xtrim(prefix, maxlen=1, approximate=False)  # only the last batch is left
    (_, fields), *_ = await redis.xrange(prefix)
    assert decode_entry(fields, prefix)[0].event.seq > 1  # the start is gone from it
    async with subscribed(server, transports(url)):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    # From the first event on, in order, each once (consecutive progress coalesced, as stores do).
    seqs = [e.seq for e in server.events(record.execution_id)]
    assert seqs[0] == 1 and seqs[-1] == record.last_seq
    assert seqs == sorted(set(seqs))


async def test_a_10_mb_output_crosses_as_the_cores_bounded_marker(
    url: str, prefix: str, redis: Redis, server: Engine, transports
) -> None:
    huge = Pipeline("redis-huge")

    @huge.step
    def blob() -> dict[str, str]:
        return {"data": "x" * 10_000_000}

    async with subscribed(server, transports(url)):
        record, _ = await run_published(huge, {}, transports(url))
        assert await wait_until(lambda: finished(server, record.execution_id)) == record
    assert record.status == "completed"
    assert len(encode(record.outputs)) < 10_000  # the core's marker, not 10 MB
    entries = await redis.xrange(prefix)
    assert max(len(data) for _, fields in entries for data in fields.values()) < 64_000


async def test_a_gap_anywhere_is_filled_with_exactly_the_events_after_it(
    url: str, prefix: str, redis: Redis, transports
) -> None:
    """An execution's stream holds a batch per entry; a fill from the middle of one starts after
    the seq asked for, each event once, in order."""
    record, _ = await run_published(counting(), {"n": 6}, transports(url))
    execution_id = record.execution_id
    own = f"{prefix}:exec:{execution_id}"
    envelopes = [e for _, fields in await redis.xrange(own) for e in decode_entry(fields, prefix)]
    await redis.delete(own)
    transport = transports(url)
    await transport.publish(envelopes)  # all of them as one batch: one entry
    await transport.publish(envelopes[-2:])  # a repeat is refused there
    await transport.publish([])  # and nothing is nothing
    assert [seq for seq, _ in await redis.xrange(own)] == [f"{record.last_seq}-0".encode()]
    sent = [e.event.seq for e in envelopes]
    assert sent == sorted(set(sent)) and sent[-1] == record.last_seq and len(sent) > 2
    for after in range(record.last_seq + 1):
        held = [e.event.seq for e in await transport.backfill(execution_id, after)]
        assert held == [seq for seq in sent if seq > after], after
