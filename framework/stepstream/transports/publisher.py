"""The publisher: sends the events of the executions this process runs to one transport.

It reads an unbounded watch of the engine on its own task, so the pipeline never
waits for the network: while the transport is slow or down, progress events
wait coalesced (one per execution, carrying the step changes they replaced) and
lifecycle events queue in order, never dropped while the process lives. A
batch that could not be delivered is retried with exponential backoff and
jitter; one the receiver refuses as malformed is dropped and counted. With no
event to send for `heartbeat` seconds, the latest event of each running
execution is sent again, so a receiver can tell a quiet step from a vanished
worker. A transport that queues on its own (`QueueingTransport`) delivers on a
task the publisher runs beside its own, and its queue counts in `flush`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ..errors import StepstreamError
from ..model.events import TERMINAL_EVENTS, Envelope, Event, ExecutionRecord
from ..model.fold import as_created
from ..tracking.recorder import this_process
from . import (
    CancelRelay,
    QueueingTransport,
    Transport,
    TransportError,
    TransportRejected,
    redacted,
)
from .wire import Gap

if TYPE_CHECKING:
    from ..runtime.engine import Engine

log = logging.getLogger("stepstream.transports")

BATCH = 500  # events per publish at most
LINGER = 0.01  # seconds a batch waits to fill once its first event is there; progress coalesces
HEARTBEAT = 15.0  # seconds of silence before the running executions' latest events are resent
FIRST_RETRY, LAST_RETRY = 0.2, 10.0  # seconds: the backoff's range


class Publisher:
    """Carries this engine's executions to `transport`; start `run` on a task, then `flush`."""

    def __init__(
        self,
        engine: Engine,
        transport: Transport,
        *,
        heartbeat: float = HEARTBEAT,
        linger: float = LINGER,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.heartbeat = heartbeat
        self.linger = linger  # seconds a batch waits to fill; 0 sends each event at once
        self.delivered = 0  # events the transport accepted
        self.dropped = 0  # events a receiver refused as malformed: never delivered
        self.left = 0  # events still undelivered when `publishing` gave up waiting
        self._watch = engine.watch(bounded=False)  # before any execution it carries exists
        self._sent: dict[str, Envelope] = {}  # per execution: the last envelope delivered
        self._ours: dict[str, bool] = {}  # per execution: does it run in this process?
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def where(self) -> str:
        """The transport's URL, fit for a message."""
        return redacted(self.transport.url)

    @property
    def undelivered(self) -> int:
        """Events waiting or being retried: what is lost if the process ends now."""
        return self._watch.pending + self._in_flight

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Send until cancelled."""
        task_status.started()
        async with anyio.create_task_group() as tasks:
            if isinstance(self.transport, CancelRelay):
                tasks.start_soon(self._hear_cancels, self.transport)
            if isinstance(self.transport, QueueingTransport):
                tasks.start_soon(self.transport.deliver)
            await self._send_forever()
            tasks.cancel_scope.cancel()

    async def _hear_cancels(self, relay: CancelRelay) -> None:
        """Cancel what runs here when another process (a server) asks for it.

        Every publisher on a broker hears every request: one for an execution this
        process does not run is another's to act on. Acting on it would ask the
        broker again (the engine relays cancels of executions run elsewhere), and
        every process subscribed and publishing there would echo it forever.
        """
        async for execution_id in relay.cancel_requests():
            record = self.engine.store.get(execution_id)
            if record is None or record.origin != this_process():
                continue
            try:
                self.engine.cancel(execution_id)
            except StepstreamError as exc:  # finished meanwhile
                log.info("cancel of %s from %s not applied: %s", execution_id, self.where, exc)

    async def _send_forever(self) -> None:
        try:
            while True:
                events: list[Event] = []
                with anyio.move_on_after(self.heartbeat):
                    events = await self._watch.take(BATCH, self.linger)
                if events:
                    await self._send(self._envelopes(events))
                else:
                    await self._send(self._heartbeats(), heartbeat=True)
        finally:
            self._watch.close()

    async def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for everything queued to be delivered; what is left.

        A `QueueingTransport`'s own queue is waited for in the time that remains, and counts.
        """
        deadline = anyio.current_time() + timeout
        with anyio.move_on_after(timeout):
            while self.undelivered:
                await anyio.sleep(0.01)
        left = self.undelivered
        if isinstance(self.transport, QueueingTransport):
            left += await self.transport.flush(max(0.0, deadline - anyio.current_time()))
        return left

    def _envelopes(self, events: list[Event]) -> list[Envelope]:
        envelopes = []
        for event in events:
            execution_id = event.execution_id
            if not self._runs_here(execution_id):
                if isinstance(event, TERMINAL_EVENTS):
                    self._ours.pop(execution_id, None)  # nothing follows: do not keep it forever
                continue
            previous = self._sent.get(execution_id)
            envelopes.append(
                Envelope(
                    event=event,
                    after=previous.event.seq if previous else 0,
                    record=None if previous else self._snapshot(event),
                )
            )
            self._sent[execution_id] = envelopes[-1]
        return envelopes

    def _snapshot(self, first: Event) -> ExecutionRecord:
        """The record a receiver starts from: as the execution's first event left it.

        The execution may have run on, even ended, before its first batch left (a
        linger, an outage); a later state would hide the events in between.
        """
        record = self.engine.get(first.execution_id)
        return as_created(record) if first.seq == 1 < record.last_seq else record

    def _runs_here(self, execution_id: str) -> bool:
        """Only what this process runs is sent: what it received came from elsewhere."""
        ours = self._ours.get(execution_id)
        if ours is None:
            ours = self._ours[execution_id] = self.engine.get(execution_id).origin == this_process()
        return ours

    def _heartbeats(self) -> list[Envelope]:
        return [
            Envelope(event=sent.event, after=sent.after)
            for sent in self._sent.values()
            if not isinstance(sent.event, TERMINAL_EVENTS)
        ]

    async def _send(
        self, envelopes: list[Envelope], *, heartbeat: bool = False, refill: bool = False
    ) -> None:
        """Deliver, retrying with backoff until it works; then ask for what a receiver misses."""
        if not envelopes:
            return
        self._in_flight = 0 if heartbeat else len(envelopes)
        attempt = 0
        try:
            while True:
                try:
                    gaps = await self.transport.publish(envelopes)
                    break
                except TransportRejected as exc:
                    self.dropped += len(envelopes)
                    log.error("%s refused %d events: %s", self.where, len(envelopes), exc)
                    return
                except TransportError as exc:
                    if attempt == 0:
                        log.warning("cannot publish to %s (%s); retrying", self.where, exc)
                    attempt += 1
                    await anyio.sleep(_backoff(attempt))
            if attempt:
                log.warning("publishing to %s again after %d retries", self.where, attempt)
        finally:
            self._in_flight = 0
        if not heartbeat:
            self.delivered += len(envelopes)
            for envelope in envelopes:
                if isinstance(envelope.event, TERMINAL_EVENTS):
                    self._sent.pop(envelope.event.execution_id, None)
                    self._ours.pop(envelope.event.execution_id, None)
        if gaps and refill:
            log.error("%s still misses events after a refill: %s", self.where, gaps)
        elif gaps:
            await self._fill(gaps)

    async def _fill(self, gaps: Sequence[Gap]) -> None:
        """Send again, from this process's own store, what a receiver says it misses."""
        for gap in gaps:
            events = self.engine.events(gap.execution_id, gap.have)
            if not events:
                continue
            log.warning(
                "%s misses events of %s after %d; sending %d again",
                self.where,
                gap.execution_id,
                gap.have,
                len(events),
            )
            first = events[0]
            refill = [
                Envelope(
                    event=first,
                    after=gap.have,
                    record=None if gap.have else self.engine.get(gap.execution_id),
                )
            ]
            refill += [
                Envelope(event=e, after=before.seq) for before, e in itertools.pairwise(events)
            ]
            await self._send(refill, refill=True)


def _backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so many workers do not retry in step."""
    return min(LAST_RETRY, FIRST_RETRY * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


@asynccontextmanager
async def publishing(
    engine: Engine,
    transports: Sequence[Transport],
    *,
    flush_timeout: float,
    linger: float = LINGER,
) -> AsyncIterator[list[Publisher]]:
    """Publish the engine's executions to each transport while the block runs.

    On leaving, waits up to `flush_timeout` seconds in all, for every publisher at
    once, for what is queued to be delivered (each publisher's `left` says what was
    not), then closes them. An error of the block comes out as it is, not wrapped in
    the senders' ExceptionGroup.
    """
    publishers = [Publisher(engine, transport, linger=linger) for transport in transports]
    failure: Exception | None = None

    async def settle(publisher: Publisher) -> None:
        publisher.left = await publisher.flush(flush_timeout)

    try:
        async with anyio.create_task_group() as senders:
            for publisher in publishers:
                await senders.start(publisher.run)
            try:
                yield publishers
            except Exception as exc:
                failure = exc
            finally:
                with anyio.CancelScope(shield=True):
                    async with anyio.create_task_group() as flushing:
                        for publisher in publishers:
                            flushing.start_soon(settle, publisher)
                senders.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for transport in transports:
                await transport.aclose()
    if failure is not None:
        raise failure
