"""The in-memory store: the default for `stepstream run` and for tests."""

from __future__ import annotations

import bisect
import threading

from ..events import Event, ExecutionRecord, ProgressEvent, Status
from ..plugins import hookimpl


class MemoryStore:
    """Records and event logs in dicts; plain progress events coalesce so logs stay small."""

    def __init__(self) -> None:
        self._records: dict[str, ExecutionRecord] = {}
        self._logs: dict[str, list[Event]] = {}
        self._ids: list[str] = []
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """`memory://` takes no options."""
        return cls()

    def append(self, record: ExecutionRecord, event: Event) -> None:
        """Keep the event; a progress event without a step transition replaces its like."""
        log = self._logs.get(record.execution_id)
        if log is None:
            with self._lock:
                self._records[record.execution_id] = record
                self._logs[record.execution_id] = [event]
                bisect.insort(self._ids, record.execution_id)
            return
        if (
            type(event) is ProgressEvent
            and event.step is None
            and type(log[-1]) is ProgressEvent
            and log[-1].step is None
        ):
            log[-1] = event
        else:
            log.append(event)

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The live record object itself: the tracker updates it in place."""
        return self._records.get(execution_id)

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
            record = self._records[execution_id]
            if status is not None and record.status != status:
                continue
            if pipeline is not None and record.pipeline != pipeline:
                continue
            page.append(record)
            if len(page) >= limit:
                break
        return page

    def close(self) -> None:
        """Nothing to release."""


@hookimpl
def register_stores() -> dict[str, type]:
    """Offer `memory://`."""
    return {"memory": MemoryStore}
