"""The in-memory store: the default for `stepstream run` and for tests."""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable

from ..hookspecs import hookimpl
from ..model.events import Event, ExecutionRecord, LogLine, Status
from ..model.fold import append_coalesced, apply_event, copy_record
from . import step_durations_of


class MemoryStore:
    """Records and event logs in dicts; each record is the store's own, kept by the one fold.

    Each execution has one appending thread at a time, so appends to an existing
    execution need no lock; the lock guards the set of executions.
    """

    seq_headroom = 0

    def __init__(self) -> None:
        self._records: dict[str, ExecutionRecord] = {}
        self._logs: dict[str, list[Event]] = {}
        self._ids: list[str] = []
        self._keys: dict[str, str] = {}  # idempotency key: execution id
        self._lines: dict[str, deque[LogLine]] = {}  # captured log lines, the last ones
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """`memory://` takes no options."""
        return cls()

    def append(self, record: ExecutionRecord, event: Event) -> None:
        """Keep the event, dropping the progress event it supersedes, and fold it in."""
        execution_id = record.execution_id
        log = self._logs.get(execution_id)
        if log is None:
            with self._lock:
                self._records[execution_id] = copy_record(record)
                self._logs[execution_id] = [event]
                bisect.insort(self._ids, execution_id)
                if record.idempotency_key is not None:
                    self._keys[record.idempotency_key] = execution_id
            return
        append_coalesced(log, event)
        apply_event(self._records[execution_id], event)

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """A copy of the record: the store goes on folding events into its own."""
        record = self._records.get(execution_id)
        return None if record is None else copy_record(record)

    def append_logs(self, execution_id: str, lines: list[LogLine], keep: int) -> None:
        """Keep the lines, at most the last `keep` of the execution."""
        kept = self._lines.get(execution_id)
        if kept is None or kept.maxlen != keep:
            kept = self._lines[execution_id] = deque(kept or (), maxlen=keep)
        kept.extend(lines)

    def logs(self, execution_id: str, after: int = 0) -> list[LogLine]:
        """The kept lines numbered above `after`."""
        return [line for line in self._lines.get(execution_id, ()) if line.n > after]

    def by_idempotency_key(self, key: str) -> ExecutionRecord | None:
        """The record created with this idempotency key, if it is still kept."""
        execution_id = self._keys.get(key)
        return None if execution_id is None else self.get(execution_id)

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """A copy of the log tail, safe to iterate while the execution goes on."""
        log = self._logs.get(execution_id, [])
        if after <= 0:
            return list(log)
        return [e for e in log if e.seq > after]

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Newest first, filtered, from just before the `before` id."""
        with self._lock:
            end = bisect.bisect_left(self._ids, before) if before else len(self._ids)
            ids = self._ids[:end]
        page: list[ExecutionRecord] = []
        for execution_id in reversed(ids):
            record = self._records.get(execution_id)
            if record is None:  # pruned meanwhile
                continue
            if status is not None and record.status != status:
                continue
            if pipeline is not None and record.pipeline != pipeline:
                continue
            page.append(copy_record(record))
            if len(page) >= limit:
                break
        return page

    def unfinished(self) -> list[ExecutionRecord]:
        """`pending` and `running` records, oldest first."""
        with self._lock:
            records = [self._records[i] for i in self._ids]
        return [copy_record(r) for r in records if not r.finished]

    def step_durations(self, pipeline: str, limit: int = 20) -> dict[str, list[float]]:
        """Durations of each step over the last `limit` completed executions, newest first."""
        completed = self.list(status="completed", pipeline=pipeline, limit=limit)
        return step_durations_of(r.steps for r in completed)

    def prune(self, keep_count: int | None = None, keep_age_seconds: float | None = None) -> int:
        """Forget finished executions beyond the newest `keep_count` or older than the age."""
        with self._lock:
            finished = [i for i in self._ids if self._records[i].finished]
            excess = 0 if keep_count is None else max(0, len(finished) - keep_count)
            doomed = set(finished[:excess])
            if keep_age_seconds is not None:
                cutoff = time.time() - keep_age_seconds
                for i in finished:
                    finished_at = self._records[i].finished_at
                    if finished_at is not None and finished_at.timestamp() < cutoff:
                        doomed.add(i)
            for execution_id in doomed:
                key = self._records.pop(execution_id).idempotency_key
                if key is not None:
                    del self._keys[key]
                del self._logs[execution_id]
                self._lines.pop(execution_id, None)
            self._ids = [i for i in self._ids if i not in doomed]
        return len(doomed)

    def flush(self) -> None:
        """Everything is kept as soon as it is appended."""

    def on_kept(self, callback: Callable[[], None]) -> None:
        """Everything is kept as soon as it is appended: call it now."""
        callback()

    def close(self) -> None:
        """Nothing to release."""


@hookimpl
def register_stores() -> dict[str, type]:
    """Offer `memory://`."""
    return {"memory": MemoryStore}
