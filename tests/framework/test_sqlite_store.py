"""The SQLite store keeps executions across restarts; a restarted engine picks up after a crash."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from stepstream import Engine, ErrorInfo, Pipeline, Progress, StoreError, make_plugin_manager
from stepstream.cli.loader import load_pipeline
from stepstream.model.events import (
    AnyEvent,
    CancelledEvent,
    CompletedEvent,
    Event,
    ExecutionRecord,
    FailedEvent,
    LogLine,
    ProgressEvent,
    ProgressSnapshot,
    StartedEvent,
    StatusEvent,
    StepState,
    encode,
)
from stepstream.model.fold import apply_event, status_of
from stepstream.stores import ExecutionStore, open_store
from stepstream.stores.memory import MemoryStore
from stepstream.stores.sqlite import SCHEMA_VERSION, SqliteStore, chunk_decoder

from fw_support import new_record

NEVER = 3600.0  # a flush interval that keeps everything queued until flush() or close()


class MirroredStore(SqliteStore):
    """A SQLite store that also feeds a memory store: its log is the reference for what to keep."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.mirror = MemoryStore()
        self.appended: list[Event] = []

    def append(self, record: ExecutionRecord, event: Event) -> None:
        self.appended.append(event)
        self.mirror.append(msgspec.structs.replace(record, steps=list(record.steps)), event)
        super().append(record, event)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "stepstream.db"


@pytest.fixture
def opened(db: Path) -> Iterator[Callable[..., SqliteStore]]:
    """Open stores on the test's file (or another) and close whatever is left open at the end."""
    stores: list[SqliteStore] = []

    def open_(
        path: Path | None = None, cls: type[SqliteStore] = SqliteStore, **kwargs: Any
    ) -> SqliteStore:
        store = cls(path or db, **kwargs)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _shapes(name: str = "shapes") -> Pipeline:
    p = Pipeline(name)

    @p.step
    def load(path: str, sizes: list[int], options: dict[str, float] | None = None) -> list[int]:
        return sizes

    @p.step(name="measure", weight=3)
    def measure(sizes: list[int]) -> int:
        return sum(sizes)

    @p.step
    def save(total: int) -> dict[str, int]:
        return {"total": total}

    return p


def _snapshot(step: int, percentage: float, **extra: Any) -> ProgressSnapshot:
    names = ["load", "measure", "save"]
    return ProgressSnapshot(
        current_step=step,
        total_steps=3,
        percentage=percentage,
        current_step_name=names[step],
        **extra,
    )


def _step(index: int, status: str, **extra: Any) -> StepState:
    names, weights = ["load", "measure", "save"], [1.0, 3.0, 1.0]
    return StepState(name=names[index], index=index, status=status, weight=weights[index], **extra)


def _memory_log(events: list[Event], after: int = 0) -> list[Event]:
    """The log a memory store keeps: every lifecycle event and, between two, the latest progress."""
    kept = [
        e
        for e, following in zip(events, [*events[1:], None], strict=True)
        if not (type(e) is ProgressEvent and type(following) is ProgressEvent)
    ]
    return [e for e in kept if e.seq > after]


def _raw_events(db: Path) -> dict[str, list[Event]]:
    """What the file itself holds, read past the store: every stored event by execution."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT execution_id, data FROM events ORDER BY execution_id, last_seq"
        ).fetchall()
    finally:
        conn.close()
    stored: dict[str, list[Event]] = {}
    for execution_id, data in rows:
        stored.setdefault(execution_id, []).extend(chunk_decoder.decode(data))
    return stored


def _raw_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT execution_id FROM executions")}
    finally:
        conn.close()


# -- what is kept ---------------------------------------------------------------------


def test_every_record_field_and_every_event_type_survive_a_reopen(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(cls=MirroredStore)
    engine = Engine(store=store, load_entrypoints=False)
    shapes = _shapes()
    inputs = {"path": "/data/in.csv", "sizes": [1, 2, 3], "options": {"ratio": 0.5}}
    t0 = _now() - timedelta(minutes=5)

    completed = new_record(engine, shapes, inputs, idempotency_key="order-42")
    cid = completed.execution_id
    for event in [
        StartedEvent(
            execution_id=cid, seq=2, started_at=t0, progress=_snapshot(0, 0.0, elapsed_seconds=0.0)
        ),
        ProgressEvent(
            execution_id=cid,
            seq=3,
            progress=_snapshot(0, 0.0),
            step=_step(0, "running", started_at=t0),
        ),
        ProgressEvent(
            execution_id=cid,
            seq=4,
            progress=_snapshot(
                0,
                10.0,
                items_done=1,
                items_total=2,
                message="half",
                elapsed_seconds=1.5,
                rate=0.667,
                eta_seconds=13.5,
            ),
        ),
        ProgressEvent(
            execution_id=cid,
            seq=5,
            progress=_snapshot(0, 20.0, items_done=2, items_total=2, elapsed_seconds=3.0),
            step=_step(
                0, "completed", started_at=t0, duration_seconds=3.0, items_done=2, items_total=2
            ),
        ),
        CompletedEvent(
            execution_id=cid,
            seq=9,
            finished_at=t0 + timedelta(seconds=9),
            progress=_snapshot(2, 100.0, elapsed_seconds=9.0, eta_seconds=0.0),
            outputs={"total": 6, "parts": [1, None, "x", 2.5, True], "nested": {"deep": {"a": []}}},
        ),
    ]:
        assert engine.ingest(event)

    failed = new_record(engine, shapes, {"path": "b", "sizes": []})
    fid = failed.execution_id
    engine.ingest(StartedEvent(execution_id=fid, seq=2, started_at=t0, progress=_snapshot(0, 0.0)))
    engine.ingest(
        ProgressEvent(
            execution_id=fid,
            seq=3,
            progress=_snapshot(1, 20.0),
            step=_step(1, "running", started_at=t0, attempt=2),
        )
    )
    engine.ingest(
        FailedEvent(
            execution_id=fid,
            seq=4,
            finished_at=t0 + timedelta(seconds=2),
            error=ErrorInfo(
                message="division by zero",
                type="ZeroDivisionError",
                step="measure",
                traceback="Traceback ...\n",
                attempts=2,
            ),
            progress=_snapshot(1, 20.0),
        )
    )

    cancelled = new_record(engine, shapes, {"path": "c", "sizes": [4]})
    engine.ingest(
        CancelledEvent(
            execution_id=cancelled.execution_id, seq=2, finished_at=_now(), reason="asked to"
        )
    )

    running = new_record(engine, shapes, {"path": "d", "sizes": [5]})
    rid = running.execution_id
    engine.ingest(StartedEvent(execution_id=rid, seq=2, started_at=t0, progress=_snapshot(0, 0.0)))
    engine.ingest(
        ProgressEvent(
            execution_id=rid, seq=3, progress=_snapshot(0, 5.0, items_done=7, message="going")
        )
    )

    pending = new_record(engine, shapes, {"path": "e", "sizes": []})
    records = [completed, failed, cancelled, running, pending]
    mirror = store.mirror

    # Every field of every struct is set to something other than its default somewhere.
    for struct, instances in [
        (ExecutionRecord, records),
        (ProgressSnapshot, [e.progress for e in store.appended if getattr(e, "progress", None)]),
        (StepState, [s for r in records for s in r.steps]),
        (ErrorInfo, [failed.error]),
    ]:
        for field in msgspec.structs.fields(struct):
            values = [getattr(i, field.name) for i in instances]
            assert any(v not in (None, 0, "", [], {}, field.default) for v in values), (
                struct,
                field.name,
            )
    kinds = {(type(e).__name__, getattr(e, "step", None) is None) for e in store.appended}
    assert {k for k, _ in kinds} == {
        "StatusEvent",
        "StartedEvent",
        "ProgressEvent",
        "CompletedEvent",
        "FailedEvent",
        "CancelledEvent",
    }
    assert ("ProgressEvent", True) in kinds and ("ProgressEvent", False) in kinds

    store.flush()  # endings are shown once kept
    assert store.by_idempotency_key("order-42") == completed
    assert store.by_idempotency_key("order-43") is None
    for record in records:
        assert store.get(record.execution_id) == record
        assert store.events(record.execution_id) == mirror.events(record.execution_id)
    store.close()

    reopened = opened()
    assert reopened.by_idempotency_key("order-42") == completed
    for record in records:
        assert reopened.get(record.execution_id) == record
        assert reopened.events(record.execution_id) == mirror.events(record.execution_id)
    assert [r.execution_id for r in reopened.list()] == [r.execution_id for r in reversed(records)]
    assert reopened.events(cid, after=4) == mirror.events(cid, after=4)


def test_progress_is_coalesced_before_writing_while_lifecycle_events_and_step_states_are_kept(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    counting = Pipeline("counting")

    @counting.step
    def count(n: int, progress: Progress) -> int:
        for i in range(n):
            progress.message = (
                f"item {i}"  # with no throttle interval, each one is a progress event
            )
        return n

    @counting.step
    def square(n: int, progress: Progress) -> int:
        for i in range(n):
            progress.message = f"squaring {i}"
        return n * n

    store = opened(cls=MirroredStore, flush_interval=0.005)

    async def main() -> ExecutionRecord:
        engine = Engine(store=store, progress_interval=0, load_entrypoints=False)
        return await engine.run(counting, {"n": 3000})

    record = anyio.run(main)
    execution_id = record.execution_id
    progress = [e for e in store.appended if type(e) is ProgressEvent]
    lifecycle = [e for e in store.appended if type(e) is not ProgressEvent]
    assert len(progress) >= 6000
    assert store.events(execution_id) == store.mirror.events(execution_id)
    store.close()

    reopened = opened()
    kept = reopened.get(execution_id)
    assert kept == record
    assert [s.status for s in kept.steps] == ["completed", "completed"]  # the record has the steps
    logged = reopened.events(execution_id)
    assert logged == store.mirror.events(execution_id)
    assert [e for e in logged if type(e) is not ProgressEvent] == lifecycle

    on_disk = _raw_events(db)[execution_id]
    assert [e for e in on_disk if type(e) is not ProgressEvent] == lifecycle
    assert len([e for e in on_disk if type(e) is ProgressEvent]) < len(progress) / 100


def test_a_long_step_leaves_one_progress_row_not_one_per_flush(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(flush_interval=NEVER, batch_size=10**9)
    engine = Engine(store=store, load_entrypoints=False)
    eid = new_record(engine, _shapes(), {"path": "a", "sizes": [1]}).execution_id
    engine.ingest(
        StartedEvent(execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0))
    )
    for seq in range(3, 13):
        engine.ingest(ProgressEvent(execution_id=eid, seq=seq, progress=_snapshot(0, seq)))
        store.flush()
    # seq 3 shares its chunk with the lifecycle events; each later lone one replaced the last
    assert [e.seq for e in _raw_events(db)[eid]] == [1, 2, 3, 12]
    assert [e.seq for e in store.events(eid)] == [1, 2, 12]
    engine.ingest(
        CompletedEvent(execution_id=eid, seq=13, finished_at=_now(), progress=_snapshot(2, 100.0))
    )
    store.flush()
    assert [e.seq for e in _raw_events(db)[eid]] == [1, 2, 3, 12, 13]
    assert [e.seq for e in store.events(eid)] == [1, 2, 12, 13]


def test_progress_alone_is_committed_by_the_clock_not_once_per_event(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(cls=CountedCommits, flush_interval=0.001, progress_interval=0.2)
    engine = Engine(store=store, load_entrypoints=False)
    eid = new_record(engine, _shapes(), {"path": "a", "sizes": [1]}).execution_id
    engine.ingest(
        StartedEvent(execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0))
    )
    store.flush()
    before, began = store.commits, time.monotonic()
    for seq in range(3, 103):  # each further apart than the flush interval
        engine.ingest(ProgressEvent(execution_id=eid, seq=seq, progress=_snapshot(0, seq / 10)))
        time.sleep(0.005)
    spent = time.monotonic() - began
    store.flush()
    assert store.commits - before <= spent / 0.2 + 2  # about one per progress_interval
    assert [e.seq for e in store.events(eid)] == [1, 2, 102]
    assert _raw_events(db)[eid][-1].seq == 102


def _queue_status(store: SqliteStore, record: ExecutionRecord, seq: int) -> None:
    store.append(record, status_of(record, seq=seq))


def _queue_line(store: SqliteStore, record: ExecutionRecord, seq: int) -> None:
    line = LogLine(n=1, at=_now(), stream="stdout", message="hello")
    store.append_logs(record.execution_id, [line], keep=10)


@pytest.mark.parametrize("lasting", [_queue_status, _queue_line], ids=["status", "log line"])
def test_what_is_not_progress_ends_the_writers_wait_for_progress(
    db: Path,
    opened: Callable[..., SqliteStore],
    lasting: Callable[[SqliteStore, ExecutionRecord, int], None],
) -> None:
    store = opened(flush_interval=0.001, progress_interval=NEVER)
    engine = Engine(store=store, load_entrypoints=False)
    record = new_record(engine, _shapes(), {"path": "a", "sizes": [1]})
    eid = record.execution_id
    engine.ingest(
        StartedEvent(execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0))
    )
    store.flush()
    engine.ingest(ProgressEvent(execution_id=eid, seq=3, progress=_snapshot(0, 1.0)))
    time.sleep(0.05)  # progress alone waits an hour
    assert _raw_events(db)[eid][-1].seq == 2
    lasting(store, record, 4)
    deadline = time.monotonic() + 20  # no flush: the writer's own clock commits it
    while _raw_events(db)[eid][-1].seq < 3:
        assert time.monotonic() < deadline, "the lasting change did not end the wait"
        time.sleep(0.01)


def test_reads_include_queued_events_but_an_ending_only_once_it_is_written(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(cls=HeldCommits, flush_interval=NEVER, batch_size=10**9)
    store.held = (StartedEvent, CompletedEvent)  # both ask for a commit at once
    engine = Engine(store=store, load_entrypoints=False)
    record = new_record(engine, _shapes(), {"path": "a", "sizes": [1]})
    eid = record.execution_id
    engine.ingest(
        StartedEvent(execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0))
    )
    engine.ingest(ProgressEvent(execution_id=eid, seq=3, progress=_snapshot(0, 1.0)))
    engine.ingest(ProgressEvent(execution_id=eid, seq=4, progress=_snapshot(0, 2.0)))

    assert _raw_ids(db) == set()  # nothing is written yet...
    assert store.get(eid) == record  # ...but every read sees it
    assert [r.execution_id for r in store.list()] == [eid]
    assert [r.execution_id for r in store.list(status="running")] == [eid]
    assert [r.execution_id for r in store.unfinished()] == [eid]
    assert [e.seq for e in store.events(eid, after=2)] == [4]
    assert [e.seq for e in store.events(eid)] == [1, 2, 4]  # served from the queue, no flush
    assert _raw_ids(db) == set()

    engine.ingest(
        ProgressEvent(
            execution_id=eid, seq=5, progress=_snapshot(0, 3.0), step=_step(0, "completed")
        )
    )
    engine.ingest(ProgressEvent(execution_id=eid, seq=6, progress=_snapshot(1, 21.0)))
    assert [e.seq for e in store.events(eid)] == [1, 2, 6]  # the latest progress replaces steps
    assert store.get(eid).steps[0].status == "completed"  # ...whose state the record keeps

    kept: list[str] = []
    engine.ingest(
        CompletedEvent(execution_id=eid, seq=7, finished_at=_now(), progress=_snapshot(2, 100.0))
    )
    store.on_kept(lambda: kept.append(store.get(eid).status))
    # An ending waits, unseen, until it is written: a crash now must not take it back.
    assert record.status == "completed"  # the engine's own record has it...
    assert store.get(eid).status == "running"  # ...readers do not yet
    assert [r.execution_id for r in store.list(status="completed")] == []
    assert [e.seq for e in store.events(eid)] == [1, 2, 6]
    assert kept == []
    store.hold.set()  # the commits asked for at once were held until now
    store.flush()
    assert kept == ["completed"]  # the callback runs after the commit, and sees it
    assert store.get(eid) == record
    assert [e.seq for e in store.events(eid)] == [1, 2, 6, 7]
    store.close()
    reopened = opened()
    assert [e.seq for e in reopened.events(eid)] == [1, 2, 6, 7]
    assert reopened.get(eid) == record


def test_a_started_execution_is_on_disk_at_once_so_a_restart_never_runs_it_again(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(flush_interval=NEVER, batch_size=10**9)
    engine = Engine(store=store, load_entrypoints=False)
    eid = new_record(engine, _shapes(), {"path": "a", "sizes": [1]}).execution_id
    store.flush()
    engine.ingest(
        StartedEvent(execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0))
    )
    deadline = time.monotonic() + 20  # the flush interval is an hour: only urgency writes it
    while sqlite3.connect(db).execute("SELECT status FROM executions").fetchone()[0] != "running":
        assert time.monotonic() < deadline, "the started event was not written at once"
        time.sleep(0.01)


def test_concurrent_reads_never_skip_or_repeat_an_event_while_the_writer_flushes(
    opened: Callable[..., SqliteStore],
) -> None:
    store = opened(flush_interval=0.001, batch_size=64)
    engine = Engine(store=store, load_entrypoints=False)
    eid = new_record(engine, _shapes(), {"path": "a", "sizes": [1]}).execution_id
    produced: list[Event] = [store.events(eid)[0]]
    total = 20_000

    def produce() -> None:
        for seq in range(2, total):
            if seq == 2:
                event: Event = StartedEvent(
                    execution_id=eid, seq=2, started_at=_now(), progress=_snapshot(0, 0.0)
                )
            elif seq % 7 == 0:
                event = ProgressEvent(
                    execution_id=eid,
                    seq=seq,
                    progress=_snapshot(1, 1.0),
                    step=_step(seq % 3, "running"),
                )
            else:
                event = ProgressEvent(
                    execution_id=eid, seq=seq, progress=_snapshot(1, 1.0, items_done=seq)
                )
            produced.append(event)  # before ingest: a read that starts later must see it
            engine.ingest(event)

    producer = threading.Thread(target=produce)
    producer.start()
    rng = random.Random(4)
    checked = 0
    while producer.is_alive() or checked < 50:
        known = len(produced) - 1  # the last one may still be on its way in
        after = rng.randrange(0, max(1, produced[known - 1].seq)) if known > 1 else 0
        got = store.events(eid, after)
        seqs = [e.seq for e in got]
        assert seqs == sorted(set(seqs)), "events out of order or repeated"
        end = next(i for i, e in enumerate(produced) if e.seq == seqs[-1]) + 1
        assert end >= known, "a read missed events appended before it started"
        assert got == _memory_log(produced[:end], after)
        checked += 1
    producer.join()
    assert store.events(eid) == _memory_log(produced)
    store.close()
    assert opened().events(eid) == _memory_log(produced)


def _open_handles(path: Path) -> int:
    """How many file descriptors of this process have the database file itself open."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path))


def test_reads_from_threads_that_come_and_go_reuse_a_few_connections(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened()
    engine = Engine(store=store, load_entrypoints=False)
    eid = new_record(engine, _shapes(), {"path": "a", "sizes": [1]}).execution_id
    store.flush()
    baseline = _open_handles(db)  # the writer's
    together = threading.Barrier(8)
    failures: list[BaseException] = []

    def read() -> None:
        try:
            together.wait()  # eight reads at once need eight connections
            for _ in range(20):
                assert store.get(eid) is not None and len(store.events(eid)) == 1
        except BaseException as exc:
            failures.append(exc)

    for _ in range(10):  # like anyio's worker threads: each thread reads, then ends
        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    # 80 threads read; at most the 8 reading at once hold a handle (SQLite may keep a closed
    # connection's handle for reuse while another connection of the process locks the file)
    assert _open_handles(db) <= baseline + 8
    store.close()
    assert _open_handles(db) == 0


def test_close_flushes_is_idempotent_and_refuses_later_use(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(flush_interval=NEVER, batch_size=10**9)
    record = new_record(
        Engine(store=store, load_entrypoints=False), _shapes(), {"path": "a", "sizes": [1]}
    )
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get(record.execution_id)
    with pytest.raises(StoreError, match="closed"):
        store.append(
            record,
            StatusEvent(
                execution_id=record.execution_id,
                seq=2,
                status="pending",
                pipeline="shapes",
                progress=None,
            ),
        )
    assert opened().get(record.execution_id) == record


# -- listing ----------------------------------------------------------------------------


def test_list_pages_newest_first_with_filters_from_queue_and_file_alike(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(flush_interval=NEVER, batch_size=10**9)
    engine = Engine(store=store, load_entrypoints=False)
    alpha, beta = _shapes(), _shapes("beta")
    records = []
    for i in range(30):
        record = new_record(engine, beta if i % 3 == 0 else alpha, {"path": str(i), "sizes": [i]})
        if i % 2 == 0:
            engine.ingest(
                StartedEvent(
                    execution_id=record.execution_id,
                    seq=2,
                    started_at=_now(),
                    progress=_snapshot(0, 0.0),
                )
            )
        records.append(record)
        if i == 14:
            store.flush()  # half on disk, half still queued

    def pages(source: ExecutionStore, **filters: Any) -> list[str]:
        seen: list[str] = []
        before = None
        while True:
            page = source.list(limit=4, before=before, **filters)
            assert len(page) <= 4
            seen += [r.execution_id for r in page]
            if len(page) < 4:
                return seen
            before = page[-1].execution_id

    def expected(status: str | None = None, pipeline: str | None = None) -> list[str]:
        return [
            r.execution_id
            for r in reversed(records)
            if (status is None or r.status == status)
            and (pipeline is None or r.pipeline == pipeline)
        ]

    combos = [
        {},
        {"status": "running"},
        {"status": "pending"},
        {"pipeline": "beta"},
        {"pipeline": "beta", "status": "pending"},
    ]
    for filters in combos:
        assert pages(store, **filters) == expected(**filters), filters
    store.close()
    reopened = opened()
    for filters in combos:
        assert pages(reopened, **filters) == expected(**filters), filters
    assert reopened.list(limit=3) == list(reversed(records))[:3]


# -- restarts -------------------------------------------------------------------------

WORKER = """
import sys
import time

import anyio

from stepstream import Engine, Pipeline, Progress
from stepstream.model.events import ProgressEvent
from stepstream.stores.sqlite import SqliteStore

slow = Pipeline("slow")


@slow.step
def prepare(items: int) -> int:
    return items


@slow.step
def work(items: int, progress: Progress) -> int:
    progress.total = items
    for _ in range(items):
        time.sleep(0.002)
        progress.advance()
    return items


@slow.step
def report(items: int) -> dict:
    return {"items": items}


async def main(path: str) -> None:
    # Nothing is written by the clock: only the explicit flush below, so what follows it is
    # exactly what a crash loses (events clients saw that were never written).
    store = SqliteStore(path, flush_interval=60)
    engine = Engine(store=store, max_concurrent=1, progress_interval=0.005, load_entrypoints=False)
    engine.add_pipeline(slow)
    async with engine:
        finished = await engine.run(slow, {"items": 2})
        print("completed", finished.execution_id, flush=True)
        watch = engine.watch()
        running = engine.submit(slow, {"items": 1_000_000})
        waiting = [engine.submit(slow, {"items": 3}) for _ in range(2)]
        print("running", running.execution_id, flush=True)
        for record in waiting:
            print("pending", record.execution_id, flush=True)
        shown = 0
        async for event in watch:
            print("seen", event.execution_id, event.seq, flush=True)
            if event.execution_id == running.execution_id and isinstance(event, ProgressEvent):
                shown += 1
                if shown == 5:
                    store.flush()
                    print("flushed", running.execution_id, flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
"""


def _run_and_kill(script: Path, db: Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Run the worker until its long execution has shown unwritten progress, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ids: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    shown_after_flush = 0
    try:
        assert proc.stdout is not None
        while shown_after_flush < 20:
            line = proc.stdout.readline()
            assert line, f"worker exited early: {proc.stderr.read() if proc.stderr else ''}"
            kind, execution_id, *rest = line.split()
            if kind == "seen":
                seen[execution_id] = max(seen.get(execution_id, 0), int(rest[0]))
                shown_after_flush += "flushed" in ids
            else:
                ids.setdefault(kind, []).append(execution_id)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    return ids, seen


@pytest.mark.anyio
async def test_after_a_sigkill_running_executions_fail_pending_ones_run_and_no_seq_repeats(
    tmp_path: Path, db: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ids, seen = _run_and_kill(script, db)
    (completed,), (running,), waiting = ids["completed"], ids["running"], ids["pending"]

    store = SqliteStore(db)  # the dead process's lock went with it
    before = {r.execution_id: r for r in store.list()}
    assert {i: r.status for i, r in before.items()} == {
        completed: "completed",
        running: "running",
        waiting[0]: "pending",
        waiting[1]: "pending",
    }
    logged_before = {i: store.events(i) for i in before}
    assert logged_before[completed][-1].seq == before[completed].last_seq
    assert before[running].progress is not None and before[running].progress.items_done
    assert seen[running] > before[running].last_seq, "clients saw events the crash lost"

    slow = load_pipeline(f"{script}:slow")
    engine = Engine(store=store, max_concurrent=1, load_entrypoints=False)
    engine.add_pipeline(slow)
    restarted_at = _now()
    async with engine:
        failed = engine.get(running)
        assert failed.status == "failed"
        with anyio.fail_after(30):
            requeued = [await engine.wait(i) for i in waiting]
            fresh = engine.submit(slow, {"items": 1})
            await engine.wait(fresh.execution_id)
    store.close()

    assert failed.error is not None and failed.error.type == "ServerStopped"
    assert failed.error.step == "work"
    match = re.fullmatch(
        r"the server stopped while this execution ran \(last event at (\S+)\); "
        r"it was marked failed at (\S+) on restart",
        failed.error.message,
    )
    assert match, failed.error.message
    last_event, marked = (datetime.fromisoformat(t) for t in match.groups())
    assert before[running].started_at < last_event <= restarted_at
    assert restarted_at - timedelta(milliseconds=1) < marked
    assert abs(failed.finished_at - marked) < timedelta(milliseconds=1)

    assert [r.status for r in requeued] == ["completed", "completed"]
    assert [r.outputs for r in requeued] == [{"items": 3}, {"items": 3}]
    assert requeued[0].started_at < requeued[1].started_at  # first in, first out
    assert fresh.execution_id > max(before), "execution ids never repeat and keep their order"

    reopened = SqliteStore(db)
    try:
        assert reopened.unfinished() == []
        assert reopened.get(completed) == before[completed]
        assert reopened.events(completed) == logged_before[completed]
        for execution_id in (running, *waiting):
            events = reopened.events(execution_id)
            seqs = [e.seq for e in events]
            assert seqs == sorted(set(seqs)), "no seq repeats within an execution"
            old = [e for e in events if e.seq <= before[execution_id].last_seq]
            new = [e for e in events if e.seq > before[execution_id].last_seq]
            assert old == logged_before[execution_id], (
                "what was stored before the crash is kept as it was"
            )
            assert min(e.seq for e in new) > seen.get(execution_id, 0), (
                "a seq a client saw is never used again"
            )
        assert isinstance(reopened.events(running)[-1], FailedEvent)
        for execution_id in waiting:
            events = reopened.events(execution_id)
            assert [type(e).__name__ for e in events[:3]] == [
                "StatusEvent",
                "StatusEvent",
                "StartedEvent",
            ]
            assert isinstance(events[-1], CompletedEvent)
    finally:
        reopened.close()


@pytest.mark.anyio
async def test_recovery_fails_pending_executions_that_cannot_run_any_more(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    def pipeline(name: str, *, input_type: type = int, extra_step: bool = False) -> Pipeline:
        p = Pipeline(name)

        def first(n):  # type: ignore[no-untyped-def]
            return n

        first.__annotations__ = {"n": input_type}
        p.step(name="first")(first)
        if extra_step:
            p.step(name="second")(lambda n: n)
        return p

    store = opened()
    engine = Engine(store=store, load_entrypoints=False)
    for name in ("gone", "retyped", "reshaped", "kept"):
        engine.add_pipeline(pipeline(name))
    queued = {
        name: engine.create(name, {"n": 3}).execution_id
        for name in ("gone", "retyped", "reshaped", "kept")
    }
    runner = engine.create("kept", {"n": 4}).execution_id
    started = _now()
    engine.ingest(
        StartedEvent(
            execution_id=runner,
            seq=2,
            started_at=started,
            progress=_snapshot(0, 0.0, elapsed_seconds=0.0),
        )
    )
    engine.ingest(
        ProgressEvent(execution_id=runner, seq=3, progress=_snapshot(0, 40.0, elapsed_seconds=12.5))
    )
    store.close()

    store = opened()
    engine = Engine(store=store, load_entrypoints=False)
    engine.add_pipeline(pipeline("retyped", input_type=list[int]))
    engine.add_pipeline(pipeline("reshaped", extra_step=True))
    engine.add_pipeline(pipeline("kept"))
    async with engine:
        with anyio.fail_after(10):
            kept = await engine.wait(queued["kept"])
        records = {name: engine.get(i) for name, i in queued.items()}
        stopped = engine.get(runner)

    assert kept.status == "completed" and kept.outputs == 3
    errors = {name: r.error for name, r in records.items() if name != "kept"}
    assert {name: e.type for name, e in errors.items() if e} == {
        "gone": "PipelineNotFound",
        "retyped": "InputError",
        "reshaped": "PipelineChanged",
    }
    assert "pipeline 'gone' is not registered after the restart" in errors["gone"].message
    assert (
        "no longer fit after the restart: invalid inputs for pipeline 'retyped': n: expected list"
        in errors["retyped"].message
    )
    assert "other steps than when this execution was queued" in errors["reshaped"].message
    assert all(r.status == "failed" for name, r in records.items() if name != "kept")

    assert stopped.status == "failed" and stopped.error is not None
    expected_last = (started + timedelta(seconds=12.5)).isoformat(timespec="milliseconds")
    assert f"(last event at {expected_last})" in stopped.error.message


# -- retention and history ----------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, opened: Callable[..., SqliteStore]) -> ExecutionStore:
    return MemoryStore() if request.param == "memory" else opened()


def _finished_history(store: ExecutionStore) -> list[ExecutionRecord]:
    """Eight executions finished hours apart (oldest first), one running and one pending."""
    engine = Engine(store=store, load_entrypoints=False)
    shapes = _shapes()
    records = []
    for i in range(8):
        record = new_record(engine, shapes, {"path": str(i), "sizes": [i]})
        eid = record.execution_id
        finished_at = _now() - timedelta(hours=8 - i)
        engine.ingest(
            StartedEvent(
                execution_id=eid, seq=2, started_at=finished_at, progress=_snapshot(0, 0.0)
            )
        )
        for index in range(3):
            engine.ingest(
                ProgressEvent(
                    execution_id=eid,
                    seq=3 + index,
                    progress=_snapshot(index, 20.0 * index),
                    step=_step(index, "completed", duration_seconds=float(index + i)),
                )
            )
        terminal = CompletedEvent if i != 5 else CancelledEvent
        engine.ingest(
            terminal(execution_id=eid, seq=6, finished_at=finished_at, progress=_snapshot(2, 100.0))
        )
        records.append(record)
    running = new_record(engine, shapes, {"path": "r", "sizes": []})
    engine.ingest(
        StartedEvent(
            execution_id=running.execution_id, seq=2, started_at=_now(), progress=_snapshot(0, 0.0)
        )
    )
    records.append(running)
    records.append(new_record(engine, shapes, {"path": "p", "sizes": []}))
    store.flush()  # endings are shown once kept
    return records


def test_unfinished_lists_pending_and_running_oldest_first(any_store: ExecutionStore) -> None:
    records = _finished_history(any_store)
    assert [r.execution_id for r in any_store.unfinished()] == [
        r.execution_id for r in records[-2:]
    ]
    assert [r.status for r in any_store.unfinished()] == ["running", "pending"]


def test_step_durations_come_from_the_last_completed_executions(any_store: ExecutionStore) -> None:
    _finished_history(any_store)
    # completed executions are i = 0..7 except the cancelled i = 5; newest first: 7, 6, 4
    assert any_store.step_durations("shapes", limit=3) == {
        "load": [7.0, 6.0, 4.0],
        "measure": [8.0, 7.0, 5.0],
        "save": [9.0, 8.0, 6.0],
    }
    assert any_store.step_durations("nothing") == {}


def test_prune_removes_the_oldest_finished_executions_and_never_unfinished_ones(
    any_store: ExecutionStore, db: Path
) -> None:
    records = _finished_history(any_store)
    ids = [r.execution_id for r in records]
    assert any_store.prune(keep_count=None, keep_age_seconds=None) == 0
    assert any_store.prune(keep_count=5, keep_age_seconds=None) == 3
    assert [r.execution_id for r in any_store.list()] == list(reversed(ids[3:]))
    # finished 8-i hours ago: keeping 3.5 hours leaves i = 5, 6, 7
    assert any_store.prune(keep_count=None, keep_age_seconds=3.5 * 3600) == 2
    assert any_store.prune(keep_count=0, keep_age_seconds=None) == 3
    assert [r.execution_id for r in any_store.list()] == list(reversed(ids[-2:]))
    for execution_id in ids[:-2]:
        assert any_store.get(execution_id) is None
        assert any_store.events(execution_id) == []
    if isinstance(any_store, SqliteStore):
        any_store.close()
        assert set(_raw_events(db)) == _raw_ids(db) == set(ids[-2:])


# -- opening ---------------------------------------------------------------------------


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"name,value\n" + os.urandom(4096))


def _someone_elses_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()


def _newer_schema(path: Path) -> None:
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


@pytest.mark.parametrize(
    ("prepare", "problem"),
    [
        (_not_a_database, "it is not a SQLite database"),
        (
            _someone_elses_database,
            r"it is a SQLite database but not a stepstream store \(tables: users\)",
        ),
        (
            _newer_schema,
            f"its schema version is 99, this stepstream reads version {SCHEMA_VERSION}",
        ),
    ],
)
def test_a_file_that_is_not_our_store_is_refused_and_left_alone(
    db: Path, prepare: Callable[[Path], None], problem: str
) -> None:
    prepare(db)
    content = db.read_bytes()
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{db}", make_plugin_manager(load_entrypoints=False).store_schemes())
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(
        rf"^cannot open store {re.escape(str(db))}: {problem}; .*choose another path$", message
    ), message
    assert db.read_bytes() == content
    db.unlink()
    SqliteStore(db).close()  # the refusal let go of the file


@pytest.mark.parametrize(
    ("relative", "problem"),
    [
        (
            "missing/dir/x.db",
            "the directory {dir} does not exist; create it or choose another path",
        ),
        ("a-file/x.db", "{dir} is not a directory; choose another path"),
        ("a-dir", "it is a directory; name a file such as {path}/stepstream.db"),
    ],
)
def test_an_unusable_path_is_a_one_line_error_naming_it(
    tmp_path: Path, relative: str, problem: str
) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    path = tmp_path / relative
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{path}", make_plugin_manager(load_entrypoints=False).store_schemes())
    assert str(caught.value) == f"cannot open store {path}: " + problem.format(
        dir=path.parent, path=path
    )


def test_a_directory_without_write_permission_is_a_one_line_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    path = locked / "x.db"
    read, write = os.pipe()
    child = os.fork()
    if (
        child == 0
    ):  # pragma: no cover - runs in the child; root ignores permissions, so drop to nobody
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                SqliteStore(path).close()
                message = "opened"
            except StoreError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    assert message.startswith(f"cannot open store {path}: permission denied in ")
    assert message.endswith("; make it writable for this user or choose another path")
    assert not path.exists()


def test_store_urls_name_relative_or_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plugins = make_plugin_manager(load_entrypoints=False)
    relative = open_store("sqlite:///here.db", plugins.store_schemes())
    try:
        assert isinstance(relative, SqliteStore) and relative.path == str(tmp_path / "here.db")
    finally:
        relative.close()
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db", plugins.store_schemes())
    try:
        assert absolute.path == str(tmp_path / "abs.db") and (tmp_path / "abs.db").exists()
    finally:
        absolute.close()
    for url in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite://here.db"):
        with pytest.raises(
            StoreError, match=r"does not name a SQLite file; use sqlite:///relative/path\.db"
        ):
            open_store(url, plugins.store_schemes())


# -- many processes ----------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from stepstream.stores.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    print("open", flush=True)
    sys.stdin.read()
    """
)


def test_a_second_process_on_the_same_file_is_refused_until_the_first_is_gone(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(StoreError) as caught:
            SqliteStore(db)
        assert str(caught.value) == (
            f"store {db} is in use by another stepstream process (pid {holder.pid}); "
            "stop it or point this one at another file"
        )
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()  # type: ignore[union-attr]
        holder.stdout.close()  # type: ignore[union-attr]
    store = opened()
    with pytest.raises(StoreError, match=r"is in use by this process; stop it"):
        SqliteStore(db)
    store.close()
    opened().close()


def test_a_pruned_finished_record_is_gone_even_after_it_was_read(tmp_path) -> None:
    """Finished records are cached for polls; pruning must not leave a stale copy behind."""
    store = SqliteStore(tmp_path / "cache.db")
    try:
        engine = Engine(store=store, load_entrypoints=False)
        pipeline = Pipeline("tiny")

        @pipeline.step
        def only() -> int:
            return 1

        ids = [anyio.run(engine.run, pipeline).execution_id for _ in range(3)]
        store.flush()
        assert all(store.get(i).status == "completed" for i in ids)
        assert store.get(ids[0]) is store.get(ids[0])  # the decoded finished record is reused
        assert store.prune(keep_count=1) == 2
        assert [store.get(i) for i in ids[:2]] == [None, None]
        assert store.get(ids[2]).status == "completed"
    finally:
        store.close()


VERSION_1 = """
CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL,
    finished_at REAL, record BLOB NOT NULL
);
CREATE INDEX executions_by_status ON executions (status, execution_id);
CREATE INDEX executions_by_pipeline ON executions (pipeline, execution_id);
CREATE INDEX executions_by_pipeline_status ON executions (pipeline, status, execution_id);
CREATE INDEX executions_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX executions_finished_ids ON executions (execution_id) WHERE finished_at IS NOT NULL;
CREATE TABLE events (
    execution_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (execution_id, last_seq)
);
PRAGMA application_id = 1398035284;
PRAGMA user_version = 1;
"""


def test_a_store_written_by_the_first_schema_is_migrated_and_keeps_its_executions(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    record = new_record(Engine(load_entrypoints=False), _shapes(), {"path": "a", "sizes": [1]})
    row = (record.execution_id, record.pipeline, record.status, None, encode(record))
    conn = sqlite3.connect(db)
    conn.executescript(VERSION_1)
    conn.execute("INSERT INTO executions VALUES (?, ?, ?, ?, ?)", row)
    conn.commit()
    conn.close()

    store = opened()
    assert store.get(record.execution_id) == record
    assert store.by_idempotency_key("k") is None
    engine = Engine(store=store, load_entrypoints=False)
    keyed = new_record(engine, _shapes(), {"path": "b", "sizes": [2]}, idempotency_key="k")
    store.close()
    reopened = opened()
    assert reopened.by_idempotency_key("k") == keyed
    version = sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


@pytest.mark.parametrize("link", ["symlink", "hardlink", "dotdot"])
def test_every_name_of_the_file_meets_the_same_lock(
    db: Path, opened: Callable[..., SqliteStore], link: str
) -> None:
    opened()
    other = db.with_name(f"{link}.db")
    if link == "symlink":
        other.symlink_to(db)
    elif link == "hardlink":
        os.link(db, other)
    else:
        (db.parent / "sub").mkdir()
        other = db.parent / "sub" / ".." / db.name
    with pytest.raises(StoreError, match=r"is in use by this process; stop it"):
        SqliteStore(other)


class HeldCommits(SqliteStore):
    """A SQLite store whose commits of an ending (or of `held` events) wait until the test
    lets them through."""

    held: tuple[type[Event], ...] = (CompletedEvent,)

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.hold = threading.Event()
        self.ended = threading.Event()  # the engine has appended an ending

    def append(self, record: ExecutionRecord, event: Event) -> None:
        super().append(record, event)
        if type(event) is CompletedEvent:
            self.ended.set()

    def _commit(self, batch: dict[str, Any], lines: dict[str, Any]) -> dict[str, Event | None]:
        if any(isinstance(e, self.held) for tail in batch.values() for e in tail.events):
            self.hold.wait(20)
        return super()._commit(batch, lines)


@pytest.mark.anyio
async def test_nobody_hears_of_an_ending_before_it_is_written(db: Path) -> None:
    store = HeldCommits(db)
    quick = Pipeline("quick-end")

    @quick.step
    def only() -> int:
        return 7

    try:
        async with Engine(store=store, load_entrypoints=False) as engine:
            execution_id = engine.submit(quick).execution_id
            async with engine.subscribe(execution_id) as events:
                assert await anyio.to_thread.run_sync(store.ended.wait, 20)  # recorded ...
                seen: list[str] = []
                with anyio.move_on_after(0.3):
                    async for event in events:
                        seen.append(event.__struct_config__.tag)
                assert "completed" not in seen  # ... but nobody was told: it is not written
                assert engine.get(execution_id).status == "running"
                assert not isinstance(engine.events(execution_id)[-1], CompletedEvent)
                store.hold.set()
                with anyio.fail_after(20):
                    async for event in events:
                        seen.append(event.__struct_config__.tag)
                assert seen[-1] == "completed"
            record = await engine.wait(execution_id)
        assert record.status == "completed" and record.outputs == 7
    finally:
        store.hold.set()
        store.close()
    reopened = SqliteStore(db)
    assert reopened.get(execution_id).status == "completed"  # type: ignore[union-attr]
    reopened.close()


DATA = Path(__file__).parent / "data"


class _Expected(msgspec.Struct):
    """What the schema-3 store read back from `data/store-v3.db` before it was closed."""

    records: dict[str, ExecutionRecord]
    events: dict[str, list[AnyEvent]]
    logs: dict[str, list[LogLine]]
    newest_first: list[str] = msgspec.field(name="list")


def test_a_store_written_by_schema_3_is_migrated_and_reads_back_identically(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    # store-v3.db was written by the schema-3 store (commit 32aa221): a completed run, a keyed
    # pending one, a failed, a running (with log lines) and a cancelled execution.
    shutil.copy(DATA / "store-v3.db", db)
    expected = msgspec.json.decode((DATA / "store-v3.json").read_bytes(), type=_Expected)
    store = opened()
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    for execution_id, record in expected.records.items():
        assert store.get(execution_id) == record
        assert store.events(execution_id) == expected.events[execution_id]
        assert store.logs(execution_id) == expected.logs[execution_id]
    assert [r.execution_id for r in store.list()] == expected.newest_first
    assert store.by_idempotency_key("order-7") == expected.records[expected.newest_first[3]]
    running = store.unfinished()[-1]
    assert running.status == "running"
    engine = Engine(store=store, load_entrypoints=False)
    finished_at = running.started_at + timedelta(seconds=5)  # type: ignore[operator]
    engine.ingest(CancelledEvent(execution_id=running.execution_id, seq=5, finished_at=finished_at))
    store.close()
    reopened = opened()
    kept = reopened.get(running.execution_id)
    assert kept.status == "cancelled" and kept.steps[0].status == "cancelled"
    completed = expected.records[expected.newest_first[-1]]
    assert reopened.step_durations("shapes") == {
        s.name: [s.duration_seconds] for s in completed.steps
    }


def _wide_record(steps: int) -> ExecutionRecord:
    """A new pending execution of `steps` steps, as the recorder creates one."""
    return ExecutionRecord(
        execution_id=f"exec_wide_{steps:08d}",
        pipeline="wide",
        status="pending",
        progress=None,
        inputs={"n": steps},
        created_at=_now(),
        steps=[
            StepState(name=f"s{i}", index=i, status="pending", weight=1.0) for i in range(steps)
        ],
    )


def test_a_flush_writes_what_changed_not_the_steps_already_stored(
    db: Path, opened: Callable[..., SqliteStore]
) -> None:
    store = opened(flush_interval=NEVER, batch_size=10**9)
    wal = Path(f"{db}-wal")

    def written(record: ExecutionRecord, *events: Event) -> int:
        """Bytes the write-ahead log takes for these events, appended and flushed."""
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for event in events:
            apply_event(record, event)
            store.append(record, event)
        store.flush()
        return wal.stat().st_size

    def step_events(record: ExecutionRecord, index: int) -> list[Event]:
        """Step `index` starts, reports items and completes: what a step's run appends."""
        at, seq, step = _now(), record.last_seq, record.steps[index]
        progress = ProgressSnapshot(
            current_step=index,
            total_steps=len(record.steps),
            percentage=50.0,
            current_step_name=step.name,
        )
        running = msgspec.structs.replace(step, status="running", started_at=at)
        done = msgspec.structs.replace(running, status="completed", duration_seconds=0.1)
        return [
            ProgressEvent(
                execution_id=record.execution_id, seq=seq + 1, progress=progress, step=running
            ),
            ProgressEvent(execution_id=record.execution_id, seq=seq + 2, progress=progress),
            ProgressEvent(
                execution_id=record.execution_id, seq=seq + 3, progress=progress, step=done
            ),
        ]

    per_flush: dict[int, list[int]] = {}
    for steps in (100, 20_000):
        record = _wide_record(steps)
        created = written(record, status_of(record, seq=1))
        started = StartedEvent(
            execution_id=record.execution_id,
            seq=2,
            started_at=_now(),
            progress=ProgressSnapshot(
                current_step=0, total_steps=steps, percentage=0.0, current_step_name="s0"
            ),
        )
        written(record, started)
        per_flush[steps] = [written(record, *step_events(record, i)) for i in (0, 1, 50, 99)]
        assert created > 20 * max(per_flush[steps]) or steps == 100  # the first write is whole
        assert store.get(record.execution_id) == record
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0] + 24  # a WAL frame
    # A step's events cost the same few pages whether 100 or 20,000 steps are stored (a new
    # or growing row may split a page, and a larger tree may be a level deeper: a page more).
    assert statistics.median(per_flush[100]) <= 6 * page
    assert statistics.median(per_flush[20_000]) <= statistics.median(per_flush[100]) + page
    assert max(per_flush[20_000]) <= 10 * page


class CountedCommits(SqliteStore):
    """A SQLite store that counts its commits; one that fails while `broken`, and the first
    one waits for `go_on` once `hold_first` is set."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.commits = 0
        self.broken = False
        self.hold_first = False
        self.committing = threading.Event()
        self.go_on = threading.Event()

    def _commit(self, batch: dict[str, Any], lines: dict[str, Any]) -> dict[str, Event | None]:
        if self.broken:
            raise sqlite3.OperationalError("database or disk is full")
        self.commits += 1
        if self.hold_first and self.commits == 1:
            self.committing.set()
            self.go_on.wait(20)
        return super()._commit(batch, lines)


waited = Pipeline("waited", description="Created, never run: what a submission waits to keep")


@waited.step
def never_runs() -> None:
    """Not run: the tests only create executions."""


@pytest.mark.anyio
async def test_submissions_waiting_at_once_share_one_commit(db: Path) -> None:
    store = CountedCommits(db)
    store.hold_first = True
    try:
        async with Engine(store=store, load_entrypoints=False) as engine:
            first = engine.create(waited).execution_id
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(engine.kept)
                assert await anyio.to_thread.run_sync(store.committing.wait, 20)
                later = [engine.create(waited).execution_id for _ in range(20)]
                for _ in later:
                    tasks.start_soon(engine.kept)
                store.go_on.set()
            # One commit for the first, one for the twenty that waited while it was written,
            # and every one of them is in the file once its wait returned.
            assert store.commits == 2
            assert _ids_in_file(db) == [first, *later]
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_failed_commit_is_heard_at_once_and_the_write_is_retried(db: Path) -> None:
    store = CountedCommits(db, flush_interval=0.01)
    try:
        async with Engine(store=store, load_entrypoints=False) as engine:
            store.broken = True
            execution_id = engine.create(waited).execution_id
            published: list[str] = []
            store.on_kept(lambda: published.append("kept"))  # as the recorder's: no `failed`
            with anyio.fail_after(20), pytest.raises(StoreError, match="disk is full"):
                await engine.kept()
            assert published == []
            store.broken = False
            with anyio.fail_after(20):
                await engine.kept()
            assert published == ["kept"]
            assert _ids_in_file(db) == [execution_id]
    finally:
        store.close()


def _ids_in_file(db: Path) -> list[str]:
    """The execution ids committed to the file, read past the store."""
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT execution_id FROM executions ORDER BY 1")]
    finally:
        conn.close()
