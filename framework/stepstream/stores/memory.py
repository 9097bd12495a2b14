"""The in-memory store: the default for `stepstream run` and for tests."""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from ..errors import StoreError
from ..model.events import Event, ExecutionRecord, LogLine, ProgressEvent, Status
from ..model.fold import append_coalesced, apply_event, copy_record
from . import step_durations_of


class MemoryStore:
    """Records and event logs in dicts; each record is the store's own, kept by the one fold.

    Each execution has one appending thread at a time, so progress appended to an
    existing execution needs no lock; the lock guards the set of executions and the
    index of ids by status, which only lifecycle events change.
    """

    seq_headroom = 0

    def __init__(self) -> None:
        self._records: dict[str, ExecutionRecord] = {}
        self._logs: dict[str, list[Event]] = {}
        self._ids: list[str] = []
        self._by_status: defaultdict[str, list[str]] = defaultdict(list)  # sorted ids by status
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
                bisect.insort(self._by_status[record.status], execution_id)
                if record.idempotency_key is not None:
                    self._keys[record.idempotency_key] = execution_id
            return
        append_coalesced(log, event)
        stored = self._records[execution_id]
        if type(event) is ProgressEvent:  # the per-step path: progress never moves the status
            apply_event(stored, event)
            return
        with self._lock:
            was = stored.status
            apply_event(stored, event)
            if stored.status != was:
                self._unindex(execution_id, was)
                bisect.insort(self._by_status[stored.status], execution_id)

    def _unindex(self, execution_id: str, status: str) -> None:
        """Take the id out of its status's list (lock held)."""
        ids = self._by_status[status]
        del ids[bisect.bisect_left(ids, execution_id)]

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
        """Newest first, filtered, from just before the `before` id: a status's own ids."""
        with self._lock:
            ids = self._ids if status is None else self._by_status[status]
            end = bisect.bisect_left(ids, before) if before else len(ids)
            page: list[ExecutionRecord] = []
            for i in range(end - 1, -1, -1):
                record = self._records[ids[i]]
                if pipeline is None or record.pipeline == pipeline:
                    page.append(record)
                    if len(page) >= limit:
                        break
        return [copy_record(r) for r in page]

    def unfinished(self) -> list[ExecutionRecord]:
        """`pending` and `running` records, oldest first."""
        with self._lock:
            ids = sorted(self._by_status["pending"] + self._by_status["running"])
            records = [self._records[i] for i in ids]
        return [copy_record(r) for r in records]

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
                record = self._records.pop(execution_id)
                self._unindex(execution_id, record.status)
                if record.idempotency_key is not None:
                    del self._keys[record.idempotency_key]
                del self._logs[execution_id]
                self._lines.pop(execution_id, None)
            self._ids = [i for i in self._ids if i not in doomed]
        return len(doomed)

    def flush(self) -> None:
        """Everything is kept as soon as it is appended."""

    def on_kept(
        self,
        callback: Callable[[], None],
        failed: Callable[[StoreError], None] | None = None,
    ) -> None:
        """Everything is kept as soon as it is appended: call it now."""
        callback()

    def close(self) -> None:
        """Nothing to release."""
