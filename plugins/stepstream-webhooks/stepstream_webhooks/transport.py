"""The `webhook+https://` transport: events queued on disk at once, delivered on its own task.

`publish` folds each envelope into its execution's record (so a webhook can say
which pipeline and how far), keeps the event types the URL asks for and adds
them to the receiver's outbox: it returns once they are on disk, so the
pipeline's publisher never waits for a slow receiver. `deliver`, which the
publisher runs, sends the outbox's head, signed afresh for every attempt, and
retries as `delivery` says for up to `retry_for` seconds; `flush` waits for the
outbox to drain at the end of a run and says what is left in it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import msgspec

from stepstream import (
    CancelledEvent,
    CompletedEvent,
    Envelope,
    ExecutionRecord,
    FailedEvent,
    apply_event,
    encode,
)
from stepstream.transports import Gap, TransportError

from .delivery import Delivered, Outcome, Refused, attempt, backoff
from .options import Options, parse
from .outbox import Claimed, Message, Outbox
from .payload import body, kind
from .signing import Signer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("stepstream.webhooks")

POLL = 1.0  # seconds between looks at an outbox that other processes may add to
LEASE_SLACK = 30.0  # seconds a lease outlasts the attempt it covers
FLUSH_POLL = 0.05  # seconds between looks at the outbox while flushing
USER_AGENT = f"stepstream-webhooks/{version('stepstream-webhooks')}"
HINTS = {
    401: "; check that the receiver and this sender share the signing secret",
    403: "; check that the receiver and this sender share the signing secret",
    410: "; the receiver wants no more webhooks: stop publishing to it",
}


class WebhookTransport:
    """Publishes the chosen events of this process's executions to one webhook receiver."""

    def __init__(self, url: str, options: Options, signer: Signer, outbox: Outbox) -> None:
        self.url = url
        self.options = options
        self._signer = signer
        self._outbox = outbox
        self._records: dict[str, ExecutionRecord] = {}  # per running execution, events applied
        self._queued: dict[str, int] = {}  # per running execution: the last seq taken
        self._wake: anyio.Event | None = None
        self._failing = False
        self._refused: set[int] = set()

    @classmethod
    def from_url(cls, url: str) -> WebhookTransport:
        """`webhook+https://receiver/path?events=...`; TransportError if the URL, the secret
        or the outbox is unusable."""
        options = parse(url)
        signer = Signer.from_env(options.secret_env)
        try:
            outbox = Outbox.for_receiver(options.outbox, options.receiver, options.outbox_size)
        except (OSError, sqlite3.Error) as exc:
            raise TransportError(
                f"cannot open the webhook outbox in {options.outbox}: {exc}"
            ) from exc
        return cls(url, options, signer, outbox)

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        """Queue the chosen events in the outbox; returns once they are on disk."""
        now = datetime.now(UTC)
        messages = [m for e in envelopes if (m := self._message(e, now)) is not None]
        if not messages:
            return []
        dropped = await self._keep(messages)
        if dropped:
            log.warning(
                "webhook outbox %s is full (%d): dropped the %d oldest",
                self._outbox.path,
                self._outbox.limit,
                dropped,
            )
        if self._wake is not None:
            self._wake.set()
        return []

    async def _keep(self, messages: list[Message]) -> int:
        """Add to the outbox, trying again while it cannot be written (locked long, disk full):
        the messages are built once, as their events are folded once; how many were dropped."""
        attempts = 0
        while True:
            try:
                return await anyio.to_thread.run_sync(self._outbox.add, messages)
            except sqlite3.Error as exc:
                if not attempts:
                    log.warning("cannot write to %s (%s); trying again", self._outbox.path, exc)
                attempts += 1
                await anyio.sleep(backoff(attempts, self.options.backoff, self.options.backoff_max))

    def _message(self, envelope: Envelope, now: datetime) -> Message | None:
        """The webhook for one envelope, if its type is wanted and it is news."""
        event = envelope.event
        execution_id = event.execution_id
        if event.seq <= self._queued.get(execution_id, 0):
            return None  # a heartbeat: the publisher sends an event again, unchanged
        record = self._records.get(execution_id)
        if record is None:
            if envelope.record is None:
                log.warning("no record came with the first event of %s: skipped", execution_id)
                return None
            record = msgspec.json.decode(encode(envelope.record), type=ExecutionRecord)
            self._records[execution_id] = record
        self._queued[execution_id] = event.seq
        if event.seq > record.last_seq:  # the snapshot may already include it
            apply_event(record, event)
        if isinstance(event, CompletedEvent | FailedEvent | CancelledEvent):
            del self._records[execution_id], self._queued[execution_id]
        if kind(event) not in self.options.events:
            return None
        return Message(
            msg_id=f"{execution_id}:{event.seq}",
            execution_id=execution_id,
            kind=kind(event),
            body=body(event, record, now),
            created=time.time(),
        )

    async def deliver(self) -> None:
        """Send what the outbox holds, oldest first, until cancelled."""
        import httpx  # here, not at import: loading the plugin stays cheap for every command

        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        async with httpx.AsyncClient(headers=headers) as client:
            while True:
                wake = self._wake = anyio.Event()
                try:
                    wait = await self._step(client)
                except Exception:  # a locked or broken outbox file: look again later
                    log.exception("webhook delivery to %s stumbled", self.options.receiver)
                    wait = POLL
                if wait > 0:
                    with anyio.move_on_after(min(wait, POLL)):
                        await wake.wait()

    async def _step(self, client: httpx.AsyncClient) -> float:
        """Send the outbox's head if it is due; else the seconds to wait before looking again."""
        options = self.options
        expired = await anyio.to_thread.run_sync(
            self._outbox.expire, time.time() - options.retry_for
        )
        if expired:
            log.error(
                "gave up on %d webhooks to %s: undelivered for %g s",
                expired,
                options.receiver,
                options.retry_for,
            )
        head = await anyio.to_thread.run_sync(self._outbox.claim, options.timeout + LEASE_SLACK)
        if not isinstance(head, Claimed):
            return POLL if head is None else head
        headers = self._signer.headers(head.msg_id, head.body, int(time.time()))
        try:
            outcome = await attempt(client, options.receiver, head.body, headers, options.timeout)
        except BaseException:  # cancelled mid-attempt: any process may send it at once
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._outbox.release, head)
            raise
        return await self._settle(head, outcome)

    async def _settle(self, head: Claimed, outcome: Outcome) -> float:
        """Remove or reschedule the head after an attempt; the seconds until the next."""
        options = self.options
        if isinstance(outcome, Delivered | Refused):
            await anyio.to_thread.run_sync(self._outbox.remove, head)
            if isinstance(outcome, Refused):
                self._note_refusal(head, outcome)
            elif self._failing:
                self._failing = False
                log.warning("delivering webhooks to %s again", options.receiver)
            return 0.0
        attempts = head.attempts + 1
        delay = outcome.after
        if delay is None:
            delay = backoff(attempts, options.backoff, options.backoff_max)
        if time.time() + delay > head.created + options.retry_for:
            await anyio.to_thread.run_sync(self._outbox.remove, head)
            log.error(
                "gave up on webhook %s to %s after %d attempts: %s",
                head.msg_id,
                options.receiver,
                attempts,
                outcome.reason,
            )
            return 0.0
        await anyio.to_thread.run_sync(self._outbox.retry, head, time.time() + delay)
        if not self._failing:
            self._failing = True
            log.warning(
                "cannot deliver webhooks to %s (%s); retrying for up to %g s",
                options.receiver,
                outcome.reason,
                options.retry_for,
            )
        return delay

    def _note_refusal(self, head: Claimed, refused: Refused) -> None:
        """An error the first time a receiver refuses with a status; details only after."""
        first = refused.status not in self._refused
        self._refused.add(refused.status)
        log.log(
            logging.ERROR if first else logging.INFO,
            "%s refused webhook %s (%s); not retried%s",
            self.options.receiver,
            head.msg_id,
            refused.reason,
            HINTS.get(refused.status, ""),
        )

    async def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the outbox to drain; how many webhooks wait in it."""
        with anyio.move_on_after(timeout):
            while await anyio.to_thread.run_sync(self._outbox.count):
                await anyio.sleep(FLUSH_POLL)
        left = await anyio.to_thread.run_sync(self._outbox.count)
        if left:
            log.warning(
                "%d webhooks to %s wait in %s; the next process publishing to it sends them",
                left,
                self.options.receiver,
                self._outbox.path,
            )
        return left

    async def aclose(self) -> None:
        """Close the outbox file; what waits in it stays for the next process."""
        await anyio.to_thread.run_sync(self._outbox.close)
