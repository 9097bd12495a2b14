"""The subscriber: brings what a readable transport carries into an engine, nothing lost.

Each batch is applied (`Engine.receive`: idempotent, ordered per execution), made
durable in the engine's store, and only then acknowledged, so a receiver killed
at any moment reads again whatever it had not kept. A gap is filled from what the
transport still holds; what it no longer holds (a stream trimmed past it) is
reported in the log and the event applied anyway, so the execution goes on. An
execution it never saw the start of, and cannot learn from the transport, is
reported once and its events set aside. A transport that fails (`TransportError`)
is read again after a pause: a broken broker never takes the server down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel

from ..model.events import Envelope
from ..tracking.recorder import Receipt
from . import ReadableTransport, TransportError, redacted

if TYPE_CHECKING:
    from ..runtime.engine import Engine

log = logging.getLogger("stepstream.transports")

YIELD_EVERY = 100  # envelopes applied between letting the loop's other tasks run
FIRST_RETRY = 0.5  # seconds before reading a failed transport again; doubles, up to LAST_RETRY
LAST_RETRY = 30.0


class Subscriber:
    """Receives from `transport` into `engine`; start `run` on a task."""

    def __init__(self, engine: Engine, transport: ReadableTransport) -> None:
        self.engine = engine
        self.transport = transport
        self.received = 0  # envelopes read, duplicates included
        self.gaps_reported = 0  # gaps the transport could not fill
        self._unknown: set[str] = set()  # executions reported as never seen from their start

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Read, apply, keep, acknowledge; until cancelled or the transport's reading ends."""
        task_status.started()
        pause = FIRST_RETRY
        while True:
            try:
                async for delivery in self.transport.read():
                    for n, envelope in enumerate(delivery.envelopes, 1):
                        await self._receive(envelope)
                        if n % YIELD_EVERY == 0:  # a big batch must not stall the clients
                            await anyio.lowlevel.checkpoint()
                    self.received += len(delivery.envelopes)
                    await anyio.to_thread.run_sync(self.engine.flush)  # kept before acknowledged
                    await delivery.ack()
                    pause = FIRST_RETRY
                return
            except TransportError as exc:
                log.warning(
                    "reading %s failed: %s; reading again in %gs",
                    redacted(self.transport.url),
                    exc,
                    pause,
                )
                await anyio.sleep(pause)
                pause = min(LAST_RETRY, pause * 2)

    async def _receive(self, envelope: Envelope) -> None:
        event = envelope.event
        receipt = self._apply(envelope)
        if receipt is Receipt.UNKNOWN and event.execution_id in self._unknown:
            return  # reported already; set aside unless an envelope brings its record
        if receipt is not Receipt.GAP and receipt is not Receipt.UNKNOWN:
            return
        have = 0 if receipt is Receipt.UNKNOWN else self.engine.get(event.execution_id).last_seq
        try:
            held = await self.transport.backfill(event.execution_id, have)
        except TransportError as exc:
            log.warning("%s could not say what it holds: %s", redacted(self.transport.url), exc)
            held = []
        for missing in held:
            self._apply(missing)
        if self._apply(envelope) in (Receipt.GAP, Receipt.UNKNOWN):
            self.gaps_reported += 1
            if receipt is Receipt.GAP:
                log.warning(
                    "%s no longer holds events of %s after %d (before %d); they are lost",
                    redacted(self.transport.url),
                    event.execution_id,
                    have,
                    event.seq,
                )
                self._apply(Envelope(event=event))  # carry on from here
            else:
                self._unknown.add(event.execution_id)
                log.warning(
                    "%s holds no start of %s (first seen at event %d); its events are set aside",
                    redacted(self.transport.url),
                    event.execution_id,
                    event.seq,
                )

    def _apply(self, envelope: Envelope) -> Receipt:
        try:
            return self.engine.receive(envelope)
        except ValueError as exc:  # names a step the execution does not have
            log.error("ignoring an event from %s: %s", redacted(self.transport.url), exc)
            return Receipt.DUPLICATE
