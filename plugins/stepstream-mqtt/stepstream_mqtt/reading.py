"""Reading the events topics back: a persistent session, batches acknowledged once kept.

The session (clean_session off, a stable client id) makes the broker keep the
subscription and queue QoS 1 messages while the reader is away; a message is
acknowledged only when the subscriber has kept it, so one read but not kept
comes again when the session resumes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiomqtt
import msgspec

from stepstream import Envelope, ExecutionRecord
from stepstream.transports import TransportError, redacted
from stepstream.transports.wire import decode_envelope

from .connection import CONNECT_TIMEOUT, Connection
from .topics import Topics
from .url import Settings

log = logging.getLogger("stepstream.transports.mqtt")

BATCH = 100  # messages per delivery at most; the broker's in-flight window is smaller anyway
FIRST_RETRY, LAST_RETRY = 0.2, 10.0  # seconds: the reconnect backoff's range

_record_decoder = msgspec.json.Decoder(ExecutionRecord)


@dataclass
class MqttDelivery:
    """Envelopes read from one connection, and the acknowledgements they wait for."""

    envelopes: list[Envelope]
    acks: list[Callable[[], object]] = field(default_factory=list)

    async def ack(self) -> None:
        """Send the held PUBACKs, in the order the messages came; the broker forgets them."""
        for ack in self.acks:
            ack()


class Reader:
    """Reads `{prefix}/executions/+/events` through one persistent session, until closed."""

    def __init__(self, settings: Settings, topics: Topics) -> None:
        self.settings = settings
        self.topics = topics
        self._connection: Connection | None = None
        self._closed = False

    async def read(self) -> AsyncIterator[MqttDelivery]:
        """Deliveries from where the session stands, reconnecting after any failure."""
        attempt = 0
        while not self._closed:
            try:
                self._connection = connection = await Connection.open(
                    self.settings,
                    client_id=self.settings.client_id,
                    persistent=True,
                    manual_acks=True,
                )
                await connection.client.subscribe(self.topics.all_events, qos=1)
                if attempt:
                    log.warning("reading from %s again", self._where)
                attempt = 0
                async for delivery in self._deliveries(connection):
                    yield delivery
            except (aiomqtt.MqttError, TransportError) as exc:
                if self._closed:
                    return
                if attempt == 0:
                    log.warning("cannot read from %s (%s); retrying", self._where, exc)
                attempt += 1
                await asyncio.sleep(_backoff(attempt))
            finally:
                await self._drop()

    async def _deliveries(self, connection: Connection) -> AsyncIterator[MqttDelivery]:
        """What has arrived, as one delivery each time the reader asks."""
        messages = connection.client.messages
        async for first in messages:
            batch = [first]
            while len(messages) and len(batch) < BATCH:
                batch.append(await anext(messages))
            delivery = MqttDelivery([])
            for message in batch:
                envelope = self._envelope(message)
                if envelope is not None:
                    delivery.envelopes.append(envelope)
                if message.qos:
                    delivery.acks.append(functools.partial(connection.ack, message.mid))
            yield delivery

    def _envelope(self, message: aiomqtt.Message) -> Envelope | None:
        """The envelope a message carries; None for an empty one, a foreign one, or a newer type."""
        payload = message.payload
        if not isinstance(payload, bytes | str) or not payload:
            return None  # a retained message being cleared, or nothing at all
        try:
            return decode_envelope(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "ignoring a message on %s: not a stepstream envelope (%s)", message.topic, exc
            )
            return None

    async def retained_record(self, execution_id: str) -> ExecutionRecord | None:
        """The record retained at an execution's status topic, if the broker holds one.

        A broker sends what it retains for a subscription before it answers the
        next one, so once a second subscription (to the execution's events, never
        retained) is confirmed, a retained status has come or there is none: no
        guessing how long to wait, and nothing to publish, so reading rights suffice.
        """
        topic = self.topics.status(execution_id)
        try:
            connection = await Connection.open(self.settings)
        except TransportError as exc:
            log.warning("cannot look up the status of %s: %s", execution_id, exc)
            return None
        found: bytes | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                client = connection.client
                await client.subscribe(topic, qos=0)
                await client.subscribe(self.topics.events(execution_id), qos=0)
                while len(client.messages):
                    message = await anext(client.messages)
                    if message.topic.matches(topic) and isinstance(message.payload, bytes):
                        found = message.payload or None
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("cannot look up the status of %s at %s: %s", execution_id, self._where, exc)
            return None
        finally:
            await connection.close()
        if found is None:
            return None
        try:
            return _record_decoder.decode(found)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "ignoring the status retained at %s: not a stepstream record (%s)", topic, exc
            )
            return None

    async def close(self) -> None:
        """End `read`: its connection goes, and the session stays on the broker."""
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    @property
    def _where(self) -> str:
        return redacted(self.settings.url)


def _backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so many readers do not reconnect in step."""
    return min(LAST_RETRY, FIRST_RETRY * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
