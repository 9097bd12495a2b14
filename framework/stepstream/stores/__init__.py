"""Execution stores: where records and event logs live, chosen by URL (`memory://`, `sqlite:///x.db`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import StoreError

if TYPE_CHECKING:  # annotations only: the protocol and `open_store` need no msgspec
    from ..model.events import Event, ExecutionRecord, LogLine, Status, StepState


@runtime_checkable
class ExecutionStore(Protocol):
    """Where records and logs live; every method is safe to call from any thread.

    The recorder appends each event with the record state it produced; a store
    keeps its own copy (folding events with `model.fold.apply_event`) and hands
    out copies, never an object another component changes.
    """

    # How far an event's seq may run past the stored `last_seq` without being kept yet
    # (events not yet written when the process died); a restart numbers its first event
    # of an execution `last_seq + seq_headroom + 1`, so no seq a client saw is used again.
    seq_headroom: int

    @classmethod
    def from_url(cls, url: str) -> ExecutionStore:
        """Open the store a URL names; raise StoreError with a message naming what is wrong."""
        ...

    def append(self, record: ExecutionRecord, event: Event) -> None:
        """Keep `event` and the record state it produced; the first event creates the record.

        `record` belongs to the caller: read it during the call, never keep it.
        """
        ...

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record as of the last appended event (the caller's to keep), or None."""
        ...

    def append_logs(self, execution_id: str, lines: list[LogLine], keep: int) -> None:
        """Keep captured lines of an execution, dropping all but its last `keep` lines."""
        ...

    def logs(self, execution_id: str, after: int = 0) -> list[LogLine]:
        """The kept lines numbered above `after`, in order."""
        ...

    def by_idempotency_key(self, key: str) -> ExecutionRecord | None:
        """The record created with this `idempotency_key`, or None."""
        ...

    def events(self, execution_id: str, after: int = 0) -> list[Event]:
        """The logged events with `seq > after`, in order."""
        ...

    def list(
        self,
        *,
        status: Status | None = None,
        pipeline: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ExecutionRecord]:
        """Records newest first; `before` is an execution id to page from (exclusive)."""
        ...

    def unfinished(self) -> list[ExecutionRecord]:
        """`pending` and `running` records, oldest first: what a restarted engine picks up."""
        ...

    def step_durations(self, pipeline: str, limit: int = 20) -> dict[str, list[float]]:
        """Each step's durations over the last `limit` completed executions of `pipeline`."""
        ...

    def prune(self, keep_count: int | None = None, keep_age_seconds: float | None = None) -> int:
        """Delete the finished executions (and events) beyond the newest `keep_count` or that
        finished over `keep_age_seconds` ago, never pending or running ones; how many went."""
        ...

    def flush(self) -> None:
        """Return once everything appended so far is kept; a no-op if appends write inline."""
        ...

    def on_kept(
        self,
        callback: Callable[[], None],
        failed: Callable[[StoreError], None] | None = None,
    ) -> None:
        """Call `callback` once everything appended so far is kept; at once if it already is.

        It may run on another thread (a store's writer), and never runs if the store
        closes without keeping those events. Until then, reads do not show a terminal
        event still waiting to be kept: what a client is told cannot be taken back.
        With `failed`, a write that fails to keep them calls `failed` instead (once, with
        the error `flush` would raise) and `callback` never runs: a caller that answers
        a client hears of the failure at once rather than after the store's retries.
        """
        ...

    def close(self) -> None:
        """Flush what is pending and release files or connections."""
        ...


def step_durations_of(runs: Iterable[Iterable[StepState]]) -> dict[str, list[float]]:
    """`{step name: [duration, ...]}` of the completed steps of `runs` (step lists), in order."""
    durations: dict[str, list[float]] = {}
    for steps in runs:
        for step in steps:
            if step.status == "completed" and step.duration_seconds is not None:
                durations.setdefault(step.name, []).append(step.duration_seconds)
    return durations


def open_store(url: str, schemes: Mapping[str, type[ExecutionStore]]) -> ExecutionStore:
    """Open the store a URL names, e.g. `memory://` or `sqlite:///var/stepstream.db`."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreError(
            f"store URL {url!r} has no scheme; use e.g. memory:// or sqlite:///path.db"
        )
    store_class = schemes.get(scheme)
    if store_class is None:
        known = ", ".join(f"{s}://" for s in sorted(schemes))
        raise StoreError(f"no store plugin handles {scheme}:// (installed: {known})")
    return store_class.from_url(url)
