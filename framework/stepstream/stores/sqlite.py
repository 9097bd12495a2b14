"""The SQLite store: records and event logs kept in one file, written by one background thread.

Who calls `append`: the recorder, from whichever thread produces an execution's
events (the event loop, or a runner's worker thread for sync steps), with no
recorder lock held for per-step events. Each execution has one producer at a
time, but different executions may append concurrently from different threads;
`append` does all its work under this store's lock, so that is safe, and it only
queues: it never encodes or touches the disk, and copies a record only to start a
tail (once per execution per flush).

Kept per execution while it is live here (from its first append until its ending is
committed): the store's own copy of its record, made once and kept current by folding
each event into it with `model.fold.apply_event` (exact: the recorder changes records
only through events). Reads of a live execution come from this copy.

Queued per execution (its "tail"): the events not yet written, coalesced by
`model.fold.supersedes` exactly as the memory store's log is (every lifecycle event
and, between two of them, only the latest progress event), and which rows of step
states they changed. A writer thread commits the queued tails every `flush_interval`
seconds, or sooner when much is queued, in one transaction (WAL mode,
synchronous=NORMAL), so reads never repeat or skip an event. When only progress is
queued (no lifecycle event, no new execution, no captured line) it waits until
`progress_interval` has passed since the last commit: progress is coalesced meanwhile,
reads see it from the queue, and a commit per progress event cost more CPU than
everything else the event does (20 events a second to 100 subscribers: 0.65 ms each).

What a commit writes is proportional to what changed, never to the record's size: the
events as one chunk (one row per execution per flush, a JSON array), the record's
changing scalar parts (`state`: status, progress, times, outputs, error), and the rows
of `STEPS_PER_ROW` step states that hold a changed step. The rest of the record
(`record`: id, pipeline, inputs, ...) and every step (one row, numbered -1, which later
rows override) are written once, when the store first sees the execution. A chunk of
events holding only an event that the next flush's first event supersedes (a lone
progress event) is replaced by it, so a long step leaves one progress row, not one per
flush.

A terminal event is shown to readers only once it is committed: until then
`get`, `list` and `events` show the execution as it stood before it, and
`on_kept` callbacks (the recorder publishes the ending from one) run on the
writer thread after the commit. A terminal event asks for a commit at once.
So a crash, or a full disk, can delay an ending but never take one back.
A `started` event asks for one too: once it is kept, a restart ends the execution
`failed` rather than queueing it again to repeat what its steps already did.

Waiting (`flush`, and `append` when an execution runs `seq_headroom` events ahead
of the file) never holds the store lock: it waits on a condition, which releases
it, so appends and the writer go on meanwhile. Pruning deletes in small
transactions and lets the writer commit between them.

One process owns a file at a time: an exclusive `flock` on the database file
itself is held while the store is open, so a second process, whatever name it
uses for the file (a symlink, a hard link, a relative path), gets a StoreError
naming the owner's pid instead of writing over the first one's sequence numbers.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from ..errors import StoreError
from ..model.events import (
    TERMINAL_EVENTS,
    AnyEvent,
    ErrorInfo,
    Event,
    ExecutionRecord,
    LogLine,
    ProgressEvent,
    ProgressSnapshot,
    StartedEvent,
    Status,
    StepState,
    encode,
    record_decoder,
)
from ..model.fold import append_coalesced, apply_event, coalesced, copy_record, supersedes
from . import step_durations_of

log = logging.getLogger("stepstream.stores.sqlite")

SCHEMA_VERSION = 4
APPLICATION_ID = 0x53545354  # "STST": marks the file as a stepstream store
SQLITE_HEADER = b"SQLite format 3\x00"
STEPS_PER_ROW = 32  # step states per row of `steps`: about one 4 KiB page of JSON

STEPS_TABLE = """
CREATE TABLE steps (
    execution_id TEXT NOT NULL,
    first_index INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (execution_id, first_index)
)"""
SCHEMA = f"""
CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL,
    record BLOB NOT NULL,
    idempotency_key TEXT,
    state BLOB
);
CREATE INDEX executions_by_key ON executions (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX executions_by_status ON executions (status, execution_id);
CREATE INDEX executions_by_pipeline ON executions (pipeline, execution_id);
CREATE INDEX executions_by_pipeline_status ON executions (pipeline, status, execution_id);
CREATE INDEX executions_finished ON executions (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX executions_finished_ids ON executions (execution_id) WHERE finished_at IS NOT NULL;
CREATE TABLE events (
    execution_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (execution_id, last_seq)
);
CREATE TABLE logs (
    execution_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (execution_id, n)
);
{STEPS_TABLE};
"""
TABLES = frozenset({"executions", "events"})  # "logs" came with version 3, "steps" with 4
READERS_KEPT = 4  # idle read connections kept for reuse; more are opened while threads need them
PRUNE_BATCH = 500  # executions deleted per transaction, so the writer's flushes interleave
FINISHED_CACHE = 1024  # decoded finished records kept for polls: a 1,000-step one takes ~0.5 ms

URGENT_EVENTS = (StartedEvent, *TERMINAL_EVENTS)  # committed at once, not at the next flush
chunk_decoder = msgspec.json.Decoder(list[AnyEvent])
line_decoder = msgspec.json.Decoder(LogLine)
step_row_decoder = msgspec.json.Decoder(list[StepState])


class _State(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The parts of a record that change after it is created: rewritten on every commit."""

    status: Status
    progress: ProgressSnapshot | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: Any = None
    error: ErrorInfo | None = None
    last_seq: int = 0


state_decoder = msgspec.json.Decoder(_State)
STATE_FIELDS = _State.__struct_fields__


def _state_of(record: ExecutionRecord) -> _State:
    """The changing parts of `record`, to be written."""
    return _State(
        status=record.status,
        progress=record.progress,
        started_at=record.started_at,
        finished_at=record.finished_at,
        outputs=record.outputs,
        error=record.error,
        last_seq=record.last_seq,
    )


def _assembled(head: bytes, state: bytes | None, rows: list[tuple[int, bytes]]) -> ExecutionRecord:
    """A record from its stored parts: `state` (None in a file migrated from version 3)
    overrides what `head` held when written; the step row numbered -1 holds every step as
    first written, each later row the steps it starts at."""
    record = record_decoder.decode(head)
    if state is not None:
        changing = state_decoder.decode(state)
        for name in STATE_FIELDS:
            setattr(record, name, getattr(changing, name))
    for first, data in rows:
        steps = step_row_decoder.decode(data)
        if first < 0:
            record.steps = steps
        else:
            record.steps[first : first + len(steps)] = steps
    return record


def _rows(
    execution_id: str, steps: list[StepState], firsts: Iterable[int]
) -> list[tuple[str, int, list[StepState]]]:
    """Rows of step states, each named by its first index; slices, so later folds leave them."""
    return [(execution_id, first, steps[first : first + STEPS_PER_ROW]) for first in firsts]


def _head(record: ExecutionRecord) -> ExecutionRecord:
    """What the `record` column holds: the record without its steps or the parts `state`
    holds, so a read decodes each part once and a commit rewrites no large row."""
    return msgspec.structs.replace(
        record,
        steps=[],
        progress=None,
        started_at=None,
        finished_at=None,
        outputs=None,
        error=None,
    )


# Each step takes a file from the version before it to the next; a file is migrated on open.
MIGRATIONS = {
    1: """
ALTER TABLE executions ADD COLUMN idempotency_key TEXT;
CREATE INDEX executions_by_key ON executions (idempotency_key) WHERE idempotency_key IS NOT NULL;
""",
    2: """
CREATE TABLE logs (
    execution_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (execution_id, n)
);
""",
    3: f"ALTER TABLE executions ADD COLUMN state BLOB;\n{STEPS_TABLE};",
}


class _StepTime(msgspec.Struct):
    """What step history needs of a stored step; decoding skips the other fields."""

    name: str
    status: str
    duration_seconds: float | None = None


steps_decoder = msgspec.json.Decoder(list[_StepTime])

_open_stores: set[SqliteStore] = set()


class _KeptCallback(NamedTuple):
    """An `on_kept` call waiting for the commit of swap `target`."""

    target: int
    callback: Callable[[], None]
    failed: Callable[[StoreError], None] | None


class _Live:
    """An execution appended to since the store opened, until its ending is committed.

    `record` is the store's own copy, made once and kept current by folding each
    event into it. `shown` is what readers see: the same record, except that a
    terminal event waiting to be committed is not shown (None: read the file).
    """

    __slots__ = ("record", "shown")

    def __init__(self, record: ExecutionRecord, event: Event) -> None:
        self.record = copy_record(record)  # the caller's record, `event` already folded in
        self.shown: ExecutionRecord | None = (
            None if isinstance(event, TERMINAL_EVENTS) else self.record
        )

    def fold(self, event: Event, changed: set[int]) -> None:
        """Fold a later event in, adding the numbers of the step rows it changes to `changed`."""
        record = self.record
        if type(event) is ProgressEvent:  # the per-step path: kept short
            if event.step is not None:
                changed.add(event.step.index // STEPS_PER_ROW)
            if event.steps:
                changed.update(step.index // STEPS_PER_ROW for step in event.steps)
        elif isinstance(event, TERMINAL_EVENTS):  # readers see the state before it until kept
            self.shown = copy_record(record)
            changed.update(  # steps still running share the ending
                i // STEPS_PER_ROW for i, s in enumerate(record.steps) if s.status == "running"
            )
        apply_event(record, event)


class _Tail:
    """One execution's changes not yet committed: its events, the step rows they changed
    (by number; `whole`: the whole record, as when first written), and the seq from which
    `append` checks again that the writer keeps up.

    When the writer takes the tail, `record` (the record's scalar parts) and `rows` (the
    changed step rows; if `whole`, one row of every step) are set from the live record:
    what the commit writes.
    """

    __slots__ = ("changed", "events", "limit", "live", "record", "rows", "whole")

    def __init__(self, live: _Live, limit: int) -> None:
        self.live = live
        self.events: list[Event] = []
        self.changed: set[int] = set()
        self.limit = limit
        self.whole = False
        self.record: ExecutionRecord | None = None
        self.rows: list[tuple[str, int, list[StepState]]] = []

    def take(self) -> None:
        """Note what to write from the live record (lock held), copied or sliced, so later
        folds leave it alone."""
        live = self.live.record
        if self.whole:  # every step in one row, numbered -1; later rows override it
            self.record = msgspec.structs.replace(live, steps=[])
            self.rows = [(live.execution_id, -1, list(live.steps))]
        else:
            self.record = msgspec.structs.replace(live, steps=[])
            firsts = (row * STEPS_PER_ROW for row in sorted(self.changed))
            self.rows = _rows(live.execution_id, live.steps, firsts)

    def after(self, older: _Tail) -> None:
        """Take the place of a tail that failed to commit, its events and rows first."""
        self.events = coalesced(older.events + self.events)
        self.changed |= older.changed
        self.whole = self.whole or older.whole


class _Lines:
    """One execution's captured lines waiting to be written, and how many of its lines to keep."""

    __slots__ = ("keep", "lines")

    def __init__(self, keep: int) -> None:
        self.lines: list[LogLine] = []
        self.keep = keep

    def after(self, older: _Lines) -> None:
        """Take the place of lines that failed to be written, theirs first."""
        self.lines = (older.lines + self.lines)[-self.keep :]


class SqliteStore:
    """Durable executions in one SQLite file; see the module docstring for how writes flow."""

    # An event's seq may run this far ahead of what is committed before `append` waits for
    # the writer; a restart numbers its first event past it, so no seq a client saw repeats.
    # About two seconds of the fastest producer (~2 µs an event), so only a stalled writer
    # makes it wait: at 10,000 a fast pipeline waited for the writer on almost every flush.
    seq_headroom = 1_000_000

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 0.025,
        progress_interval: float = 0.5,
        batch_size: int = 512,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.flush_interval = flush_interval
        self.progress_interval = progress_interval
        self.batch_size = batch_size
        self._lock = threading.Lock()  # the queue and the writer's progress
        self._finished: OrderedDict[str, ExecutionRecord] = OrderedDict()
        self._done = threading.Condition(self._lock)  # notified after every write attempt
        self._work = threading.Event()
        self._urgent = threading.Event()
        self._file_lock = threading.Lock()  # one transaction at a time: a flush or a prune batch
        self._readers_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._live: dict[str, _Live] = {}  # executions appended to, until their ending is kept
        self._pending: dict[str, _Tail] = {}
        self._inflight: dict[str, _Tail] = {}
        self._pending_logs: dict[str, _Lines] = {}  # captured lines, written with the next batch
        self._inflight_logs: dict[str, _Lines] = {}
        self._queued = 0
        self._lasting = False  # queued work that may wait flush_interval, not progress_interval
        self._lazy = False  # the writer waits because only progress is queued
        self._committed = 0.0  # monotonic time of the last swap
        self._durable: dict[str, int] = {}
        self._lone: dict[
            str, Event
        ] = {}  # writer only: the event alone in an execution's last chunk
        self._swaps = self._attempts = self._written = 0
        self._callbacks: list[_KeptCallback] = []
        self._failure: str | None = None
        self._stopping = False
        self._stopped = False  # the writer thread has returned
        self._closed = False
        self._lock_fd = _take_lock(self.path)
        try:
            self._writer = _open_writer(self.path)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"stepstream-sqlite {self.path}", daemon=True
        )
        self._thread.start()
        _open_stores.add(self)

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
        rest = url.removeprefix("sqlite://")
        path = rest[1:] if rest.startswith("/") else ""
        if not path or "?" in path or path == ":memory:":
            raise StoreError(
                f"store URL {url!r} does not name a SQLite file; use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db (memory:// keeps nothing)"
            )
        return cls(path)

    # -- writing ----------------------------------------------------------------

    def append(self, record: ExecutionRecord, event: Event) -> None:
        """Queue the event and fold it into the store's record: no encoding, no disk, and a
        copy of the record only when the execution is new here.

        Safe from any thread; appends of one execution must come in seq order (one
        producer at a time), appends of different executions may run concurrently.
        """
        lock = self._lock
        lock.acquire()  # not `with`: on this path its __enter__/__exit__ calls cost as much again
        try:
            tail = self._pending.get(record.execution_id)
            if (
                tail is None
                or type(event) is not ProgressEvent
                or event.seq >= tail.limit
                or self._closed
            ):
                self._queue(record, event, tail)
                return
            # The per-step path: `_Live.fold` and `append_coalesced` inlined, whose calls took
            # a third of the append's time (timed alone: 2.1x MemoryStore.append, now 1.6x).
            apply_event(tail.live.record, event)
            changed = tail.changed
            if event.step is not None:
                changed.add(event.step.index // STEPS_PER_ROW)
            if event.steps:
                changed.update(step.index // STEPS_PER_ROW for step in event.steps)
            events = tail.events
            if events and type(events[-1]) is ProgressEvent:
                events[-1] = event
            else:
                events.append(event)
                self._grew(event)
        finally:
            lock.release()

    def _queue(self, record: ExecutionRecord, event: Event, tail: _Tail | None) -> None:
        """`append` of any event, `tail` the execution's if one is queued (lock held)."""
        if self._closed:
            raise StoreError(
                f"store {self.path} is closed; event {event.seq} of {record.execution_id} "
                "was not kept"
            )
        if tail is None or event.seq >= tail.limit:
            tail = self._tail(record, event)  # may wait, releasing the lock
        else:
            tail.live.fold(event, tail.changed)
        if append_coalesced(tail.events, event):
            self._grew(event)

    def _grew(self, event: Event) -> None:
        """`event` made the queue longer: wake the writer, or hurry it (lock held)."""
        self._queued += 1
        if self._queued == 1:
            self._work.set()
        if type(event) is not ProgressEvent:
            self._hurry()
        if self._queued == self.batch_size or isinstance(event, URGENT_EVENTS):
            self._urgent.set()  # an ending waits to be shown until it is kept: commit now

    def _tail(self, record: ExecutionRecord, event: Event) -> _Tail:
        """The execution's tail with `event` folded in, new if none is queued; the execution
        is new here if it is not live (lock held)."""
        execution_id = record.execution_id
        limit = self._limit(execution_id, event.seq)  # may wait, releasing the lock
        live = self._live.get(execution_id)
        if live is None:
            live = self._live[execution_id] = _Live(record, event)
            tail = self._pending[execution_id] = _Tail(live, limit)
            tail.whole = True
            self._hurry()
            return tail
        tail = self._pending.get(execution_id)
        if tail is None:
            tail = self._pending[execution_id] = _Tail(live, limit)
        tail.limit = limit
        live.fold(event, tail.changed)
        return tail

    def _hurry(self) -> None:
        """Something that is not progress is queued: commit it within `flush_interval`, ending
        the writer's wait for progress alone at once (lock held)."""
        self._lasting = True
        if self._lazy:
            self._urgent.set()

    def _limit(self, execution_id: str, seq: int) -> int:
        """The seq from which to check on the writer again; first waits while `seq` runs
        `seq_headroom` past what is committed (unless the writer is failing or gone)."""
        durable = self._durable.get(execution_id)
        if durable is None:
            durable = self._durable[execution_id] = seq - 1
        while seq - durable >= self.seq_headroom and self._failure is None and not self._stopped:
            self._urgent.set()
            self._work.set()
            self._done.wait()
            durable = self._durable.get(execution_id, seq - 1)
        if self._closed:
            raise StoreError(
                f"store {self.path} is closed; event {seq} of {execution_id} was not kept"
            )
        return max(durable + self.seq_headroom, seq + 1)

    def flush(self) -> None:
        """Return once everything appended before the call is committed; StoreError if it cannot.

        It waits on a condition (the lock is released), so appends go on meanwhile.
        """
        with self._lock:
            if self._closed or not (self._pending or self._inflight):
                return
            target = self._swaps + (1 if self._pending else 0)
            self._urgent.set()
            self._work.set()
            while not self._stopped and (
                self._attempts < target or (self._written < target and self._failure is None)
            ):
                self._done.wait()
            if self._written < target:
                raise self._write_error(self._failure)

    def _write_error(self, failure: str | None) -> StoreError:
        """What `flush` raises and `on_kept` hands `failed` when a write did not keep events."""
        return StoreError(f"cannot write to store {self.path}: {failure or 'it was closed'}")

    def append_logs(self, execution_id: str, lines: list[LogLine], keep: int) -> None:
        """Queue captured lines for the next batch; older lines beyond `keep` go when written."""
        with self._lock:
            if self._closed:
                return
            waiting = self._pending_logs.get(execution_id)
            if waiting is None:
                waiting = self._pending_logs[execution_id] = _Lines(keep)
            waiting.lines = (waiting.lines + lines)[-keep:]
            waiting.keep = keep
            self._hurry()
            self._work.set()

    def logs(self, execution_id: str, after: int = 0) -> list[LogLine]:
        """Written and queued lines numbered above `after`, in order."""
        with self._lock:
            queued = [
                line
                for waiting in (self._inflight_logs, self._pending_logs)
                if execution_id in waiting
                for line in waiting[execution_id].lines
                if line.n > after
            ]
        rows = self._query(
            "SELECT data FROM logs WHERE execution_id = ? AND n > ? ORDER BY n",
            (execution_id, after),
        )
        by_n = {line.n: line for line in (line_decoder.decode(r[0]) for r in rows)}
        by_n.update((line.n, line) for line in queued)
        return [by_n[n] for n in sorted(by_n)]

    def on_kept(
        self,
        callback: Callable[[], None],
        failed: Callable[[StoreError], None] | None = None,
    ) -> None:
        """Call `callback` once everything appended so far is committed (on the writer thread).

        At once, on this thread, if nothing is waiting; never if the store closes first.
        With `failed`, the first commit attempt that fails to keep them calls it instead.
        """
        with self._lock:
            waiting = bool(self._pending or self._inflight)
            gone = self._stopped  # the writer returned: no commit is coming
            if waiting and not gone:
                target = self._swaps + (1 if self._pending else 0)
                self._callbacks.append(_KeptCallback(target, callback, failed))
                self._urgent.set()
                self._work.set()
        if not waiting:
            callback()
        elif gone and failed is not None:
            failed(self._write_error(self._failure))

    def _call_back(self, swap: int, failure: str | None) -> None:
        """Run the callbacks waiting for commits up to `swap`, or on a failed one those with
        a `failed`; the lock is not held."""
        due: list[_KeptCallback] = []
        waiting: list[_KeptCallback] = []
        with self._lock:
            for call in self._callbacks:
                ready = call.target <= swap and (failure is None or call.failed is not None)
                (due if ready else waiting).append(call)
            if not due:
                return
            self._callbacks = waiting
        for call in due:
            try:
                if failure is None:
                    call.callback()
                else:
                    assert call.failed is not None
                    call.failed(self._write_error(failure))
            except Exception:
                log.exception("a callback after a commit to %s failed", self.path)

    def _run(self) -> None:
        """The writer thread: swap the queue out, commit it, repeat until closed."""
        while True:
            self._work.wait()
            self._urgent.wait(self.flush_interval)
            self._wait_for_progress()
            with self._lock:
                self._work.clear()
                self._urgent.clear()
                self._lasting = self._lazy = False
                self._committed = time.monotonic()
                batch, self._pending = self._pending, {}
                for tail in batch.values():
                    tail.take()
                self._inflight = batch
                lines, self._pending_logs = self._pending_logs, {}
                self._inflight_logs = lines
                self._queued = 0
                self._swaps += 1
                swap = self._swaps
                stopping = self._stopping
            failure = self._write(batch, lines) if batch or lines else None
            with self._lock:
                self._inflight = {}
                self._inflight_logs = {}
                if failure is None:
                    self._failure = None
                    for execution_id, tail in batch.items():
                        last = tail.events[-1]
                        if isinstance(last, TERMINAL_EVENTS):
                            self._durable.pop(execution_id, None)
                            self._keep_finished(self._live.pop(execution_id).record)
                        else:
                            self._durable[execution_id] = last.seq
                else:
                    self._failure = failure
                    self._requeue(batch)
                    for execution_id, older in lines.items():
                        newer = self._pending_logs.setdefault(execution_id, older)
                        if newer is not older:
                            newer.after(older)
            self._call_back(swap, failure)  # before `flush` returns: its caller may expect them
            with self._lock:
                self._attempts = swap
                if failure is None:
                    self._written = swap
                self._stopped = stopping and (failure is not None or not self._pending)
                self._done.notify_all()
            if self._stopped:
                return
            if failure is not None:
                time.sleep(min(1.0, self.flush_interval * 20))

    def _wait_for_progress(self) -> None:
        """While only progress is queued, let it wait until `progress_interval` after the last
        commit; `_hurry`, a flush, an `on_kept` or closing ends the wait."""
        with self._lock:
            left = self._committed + self.progress_interval - time.monotonic()
            self._lazy = left > 0 and not self._lasting and not self._urgent.is_set()
        if self._lazy:
            self._urgent.wait(left)

    def _requeue(self, batch: dict[str, _Tail]) -> None:
        """Put a batch that failed to commit back in front of what was queued since."""
        for execution_id, tail in batch.items():
            newer = self._pending.get(execution_id)
            if newer is not None:
                newer.after(tail)
                batch[execution_id] = newer
        self._pending = {**batch, **{k: v for k, v in self._pending.items() if k not in batch}}
        self._queued = sum(len(t.events) for t in self._pending.values())
        self._lasting = True  # the failed batch may hold lifecycle events
        self._work.set()

    def _write(self, batch: dict[str, _Tail], lines: dict[str, _Lines]) -> str | None:
        """Commit one batch in one transaction; the reason when it failed."""
        try:
            lone = self._commit(batch, lines)
        except Exception as exc:
            log.error(
                "could not write %d executions to %s: %s; retrying", len(batch), self.path, exc
            )
            return str(exc) or type(exc).__name__
        for execution_id, event in lone.items():
            if event is None:
                self._lone.pop(execution_id, None)
            else:
                self._lone[execution_id] = event
        return None

    def _commit(self, batch: dict[str, _Tail], lines: dict[str, _Lines]) -> dict[str, Event | None]:
        """Encode what changed, then write it in one transaction: per execution one chunk of
        events, its state and its changed step rows (the whole record the first time), and
        the captured lines (each execution's last `keep`)."""
        chunks: list[tuple[str, int, int, bytes]] = []
        replaced: list[tuple[str, int]] = []
        created: list[tuple[str, str, str, float | None, bytes, str | None, bytes]] = []
        moved: list[tuple[str, float | None, bytes, str]] = []  # status too: indexed, so apart
        progressed: list[tuple[bytes, str]] = []
        rows: list[tuple[str, int, list[StepState]]] = []
        cleared: list[tuple[str]] = []  # whole records: one row holds all their steps again
        lone: dict[str, Event | None] = {}
        for execution_id, tail in batch.items():
            events, record = tail.events, tail.record
            assert record is not None, "the writer takes every tail before committing it"
            previous = self._lone.get(execution_id)
            if previous is not None and supersedes(events[0], previous):
                replaced.append((execution_id, previous.seq))
            chunks.append((execution_id, events[0].seq, events[-1].seq, encode(events)))
            finished = (
                record.finished_at.timestamp() if record.finished and record.finished_at else None
            )
            lone[execution_id] = events[0] if len(events) == 1 and not record.finished else None
            state = encode(_state_of(record))
            if tail.whole:
                created.append(
                    (
                        execution_id,
                        record.pipeline,
                        record.status,
                        finished,
                        encode(_head(record)),
                        record.idempotency_key,
                        state,
                    )
                )
                cleared.append((execution_id,))
            elif any(type(e) is not ProgressEvent for e in events):  # a lifecycle event
                moved.append((record.status, finished, state, execution_id))
            else:
                progressed.append((state, execution_id))
            rows.extend(tail.rows)
        conn = self._writer
        with self._file_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                _execute_many(
                    conn, "DELETE FROM events WHERE execution_id = ? AND last_seq = ?", replaced
                )
                _execute_many(conn, "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", chunks)
                _execute_many(
                    conn,
                    "INSERT INTO executions (execution_id, pipeline, status, finished_at, record, "
                    "idempotency_key, state) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (execution_id) DO UPDATE SET status = excluded.status, "
                    "finished_at = excluded.finished_at, record = excluded.record, "
                    "state = excluded.state",
                    created,
                )
                _execute_many(
                    conn,
                    "UPDATE executions SET status = ?, finished_at = ?, state = ? "
                    "WHERE execution_id = ?",
                    moved,
                )
                _execute_many(
                    conn, "UPDATE executions SET state = ? WHERE execution_id = ?", progressed
                )
                _execute_many(conn, "DELETE FROM steps WHERE execution_id = ?", cleared)
                _execute_many(
                    conn,
                    "INSERT INTO steps VALUES (?, ?, ?) ON CONFLICT (execution_id, first_index) "
                    "DO UPDATE SET data = excluded.data",  # in place: one page, a replace six
                    [(eid, first, encode(steps)) for eid, first, steps in rows],
                )
                _execute_many(
                    conn,
                    "INSERT OR REPLACE INTO logs VALUES (?, ?, ?)",
                    [(i, line.n, encode(line)) for i, w in lines.items() for line in w.lines],
                )
                _execute_many(
                    conn,
                    "DELETE FROM logs WHERE execution_id = ? AND n <= ?",
                    [(i, w.lines[-1].n - w.keep) for i, w in lines.items() if w.lines],
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return lone

    # -- reading ----------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled read connection (reads never wait on the writer), returned after use."""
        with self._readers_lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA query_only = ON")
            except sqlite3.Error:
                conn.close()
                raise
        try:
            yield conn
        finally:
            with self._readers_lock:
                kept = not self._closed and len(self._idle) < READERS_KEPT
                if kept:
                    self._idle.append(conn)
            if not kept:
                conn.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            with self._reader() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc

    def _records(self, executions: str, params: tuple[Any, ...]) -> dict[str, ExecutionRecord]:
        """The records of the rows an `executions` query selects (id, record, state), with
        their step rows: one statement, so one consistent snapshot."""
        rows = self._query(
            f"WITH e AS ({executions}) SELECT execution_id, -2, record, state FROM e UNION ALL "
            "SELECT s.execution_id, s.first_index, s.data, NULL FROM e "
            "CROSS JOIN steps AS s ON s.execution_id = e.execution_id ORDER BY 1, 2",
            params,
        )
        parts: dict[str, tuple[bytes, bytes | None, list[tuple[int, bytes]]]] = {}
        for execution_id, first, data, state in rows:
            if first == -2:  # the head; the step rows follow
                parts[execution_id] = (data, state, [])
            else:
                parts[execution_id][2].append((first, data))
        return {eid: _assembled(*part) for eid, part in parts.items()}

    def _overlay(
        self, wanted: Callable[[ExecutionRecord], bool]
    ) -> tuple[set[str], dict[str, ExecutionRecord]]:
        """The ids of every live execution readers see here, and copies of those records that
        `wanted` accepts: reads take these instead of what the file holds."""
        with self._lock:
            shown = {k: v.shown for k, v in self._live.items() if v.shown is not None}
            return set(shown), {k: copy_record(r) for k, r in shown.items() if wanted(r)}

    def _keep_finished(self, record: ExecutionRecord) -> None:
        """Keep a finished, committed record for later reads (lock held): it never changes."""
        self._finished[record.execution_id] = record
        if len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record, queued changes included: a fresh copy, or a shared finished one."""
        with self._lock:
            live = self._live.get(execution_id)
            if live is not None and live.shown is not None:
                return copy_record(live.shown)
            cached = self._finished.get(execution_id)
            if cached is not None:
                self._finished.move_to_end(execution_id)
                return cached
        record = self._records(
            "SELECT execution_id, record, state FROM executions WHERE execution_id = ?",
            (execution_id,),
        ).get(execution_id)
        if record is not None and record.finished:  # polls of it need not decode it each time
            with self._lock:
                self._keep_finished(record)
        return record

    def by_idempotency_key(self, key: str) -> ExecutionRecord | None:
        """The record created with this idempotency key, live here or written."""
        with self._lock:
            ids = [k for k, v in self._live.items() if v.record.idempotency_key == key]
        if not ids:
            rows = self._query(
                "SELECT execution_id FROM executions WHERE idempotency_key = ? LIMIT 1", (key,)
            )
            ids = [rows[0][0]] if rows else []
        return self.get(ids[0]) if ids else None

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """Written and queued events with `seq > after`, in order, never waiting on the writer.

        A terminal event still waiting to be committed is left out: it is shown once
        it is kept (`on_kept`), so nobody is told an ending a crash could take back.
        """
        with self._lock:
            queued = [
                e
                for tails in (self._inflight, self._pending)
                if execution_id in tails
                for e in tails[execution_id].events
                if e.seq > after and not isinstance(e, TERMINAL_EVENTS)
            ]
        rows = self._query(
            "SELECT data FROM events WHERE execution_id = ? AND last_seq > ? ORDER BY last_seq",
            (execution_id, after),
        )
        by_seq = {e.seq: e for r in rows for e in chunk_decoder.decode(r[0]) if e.seq > after}
        by_seq.update((e.seq, e) for e in queued)
        return coalesced([by_seq[s] for s in sorted(by_seq)])

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Newest first by id (creation order), filtered, from just before the `before` id."""
        queued, found = self._overlay(
            lambda r: (
                (status is None or r.status == status)
                and (pipeline is None or r.pipeline == pipeline)
                and (before is None or r.execution_id < before)
            )
        )
        where, params = [], []
        for column, value in (("status", status), ("pipeline", pipeline)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("execution_id < ?")
            params.append(before)
        sql = "SELECT execution_id, record, state FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY execution_id DESC LIMIT ?"
        stored = self._records(sql, (*params, limit + len(queued)))
        ids = sorted({*(i for i in stored if i not in queued), *found}, reverse=True)[:limit]
        return [found[i] if i in found else stored[i] for i in ids]

    def unfinished(self) -> list[ExecutionRecord]:
        """`pending` and `running` records, oldest first."""
        queued, found = self._overlay(lambda r: not r.finished)
        records = self._records(
            "SELECT execution_id, record, state FROM executions "
            "WHERE status IN ('pending', 'running')",
            (),
        )
        for execution_id in queued:
            records.pop(execution_id, None)
        records.update(found)
        return [records[i] for i in sorted(records)]

    def step_durations(self, pipeline: str, limit: int = 20) -> dict[str, list[float]]:
        """Durations of each step over the last `limit` completed executions, newest first.

        Only the step rows are read and only what history needs of them is decoded.
        """
        queued, found = self._overlay(lambda r: r.status == "completed" and r.pipeline == pipeline)
        rows = self._query(
            "WITH e AS (SELECT execution_id, record FROM executions WHERE pipeline = ? "
            "AND status = 'completed' ORDER BY execution_id DESC LIMIT ?) "
            "SELECT execution_id, -2, json_extract(CAST(record AS TEXT), '$.steps') FROM e "
            "UNION ALL SELECT s.execution_id, s.first_index, s.data FROM e "
            "CROSS JOIN steps AS s ON s.execution_id = e.execution_id ORDER BY 1, 2",
            (pipeline, limit + len(queued)),
        )
        stored: dict[str, list[_StepTime]] = {}
        for execution_id, first, data in rows:
            steps = steps_decoder.decode(data)
            if first < 0:  # the head's (a record from version 3), then all as first written
                stored[execution_id] = steps
            else:
                stored[execution_id][first : first + len(steps)] = steps
        ids = sorted({*(i for i in stored if i not in queued), *found}, reverse=True)[:limit]
        return step_durations_of(found[i].steps if i in found else stored[i] for i in ids)

    # -- pruning and closing -----------------------------------------------------

    def prune(self, keep_count: int | None = None, keep_age_seconds: float | None = None) -> int:
        """Delete finished executions past the newest `keep_count` or older than the age; count.

        It deletes `PRUNE_BATCH` executions per transaction and lets the writer commit
        between two, so appends and flushes go on; it blocks, so call it off the event loop.
        """
        if keep_count is None and keep_age_seconds is None:
            return 0
        self.flush()  # count the executions that finished but are still queued
        doomed: set[str] = set()
        if keep_count is not None:
            doomed.update(
                r[0]
                for r in self._query(
                    "SELECT execution_id FROM executions WHERE finished_at IS NOT NULL "
                    "ORDER BY execution_id DESC LIMIT -1 OFFSET ?",
                    (max(0, keep_count),),
                )
            )
        if keep_age_seconds is not None:
            doomed.update(
                r[0]
                for r in self._query(
                    "SELECT execution_id FROM executions WHERE finished_at < ?",
                    (time.time() - keep_age_seconds,),
                )
            )
        ids = sorted(doomed)
        deleted = 0
        for start in range(0, len(ids), PRUNE_BATCH):
            batch = [(i,) for i in ids[start : start + PRUNE_BATCH]]
            with self._file_lock:
                if self._closed:
                    break
                conn = self._writer
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("DELETE FROM events WHERE execution_id = ?", batch)
                    conn.executemany("DELETE FROM logs WHERE execution_id = ?", batch)
                    conn.executemany("DELETE FROM steps WHERE execution_id = ?", batch)
                    conn.executemany("DELETE FROM executions WHERE execution_id = ?", batch)
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    raise StoreError(f"cannot prune store {self.path}: {exc}") from exc
            with self._lock:  # after the commit, so no reader caches a row being deleted
                for (execution_id,) in batch:
                    self._finished.pop(execution_id, None)
            deleted += len(batch)
            self._let_writer_in()
        return deleted

    def _let_writer_in(self) -> None:
        """Between prune batches: wait (lock released) for the writer to commit what is queued."""
        with self._lock:
            if not (self._pending or self._inflight) or self._failure is not None:
                return
            target = self._swaps + (1 if self._pending else 0)
            self._urgent.set()
            self._work.set()
            deadline = time.monotonic() + 1.0
            while self._attempts < target and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._done.wait(remaining)

    def close(self) -> None:
        """Commit everything queued, stop the writer and release the file; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self._urgent.set()
            self._work.set()
        self._thread.join()
        with self._file_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            lost = sum(len(t.events) for t in self._pending.values())
            self._live.clear()  # reads of a closed store fail rather than show a stale copy
            orphans, self._callbacks = self._callbacks, []  # no commit is coming for them
        with self._readers_lock:
            idle, self._idle = self._idle, []
        for conn in (*idle, self._writer):
            conn.close()
        os.close(self._lock_fd)
        _open_stores.discard(self)
        closed = StoreError(f"store {self.path} closed before it kept what was appended")
        for call in orphans:
            if call.failed is not None:
                call.failed(closed)
        if lost:
            raise StoreError(
                f"store {self.path} closed with {lost} events not written: {self._failure}"
            )


def _execute_many(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`executemany`, skipped when there are no rows: most commits leave most statements
    empty, and each empty call still cost 4-8 µs of the writer's CPU."""
    if rows:
        conn.executemany(sql, rows)


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction; a rollback that fails too leaves nothing more to do."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")


def _take_lock(path: str) -> int:
    """Own the store file for this process's lifetime: an exclusive flock on the file itself.

    flock locks the file, not the name, so every way of naming it (a symlink, a hard
    link) meets the same lock; SQLite's own locks are POSIX record locks, which
    flock does not touch. The file is created empty if missing: SQLite takes an
    empty file as a new database.
    """
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise StoreError(
            f"cannot open store {path}: it is a directory; name a file such as {path}/stepstream.db"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise StoreError(
            f"cannot open store {path}: the directory {directory} does not exist; "
            "create it or choose another path"
        ) from None
    except NotADirectoryError:
        raise StoreError(
            f"cannot open store {path}: {directory} is not a directory; choose another path"
        ) from None
    except PermissionError:
        where = "on the file" if os.path.exists(path) else f"in {directory}"
        raise StoreError(
            f"cannot open store {path}: permission denied {where}; "
            "make it writable for this user or choose another path"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}; choose another path") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _flock_holder(fd)
        os.close(fd)
        holder = (
            "this process"
            if owner == os.getpid()
            else f"another stepstream process (pid {owner or 'unknown'})"
        )
        raise StoreError(
            f"store {path} is in use by {holder}; stop it or point this one at another file"
        ) from None
    return fd


def _flock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file behind `fd`, as the kernel lists it in /proc/locks."""
    stat = os.fstat(fd)
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if "FLOCK" in fields and device in fields:
                    return int(fields[fields.index(device) - 1])
    except (OSError, ValueError):
        pass
    return None


def _open_writer(path: str) -> sqlite3.Connection:
    """Open or create the file, check that it is ours, and set WAL mode; StoreError otherwise."""
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_HEADER:
                raise StoreError(
                    f"cannot open store {path}: it is not a SQLite database; "
                    "move it away or choose another path"
                )
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open store {path}: {exc}; check the path and its permissions"
        ) from exc
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        _check_schema(conn, path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(
                f"cannot open store {path}: SQLite refused WAL mode ({mode}); choose a local file"
            )
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(
            f"cannot open store {path}: {exc}; move it away or choose another path"
        ) from exc
    except StoreError:
        conn.close()
        raise
    return conn


def _check_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema in an empty file; refuse a file that holds something else."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    application = conn.execute("PRAGMA application_id").fetchone()[0]
    if not tables and version == 0 and application == 0:
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{SCHEMA}\nPRAGMA application_id = {APPLICATION_ID};\n"
            f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
        )
        return
    if application != APPLICATION_ID or not tables >= TABLES:
        listed = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            f"cannot open store {path}: it is a SQLite database but not a stepstream store "
            f"(tables: {listed}); move it away or choose another path"
        )
    if version > SCHEMA_VERSION or version not in (*MIGRATIONS, SCHEMA_VERSION):
        raise StoreError(
            f"cannot open store {path}: its schema version is {version}, this stepstream reads "
            f"version {SCHEMA_VERSION}; use the stepstream that wrote it or choose another path"
        )
    for step in range(version, SCHEMA_VERSION):
        _migrate(conn, MIGRATIONS[step], step + 1)
        log.info("store %s: schema migrated from version %d to %d", path, step, step + 1)


def _migrate(
    conn: sqlite3.Connection, migration: str | Callable[[sqlite3.Connection], None], version: int
) -> None:
    """Take the file to `version` in one transaction: all of the step or none of it."""
    if isinstance(migration, str):
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{migration}\nPRAGMA user_version = {version};\nCOMMIT;"
        )
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        migration(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


@atexit.register
def _close_open_stores() -> None:
    """Commit what is queued when the interpreter exits without closing its stores."""
    for store in list(_open_stores):
        try:
            store.close()
        except StoreError as exc:
            log.error("%s", exc)
