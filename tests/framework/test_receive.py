"""Events from another process: started from a snapshot, applied once, in order, gaps caught."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
import pytest

from stepstream import (
    CompletedEvent,
    Engine,
    Envelope,
    Origin,
    ProgressEvent,
    ProgressSnapshot,
    Receipt,
    StartedEvent,
)
from stepstream.stores.sqlite import SqliteStore
from stepstream.transports.wire import decode_batch, encode_batch

from fw_support import worker_envelopes

pytestmark = pytest.mark.anyio


async def test_a_receiver_ends_with_the_workers_record_whatever_is_sent_twice() -> None:
    envelopes, final = await worker_envelopes()
    server = Engine(load_entrypoints=False)
    receipts = [server.receive(e) for e in envelopes]
    assert set(receipts) == {Receipt.APPLIED}
    assert [server.receive(e) for e in envelopes] == [Receipt.DUPLICATE] * len(envelopes)
    assert server.get(final.execution_id) == final
    assert final.origin == Origin(host=os.uname().nodename, pid=os.getpid())


async def test_a_gap_is_not_applied_and_an_unknown_execution_needs_its_record() -> None:
    envelopes, _ = await worker_envelopes()
    server = Engine(load_entrypoints=False)
    bare = Envelope(event=envelopes[0].event)
    assert server.receive(bare) is Receipt.UNKNOWN
    assert server.receive(envelopes[0]) is Receipt.APPLIED
    assert server.receive(envelopes[2]) is Receipt.GAP  # the one before it never arrived
    execution_id = envelopes[0].event.execution_id
    assert server.get(execution_id).last_seq == envelopes[0].event.seq
    assert all(server.receive(e) is Receipt.APPLIED for e in envelopes[1:])


async def test_a_late_snapshot_starts_the_record_where_it_stood(tmp_path: Path) -> None:
    """A sender that began after the execution did sends its record as it is by then."""
    envelopes, final = await worker_envelopes()
    store = SqliteStore(tmp_path / "s.db")
    server = Engine(store=store, load_entrypoints=False)
    late = Envelope(event=envelopes[2].event, record=final)
    assert server.receive(late) is Receipt.APPLIED
    store.flush()
    assert server.get(final.execution_id) == final
    assert server.receive(envelopes[-1]) is Receipt.DUPLICATE
    store.close()


async def test_step_changes_coalesced_away_still_reach_the_receiver() -> None:
    """A queue sent only the last progress event of a step, carrying the earlier changes."""
    envelopes, final = await worker_envelopes()
    progress = [e for e in envelopes if type(e.event) is ProgressEvent]
    last = progress[-1].event
    carried = [s for e in progress[:-1] for s in ([e.event.step] if e.event.step else [])]
    coalesced = msgspec.structs.replace(last, steps=carried)
    lifecycle = [e for e in envelopes if type(e.event) is not ProgressEvent]
    started = next(e for e in lifecycle if type(e.event) is StartedEvent)
    server = Engine(load_entrypoints=False)
    assert server.receive(lifecycle[0]) is Receipt.APPLIED
    assert server.receive(Envelope(event=started.event, after=lifecycle[0].event.seq))
    assert server.receive(Envelope(event=coalesced, after=started.event.seq)) is Receipt.APPLIED
    assert server.get(final.execution_id).steps == final.steps


async def test_an_execution_whose_worker_goes_silent_ends_failed_saying_so() -> None:
    envelopes, _ = await worker_envelopes()
    server = Engine(load_entrypoints=False)
    for envelope in envelopes[:3]:
        server.receive(envelope)
    execution_id = envelopes[0].event.execution_id
    assert server.fail_silent(3600) == []
    assert server.fail_silent(0) == [execution_id]
    record = server.get(execution_id)
    assert record.status == "failed"
    assert record.error is not None and record.error.type == "WorkerLost"
    assert f"pid {os.getpid()}" in record.error.message
    late = envelopes[3]
    assert server.receive(late) is Receipt.DUPLICATE  # a vanished worker cannot undo it


def test_the_wire_skips_event_types_a_newer_worker_sends(caplog: pytest.LogCaptureFixture) -> None:
    event = StartedEvent(
        execution_id="exec_x",
        seq=2,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        progress=ProgressSnapshot(
            current_step=0, total_steps=1, percentage=0.0, current_step_name="a"
        ),
    )
    body = encode_batch([Envelope(event=event, after=1)])
    newer = body.replace(b'"type":"started"', b'"type":"retried"', 1)
    with caplog.at_level(logging.WARNING, logger="stepstream.transports"):
        assert decode_batch(newer) == []
        assert decode_batch(newer) == []  # said once per type, not per event
    assert caplog.text.count("'retried'") == 1
    assert decode_batch(body)[0].event == event
    broken = body.replace(b'"seq":2', b'"seq":"two"', 1)
    with pytest.raises(msgspec.ValidationError):
        decode_batch(broken)


class _Relay:
    """A cancel relay that fails, as a broker that went away does, or passes requests on."""

    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.asked: list[str] = []

    async def request_cancel(self, execution_id: str) -> None:
        if self.fails:
            raise ConnectionError("broker went away")
        self.asked.append(execution_id)

    async def cancel_requests(self):  # never used by a server
        raise NotImplementedError
        yield


async def test_a_failing_cancel_relay_is_logged_and_the_engine_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelopes, _ = await worker_envelopes()
    running = [e for e in envelopes if not isinstance(e.event, CompletedEvent)]
    broken, working = _Relay(fails=True), _Relay(fails=False)
    async with Engine(load_entrypoints=False) as server:
        server.relay_cancels(broken)
        server.relay_cancels(working)
        for envelope in running:
            server.receive(envelope)
        execution_id = running[0].event.execution_id
        server.cancel(execution_id)
        await anyio.sleep(0.05)
        assert working.asked == [execution_id]
        assert "could not pass on the cancel of " + execution_id in caplog.text
        assert "broker went away" in caplog.text
        assert server.get(execution_id).status == "running"  # the worker has not heard yet
