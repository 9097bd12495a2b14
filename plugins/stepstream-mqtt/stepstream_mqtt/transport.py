"""The MQTT transport: each event on its execution's topic, its latest record retained beside it.

Publishing sends, per batch, the retained status of each execution the batch
touched (its record folded through the batch, also at its pipeline's topic),
then every envelope on its execution's events topic, all at QoS 1, and returns
once the broker confirmed them. A broker keeps no history, only what is
retained and what it queues for a persistent session, so it reports no gaps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import aiomqtt

from stepstream import Envelope, encode, status_of
from stepstream.transports import Gap, TransportError
from stepstream.transports.wire import encode_envelope

from .connection import Connection, Message, failure
from .reading import MqttDelivery, Reader
from .status import Statuses
from .topics import Topics
from .url import Settings, parse


class MqttTransport:
    """Publishes to and reads from one broker, under one topic prefix."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.url
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self._statuses = Statuses()
        self._sender: Connection | None = None
        self._reader = Reader(settings, self.topics)

    @classmethod
    def from_url(cls, url: str) -> MqttTransport:
        """`mqtt[s]://[user[:password]@]host[:port][/prefix][?client_id=..&cafile=..]`."""
        return cls(parse(url))

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        """Statuses then events, QoS 1; TransportError when the broker did not confirm them all."""
        messages = self._messages(envelopes)
        try:
            if self._sender is None:
                self._sender = await Connection.open(self.settings)
            await self._sender.publish_all(messages)
        except aiomqtt.MqttError as exc:
            await self._drop_sender()
            raise failure(self.settings, exc) from None
        except TransportError:
            await self._drop_sender()
            raise
        self._statuses.forget_finished()
        return []

    def _messages(self, envelopes: Sequence[Envelope]) -> list[Message]:
        messages = []
        for record in self._statuses.fold(envelopes):
            status = encode(record)
            messages.append(Message(self.topics.status(record.execution_id), status, retain=True))
            messages.append(
                Message(self.topics.pipeline_status(record.pipeline), status, retain=True)
            )
        messages += [
            Message(self.topics.events(e.event.execution_id), encode_envelope(e)) for e in envelopes
        ]
        return messages

    def read(self) -> AsyncIterator[MqttDelivery]:
        """What was published under the prefix, from where this reader's session stands."""
        return self._reader.read()

    async def backfill(self, execution_id: str, after: int) -> list[Envelope]:
        """For an execution never seen here, its retained record to start from.

        The broker holds no past events, so a gap in a known execution stays one.
        """
        if after:
            return []
        record = await self._reader.retained_record(execution_id)
        if record is None:
            return []
        return [Envelope(event=status_of(record, seq=record.last_seq), record=record)]

    async def aclose(self) -> None:
        """Close both connections; a reader's session stays on the broker."""
        await self._drop_sender()
        await self._reader.close()

    async def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.close()
