"""One connection to the broker: open it, publish batches on it, know at once when it is gone."""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import aiomqtt
import anyio
import paho.mqtt.client as paho

from stepstream.transports import TransportError, redacted

from .url import Settings

CONNECT_TIMEOUT = 10.0  # seconds for the broker to accept a connection
ACK_TIMEOUT = 30.0  # seconds for the broker to acknowledge a batch
CLOSE_TIMEOUT = 2.0  # seconds for a polite goodbye before the socket is dropped


@dataclass(frozen=True)
class Message:
    """One PUBLISH: always QoS 1, so the broker confirms it."""

    topic: str
    payload: bytes
    retain: bool = False


class Connection:
    """An open MQTT session; `close` it when done."""

    def __init__(self, settings: Settings, client: aiomqtt.Client) -> None:
        self.settings = settings
        self.client = client
        self._lost: asyncio.Future[None] | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        client_id: str | None = None,
        persistent: bool = False,
        manual_acks: bool = False,
    ) -> Connection:
        """Connect; TransportError saying why not.

        `persistent` keeps the session (subscriptions, queued messages) while away;
        `manual_acks` holds each received message's PUBACK until `ack(mid)`.
        """
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=client_id,
            clean_session=not persistent,
            timeout=CONNECT_TIMEOUT,
            tls_context=_tls(settings) if settings.tls else None,
        )
        if manual_acks:
            # Before connecting: a resumed session's queued messages follow the CONNACK at once.
            _paho(client).manual_ack_set(True)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise failure(settings, exc) from None
        return cls(settings, client)

    def ack(self, mid: int) -> None:
        """Send the PUBACK held for a QoS 1 message; lost with a lost connection, so the
        broker sends the message again when the session resumes."""
        _paho(self.client).ack(mid, 1)

    async def publish_all(self, messages: Sequence[Message]) -> None:
        """Publish in order, all in flight at once; return when the broker confirmed every one.

        MqttError when the connection is lost first, or the batch is not confirmed in time.
        Only for a connection that subscribes to nothing: it watches the message
        stream to learn of a lost connection.
        """
        if self._lost is None:
            self._lost = asyncio.ensure_future(_until_lost(self.client))
        sending = asyncio.ensure_future(
            asyncio.gather(
                *(
                    self.client.publish(
                        m.topic, m.payload, qos=1, retain=m.retain, timeout=math.inf
                    )
                    for m in messages
                )
            )
        )
        sending.add_done_callback(_seen)
        try:
            done, _ = await asyncio.wait(
                (sending, self._lost), timeout=ACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            sending.cancel()
        if sending in done:
            sending.result()
        elif self._lost in done:
            self._lost.result()
        else:
            raise aiomqtt.MqttError(f"the broker did not confirm the batch in {ACK_TIMEOUT:g} s")

    async def close(self) -> None:
        """Say goodbye if the broker still listens; a persistent session stays on the broker."""
        if self._lost is not None:
            if self._lost.done() and not self._lost.cancelled():
                self._lost.exception()  # seen: the loss is why we close
            self._lost.cancel()
        # Shielded: closing is often what a cancelled task does on its way out.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(CLOSE_TIMEOUT),
            contextlib.suppress(aiomqtt.MqttError),
        ):
            await self.client.__aexit__(None, None, None)


def _paho(client: aiomqtt.Client) -> paho.Client:
    """The paho client under aiomqtt, whose manual acknowledgements aiomqtt does not expose
    yet (aiomqtt issue #345); the tests show a message read but not acknowledged comes again."""
    return client._client


async def _until_lost(client: aiomqtt.Client) -> NoReturn:
    async for _ in client.messages:  # nothing is subscribed: this ends only when the link does
        pass
    raise aiomqtt.MqttError("the message stream ended")


def _seen(future: asyncio.Future[object]) -> None:
    """Mark a batch's outcome retrieved: a cancelled gather ends holding a CancelledError."""
    if not future.cancelled():
        future.exception()


def _tls(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.cafile)


def failure(settings: Settings, exc: Exception) -> TransportError:
    """A TransportError naming the broker (never its password) and what went wrong."""
    return TransportError(f"MQTT broker {redacted(settings.url)}: {str(exc) or type(exc).__name__}")
