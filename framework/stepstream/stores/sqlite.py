"""The SQLite store: records and event logs kept in one file, written by one background thread.

`append` runs on the producing thread under the tracker's lock and only queues:
each execution's not-yet-written events (a plain progress event superseded by
the next progress event is dropped, latest wins) and a snapshot of its record.
A writer thread commits what is queued every `flush_interval` seconds, or sooner
when much is queued, in one transaction (WAL mode, synchronous=NORMAL). Until it
is committed, the queued tail of an execution is an overlay that every read
merges with the file, so reads are always current and never repeat or skip an
event.

Events are stored in chunks: one row per execution per flush (at most
`CHUNK_EVENTS` events, a JSON array), so a pipeline of many short steps costs
one row per flush, not one per event. A chunk holding only a plain progress
event is replaced by the next chunk that supersedes it, so a long step leaves
one progress row, not one per flush.

`events` returns a lifecycle event only once it is committed: when the
requested range holds a queued lifecycle event, it waits for a flush first.

One process owns a file at a time: an exclusive `flock` on `PATH.lock` is
held while the store is open, so a second process gets a StoreError naming
the owner's pid instead of writing over the first one's sequence numbers.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sqlite3
import threading
import time
from typing import Any

import msgspec

from ..errors import StoreError
from ..events import (
    LIFECYCLE_EVENTS,
    TERMINAL_EVENTS,
    AnyEvent,
    Event,
    ExecutionRecord,
    ProgressEvent,
    Status,
    encode,
    record_decoder,
)
from ..plugins import hookimpl
from . import step_durations_of

log = logging.getLogger("stepstream.stores.sqlite")

SCHEMA_VERSION = 1
APPLICATION_ID = 0x53545354  # "STST": marks the file as a stepstream store
SQLITE_HEADER = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL,
    record BLOB NOT NULL
);
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
"""
TABLES = frozenset({"executions", "events"})
CHUNK_EVENTS = 256

chunk_decoder = msgspec.json.Decoder(list[AnyEvent])

_open_stores: set[SqliteStore] = set()


def _plain(event: Event) -> bool:
    """A progress event without a step transition: the only kind that may be coalesced."""
    return type(event) is ProgressEvent and event.step is None


def _supersedes(event: Event, previous: Event) -> bool:
    """The next progress event of an execution replaces a plain one, as in the memory store."""
    return type(event) is ProgressEvent and _plain(previous)


def _snapshot(record: ExecutionRecord) -> ExecutionRecord:
    """A copy the tracker will not mutate: it replaces fields and steps, never edits them."""
    return msgspec.structs.replace(record, steps=list(record.steps))


def _coalesce(events: list[Event]) -> list[Event]:
    """Drop every plain progress event that a following one supersedes, as the log itself does."""
    return [
        e
        for i, e in enumerate(events)
        if not (i + 1 < len(events) and _supersedes(events[i + 1], e))
    ]


class _Tail:
    """One execution's queued, not yet committed state: its events and its latest record.

    `steps` is this tail's own copy of the record's steps, kept current from the step
    events themselves, so queuing an event never copies every step of a long pipeline.
    """

    __slots__ = ("events", "record", "steps")

    def __init__(self, record: ExecutionRecord) -> None:
        self.steps = list(record.steps)
        self.record = msgspec.structs.replace(record, steps=self.steps)
        self.events: list[Event] = []

    def update(self, record: ExecutionRecord, event: Event) -> None:
        """Take the record's state after `event`; only step and terminal events change steps."""
        if type(event) is ProgressEvent and event.step is not None:
            self.steps[event.step.index] = event.step
        elif isinstance(event, TERMINAL_EVENTS):
            self.steps[:] = record.steps
        self.record = msgspec.structs.replace(record, steps=self.steps)


class SqliteStore:
    """Durable executions in one SQLite file; see the module docstring for how writes flow."""

    # An event's seq may run this far ahead of what is committed before `append` waits for
    # the writer; a restart numbers its first event past it, so no seq a client saw repeats.
    seq_headroom = 10_000

    def __init__(
        self, path: str | os.PathLike[str], *, flush_interval: float = 0.025, batch_size: int = 512
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._work = threading.Event()
        self._urgent = threading.Event()
        self._pending: dict[str, _Tail] = {}
        self._inflight: dict[str, _Tail] = {}
        self._queued = 0
        self._durable: dict[str, int] = {}
        self._progress_rows: dict[str, int] = {}
        self._swaps = self._attempts = self._written = 0
        self._failure: str | None = None
        self._stopping = False
        self._closed = False
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
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
        """Queue the event and a snapshot of its record; never touches the disk."""
        execution_id = record.execution_id
        with self._lock:
            if self._closed:
                raise StoreError(
                    f"store {self.path} is closed; event {event.seq} of {execution_id} was not kept"
                )
            durable = self._durable.get(execution_id)
            if durable is None:
                self._durable[execution_id] = event.seq - 1
            elif event.seq - durable >= self.seq_headroom:
                self._wait_for_writer(execution_id, event.seq)
            tail = self._pending.get(execution_id)
            if tail is None:
                tail = self._pending[execution_id] = _Tail(record)
            else:
                tail.update(record, event)
            events = tail.events
            if type(event) is ProgressEvent and events:
                last = events[-1]
                if type(last) is ProgressEvent and last.step is None:
                    events[-1] = event
                    return
            events.append(event)
            self._queued += 1
            if self._queued == 1:
                self._work.set()
            elif self._queued == self.batch_size:
                self._urgent.set()

    def _wait_for_writer(self, execution_id: str, seq: int) -> None:
        """Hold an execution `seq_headroom` events ahead of the file until the writer catches up."""
        while (
            seq - self._durable.get(execution_id, seq - 1) >= self.seq_headroom
            and self._failure is None
        ):
            self._urgent.set()
            self._work.set()
            self._done.wait(0.1)

    def flush(self) -> None:
        """Return once everything appended before the call is committed; StoreError if it cannot."""
        with self._lock:
            if self._closed or not (self._pending or self._inflight):
                return
            target = self._swaps + (1 if self._pending else 0)
            self._urgent.set()
            self._work.set()
            while self._attempts < target or (self._written < target and self._failure is None):
                self._done.wait()
            if self._written < target:
                raise StoreError(f"cannot write to store {self.path}: {self._failure}")

    def _run(self) -> None:
        """The writer thread: swap the queue out, commit it, repeat until closed."""
        while True:
            self._work.wait()
            self._urgent.wait(self.flush_interval)
            with self._lock:
                self._work.clear()
                self._urgent.clear()
                batch, self._pending = self._pending, {}
                self._inflight = batch
                self._queued = 0
                self._swaps += 1
                swap = self._swaps
                stopping = self._stopping
            failure = self._write(batch) if batch else None
            with self._lock:
                self._inflight = {}
                self._attempts = swap
                if failure is None:
                    self._written = swap
                    self._failure = None
                    for execution_id, tail in batch.items():
                        last = tail.events[-1]
                        if isinstance(last, TERMINAL_EVENTS):
                            self._durable.pop(execution_id, None)
                        else:
                            self._durable[execution_id] = last.seq
                else:
                    self._failure = failure
                    self._requeue(batch)
                self._done.notify_all()
                if stopping and (failure is not None or not self._pending):
                    return
            if failure is not None:
                time.sleep(min(1.0, self.flush_interval * 20))

    def _requeue(self, batch: dict[str, _Tail]) -> None:
        """Put a batch that failed to commit back in front of what was queued since."""
        for execution_id, tail in batch.items():
            newer = self._pending.get(execution_id)
            if newer is not None:
                tail.events = _coalesce(tail.events + newer.events)
                tail.steps, tail.record = newer.steps, newer.record
            self._queued += len(tail.events)
        self._pending = {**batch, **{k: v for k, v in self._pending.items() if k not in batch}}
        self._work.set()

    def _write(self, batch: dict[str, _Tail]) -> str | None:
        """Commit one batch in one transaction; the reason when it failed."""
        chunks: list[tuple[str, int, int, bytes]] = []
        records: list[tuple[str, str, str, float | None, bytes]] = []
        replaced: list[tuple[str, int]] = []
        progress_rows: dict[str, int | None] = {}
        for execution_id, tail in batch.items():
            events = tail.events
            stored = self._progress_rows.get(execution_id)
            if stored is not None and type(events[0]) is ProgressEvent:
                replaced.append((execution_id, stored))
            for i in range(0, len(events), CHUNK_EVENTS):
                chunk = events[i : i + CHUNK_EVENTS]
                chunks.append((execution_id, chunk[0].seq, chunk[-1].seq, encode(chunk)))
            last = events[-1]
            progress_rows[execution_id] = last.seq if len(chunk) == 1 and _plain(last) else None
            record = tail.record
            finished = (
                record.finished_at.timestamp() if record.finished and record.finished_at else None
            )
            records.append((execution_id, record.pipeline, record.status, finished, encode(record)))
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM events WHERE execution_id = ? AND last_seq = ?", replaced)
            conn.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)", chunks)
            conn.executemany(
                "INSERT INTO executions VALUES (?, ?, ?, ?, ?) ON CONFLICT (execution_id) "
                "DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at, "
                "record = excluded.record",
                records,
            )
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.error(
                "could not write %d executions to %s: %s; retrying", len(batch), self.path, exc
            )
            return str(exc) or type(exc).__name__
        for execution_id, seq in progress_rows.items():
            if seq is None:
                self._progress_rows.pop(execution_id, None)
            else:
                self._progress_rows[execution_id] = seq
        return None

    # -- reading ----------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection: reads never wait on the writer's transaction."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA query_only = ON")
            with self._lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc

    def _overlay(self) -> dict[str, ExecutionRecord]:
        """Copies of the newest queued record of every execution with uncommitted changes."""
        with self._lock:
            records = {k: t.record for k, t in self._inflight.items()}
            records.update((k, t.record) for k, t in self._pending.items())
            return {k: _snapshot(r) for k, r in records.items()}

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """A fresh copy of the record, queued changes included."""
        with self._lock:
            tail = self._pending.get(execution_id) or self._inflight.get(execution_id)
            if tail is not None:
                return _snapshot(tail.record)
        rows = self._query("SELECT record FROM executions WHERE execution_id = ?", (execution_id,))
        return record_decoder.decode(rows[0][0]) if rows else None

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """Written and queued events with `seq > after`, in order; lifecycle ones written first."""
        return self._events(execution_id, after, wait=True)

    def _events(self, execution_id: str, after: int, wait: bool) -> list[Event]:
        with self._lock:
            queued = [
                e
                for tails in (self._inflight, self._pending)
                if execution_id in tails
                for e in tails[execution_id].events
                if e.seq > after
            ]
        if wait and any(isinstance(e, LIFECYCLE_EVENTS) for e in queued):
            try:
                self.flush()
            except StoreError as exc:
                log.warning("replaying events of %s that are not yet kept: %s", execution_id, exc)
            else:
                return self._events(execution_id, after, wait=False)
        rows = self._query(
            "SELECT data FROM events WHERE execution_id = ? AND last_seq > ? ORDER BY last_seq",
            (execution_id, after),
        )
        by_seq = {e.seq: e for r in rows for e in chunk_decoder.decode(r[0]) if e.seq > after}
        by_seq.update((e.seq, e) for e in queued)
        return _coalesce([by_seq[s] for s in sorted(by_seq)])

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Newest first by id (creation order), filtered, from just before the `before` id."""
        overlay = self._overlay()
        where, params = [], []
        for column, value in (("status", status), ("pipeline", pipeline)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("execution_id < ?")
            params.append(before)
        sql = "SELECT execution_id, record FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY execution_id DESC LIMIT ?"
        rows = self._query(sql, (*params, limit + len(overlay)))
        page = {eid: data for eid, data in rows if eid not in overlay}
        found = {
            eid: r
            for eid, r in overlay.items()
            if (status is None or r.status == status)
            and (pipeline is None or r.pipeline == pipeline)
            and (before is None or eid < before)
        }
        ids = sorted({*page, *found}, reverse=True)[:limit]
        return [found[i] if i in found else record_decoder.decode(page[i]) for i in ids]

    def unfinished(self) -> list[ExecutionRecord]:
        """`pending` and `running` records, oldest first."""
        overlay = self._overlay()
        rows = self._query(
            "SELECT execution_id, record FROM executions WHERE status IN ('pending', 'running') "
            "ORDER BY execution_id"
        )
        records = {eid: record_decoder.decode(data) for eid, data in rows if eid not in overlay}
        records.update((eid, r) for eid, r in overlay.items() if not r.finished)
        return [records[i] for i in sorted(records)]

    def step_durations(self, pipeline: str, limit: int = 20) -> dict[str, list[float]]:
        """Durations of each step over the last `limit` completed executions, newest first."""
        return step_durations_of(self.list(status="completed", pipeline=pipeline, limit=limit))

    def prune(self, keep_count: int | None = None, keep_age_seconds: float | None = None) -> int:
        """Delete finished executions past the newest `keep_count` or older than the age; count.

        It writes on the calling thread, so call it off the event loop (a background thread).
        """
        if keep_count is None and keep_age_seconds is None:
            return 0
        self.flush()  # count the executions that finished but are still queued
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("BEGIN IMMEDIATE")
            doomed: set[str] = set()
            if keep_count is not None:
                doomed.update(
                    r[0]
                    for r in conn.execute(
                        "SELECT execution_id FROM executions WHERE finished_at IS NOT NULL "
                        "ORDER BY execution_id DESC LIMIT -1 OFFSET ?",
                        (max(0, keep_count),),
                    )
                )
            if keep_age_seconds is not None:
                doomed.update(
                    r[0]
                    for r in conn.execute(
                        "SELECT execution_id FROM executions WHERE finished_at < ?",
                        (time.time() - keep_age_seconds,),
                    )
                )
            ids = [(i,) for i in doomed]
            conn.executemany("DELETE FROM events WHERE execution_id = ?", ids)
            conn.executemany("DELETE FROM executions WHERE execution_id = ?", ids)
            conn.execute("COMMIT")
            return len(ids)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune store {self.path}: {exc}") from exc
        finally:
            conn.close()

    def close(self) -> None:
        """Commit everything queued, stop the writer and release the file; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self._urgent.set()
            self._work.set()
        self._thread.join()
        with self._lock:
            self._closed = True
            lost = sum(len(t.events) for t in self._pending.values())
            readers, self._readers = self._readers, []
        for conn in (*readers, self._writer):
            conn.close()
        os.close(self._lock_fd)
        _open_stores.discard(self)
        if lost:
            raise StoreError(
                f"store {self.path} closed with {lost} events not written: {self._failure}"
            )


def _take_lock(path: str) -> int:
    """Own the store file for this process's lifetime: an exclusive flock on `PATH.lock`."""
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise StoreError(
            f"cannot open store {path}: it is a directory; name a file such as {path}/stepstream.db"
        )
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
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
        raise StoreError(
            f"cannot open store {path}: permission denied in {directory}; "
            "make it writable for this user or choose another path"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}; choose another path") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        holder = (
            "this process"
            if owner == str(os.getpid())
            else f"another stepstream process (pid {owner})"
        )
        raise StoreError(
            f"store {path} is in use by {holder}; stop it or point this one at another file"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


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
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"cannot open store {path}: its schema version is {version}, this stepstream reads "
            f"version {SCHEMA_VERSION}; use the stepstream that wrote it or choose another path"
        )


@atexit.register
def _close_open_stores() -> None:
    """Commit what is queued when the interpreter exits without closing its stores."""
    for store in list(_open_stores):
        try:
            store.close()
        except StoreError as exc:
            log.error("%s", exc)


@hookimpl
def register_stores() -> dict[str, type]:
    """Offer `sqlite:///path.db`."""
    return {"sqlite": SqliteStore}
