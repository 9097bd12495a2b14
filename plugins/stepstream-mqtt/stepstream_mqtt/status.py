"""Each execution's record as the events published so far leave it: the retained status."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from stepstream import Envelope, ExecutionRecord, apply_event


class Statuses:
    """Folds published envelopes into records of their executions, as a receiver would."""

    def __init__(self) -> None:
        self._records: dict[str, ExecutionRecord] = {}

    def fold(self, envelopes: Sequence[Envelope]) -> list[ExecutionRecord]:
        """The records a batch touched, each as the batch leaves it.

        Folding the same batch again (a retried publish, a heartbeat) changes nothing.
        An execution whose record never came (no snapshot from its sender) has none.
        """
        touched: dict[str, ExecutionRecord] = {}
        for envelope in envelopes:
            event = envelope.event
            record = self._records.get(event.execution_id)
            snapshot = envelope.record
            if snapshot is not None and (record is None or snapshot.last_seq > record.last_seq):
                # Folding replaces fields and list items, never edits them: copy the list.
                record = msgspec.structs.replace(snapshot, steps=list(snapshot.steps))
                self._records[event.execution_id] = record
            if record is None:
                continue
            if event.seq > record.last_seq:
                apply_event(record, event)
            touched[event.execution_id] = record
        return list(touched.values())

    def forget_finished(self) -> None:
        """Drop finished executions once their last status is out: nothing follows them."""
        for execution_id in [i for i, r in self._records.items() if r.finished]:
            del self._records[execution_id]
