"""The subscriber: brings what a readable transport carries into an engine, nothing lost.

Each batch is applied (`Engine.receive`: idempotent, ordered per execution), made
durable in the engine's store, and only then acknowledged, so a receiver killed
at any moment reads again whatever it had not kept. A gap is filled from what the
transport still holds; what it no longer holds (a stream trimmed past it) is
reported in the log and the event applied anyway, so the execution goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ..model.events import Envelope
from ..tracking.recorder import Receipt
from . import ReadableTransport, redacted

if TYPE_CHECKING:
    from ..runtime.engine import Engine

log = logging.getLogger("stepstream.transports")


class Subscriber:
    """Receives from `transport` into `engine`; start `run` on a task."""

    def __init__(self, engine: Engine, transport: ReadableTransport) -> None:
        self.engine = engine
        self.transport = transport
        self.received = 0  # envelopes read, duplicates included
        self.gaps_reported = 0  # gaps the transport could not fill

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read, apply, keep, acknowledge; until cancelled."""
        task_status.started()
        async for delivery in self.transport.read():
            for envelope in delivery.envelopes:
                await self._receive(envelope)
            self.received += len(delivery.envelopes)
            await anyio.to_thread.run_sync(self.engine.flush)  # kept before acknowledged
            await delivery.ack()

    async def _receive(self, envelope: Envelope) -> None:
        receipt = self._apply(envelope)
        if receipt is not Receipt.GAP and receipt is not Receipt.UNKNOWN:
            return
        event = envelope.event
        have = 0 if receipt is Receipt.UNKNOWN else self.engine.get(event.execution_id).last_seq
        for missing in await self.transport.backfill(event.execution_id, have):
            self._apply(missing)
        if self._apply(envelope) in (Receipt.GAP, Receipt.UNKNOWN):
            self.gaps_reported += 1
            log.warning(
                "%s no longer holds events of %s after %d (before %d); they are lost",
                redacted(self.transport.url),
                event.execution_id,
                have,
                event.seq,
            )
            if receipt is Receipt.GAP:
                self._apply(Envelope(event=event))  # carry on from here

    def _apply(self, envelope: Envelope) -> Receipt:
        try:
            return self.engine.receive(envelope)
        except ValueError as exc:  # names a step the execution does not have
            log.error("ignoring an event from %s: %s", redacted(self.transport.url), exc)
            return Receipt.DUPLICATE
