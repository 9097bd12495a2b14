"""The Redis transport: every batch on one stream for servers, and on its executions' own streams.

Publishing a batch is one MULTI/EXEC: the batch is one entry of the main stream
(approximately trimmed to `maxlen` entries), which servers read in consumer
groups, and each execution's envelopes of the batch are one entry of that
execution's stream, with the entry id `{last seq}-0`, so a gap is filled by
reading that stream from `after + 1` (and dropping what is not after it), and a
repeat (a retried batch, a heartbeat) is refused there by Redis instead of
stored twice. One entry per batch, not per event: each envelope is encoded
once, and a batch of hundreds is a handful of commands. The first envelope
of an execution, which carries its record, is also kept on its own key, so a
server that never saw the start can begin the record even once the execution's
stream is trimmed. Both expire `ttl` seconds after the execution's last event.
Cancels cross on a third stream that every publishing worker reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from stepstream import Envelope
from stepstream.transports import Gap, redacted
from stepstream.transports.wire import encode_envelope

from .connection import backoff, client, failure
from .reading import BATCH, BLOCK, FIELD, ONE, Reader, RedisDelivery, decode_entry
from .url import Settings, parse

log = logging.getLogger("stepstream.transports.redis")

CANCEL_MAXLEN = 1000  # cancel requests the cancel stream keeps, approximately
CANCEL_LOOKBACK = 60.0  # seconds: a worker also hears requests made this long before it listened
CANCEL_RETRY_FOR = 30.0  # seconds a server keeps trying to pass a cancel on while Redis is down
_REPEAT = "equal or smaller than the target stream top item"  # an execution stream refusing a seq


class RedisTransport:
    """Publishes to and reads from one Redis database, under one key prefix."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.url
        self.settings = settings
        self._connection: Redis | None = None
        self._reader = Reader(settings)
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> RedisTransport:
        """`redis[s]://[[user]:password@]host[:port][/db][?prefix=..&maxlen=..&group=..]`."""
        return cls(parse(url))

    def _client(self) -> Redis:
        if self._connection is None:
            self._connection = client(self.settings)
        return self._connection

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        """One transaction for the batch; TransportError when Redis did not take it."""
        settings = self.settings
        if not envelopes:
            return []
        batch = self._client().pipeline(transaction=True)
        encoded = [encode_envelope(envelope) for envelope in envelopes]
        batch.xadd(
            settings.stream, {FIELD: _batch(encoded)}, maxlen=settings.maxlen, approximate=True
        )
        own: dict[str, list[bytes]] = {}  # per execution, in order: its envelopes of the batch
        last: dict[str, int] = {}
        for envelope, data in zip(envelopes, encoded, strict=True):
            execution_id = envelope.event.execution_id
            own.setdefault(execution_id, []).append(data)
            last[execution_id] = envelope.event.seq
            if envelope.record is not None:
                batch.set(settings.first(execution_id), data, nx=True, ex=settings.ttl)
        for execution_id, parts in own.items():
            stream = settings.execution(execution_id)
            batch.xadd(
                stream,
                {FIELD: _batch(parts)},
                id=f"{last[execution_id]}-0",
                maxlen=settings.maxlen,
                approximate=True,
            )
            batch.expire(stream, settings.ttl)
        try:
            answers = await batch.execute(raise_on_error=False)
        except RedisError as exc:
            raise failure(settings, exc) from None
        for answer in answers:
            if isinstance(answer, ResponseError) and _REPEAT not in str(answer):
                raise failure(settings, answer)
        return []

    def read(self) -> AsyncIterator[RedisDelivery]:
        """The main stream, from where this reader's consumer group stands."""
        return self._reader.read()

    async def backfill(self, execution_id: str, after: int) -> list[Envelope]:
        """The execution's envelopes after seq `after` still kept; from 0, its first one too."""
        settings = self.settings
        where = redacted(self.url)
        connection = self._client()
        held: list[Envelope] = []
        start = f"{after + 1}-0"
        try:
            while entries := await connection.xrange(
                settings.execution(execution_id), min=start, count=BATCH
            ):
                for _, fields in entries:  # an entry holds the batch's events up to its id
                    held += (e for e in decode_entry(fields, where) if e.event.seq > after)
                start = "(" + entries[-1][0].decode()
            first = await connection.get(settings.first(execution_id)) if after == 0 else None
        except RedisError as exc:
            raise failure(settings, exc) from None
        found = decode_entry({ONE: first}, where) if first else []
        envelope = found[0] if found else None
        if envelope is not None and (not held or held[0].event.seq > envelope.event.seq):
            held.insert(0, envelope)
        return held

    async def request_cancel(self, execution_id: str) -> None:
        """Put a cancel request on the cancel stream; Redis being down is retried, then logged."""
        attempt = 0
        deadline = time.monotonic() + CANCEL_RETRY_FOR
        while True:
            try:
                await self._client().xadd(
                    self.settings.cancels,
                    {b"execution_id": execution_id.encode()},
                    maxlen=CANCEL_MAXLEN,
                    approximate=True,
                )
                return
            except RedisError as exc:
                attempt += 1
                if time.monotonic() > deadline or self._closed:
                    log.error(
                        "could not ask %s to cancel %s: %s", redacted(self.url), execution_id, exc
                    )
                    return
                await anyio.sleep(backoff(attempt))

    async def cancel_requests(self) -> AsyncIterator[str]:
        """Ids whose cancel was requested, from CANCEL_LOOKBACK seconds ago on; never raises.

        The worker hearing them checks that it runs the execution; the look back covers
        a request made while this reader connected, and clocks a little apart.
        """
        position: bytes | str = f"{int((time.time() - CANCEL_LOOKBACK) * 1000)}-0"
        attempt = 0
        while not self._closed:
            connection = client(self.settings, blocking=BLOCK)
            try:
                while True:
                    found = await connection.xread(
                        {self.settings.cancels: position}, count=BATCH, block=int(BLOCK * 1000)
                    )
                    attempt = 0
                    for entry_id, fields in found[0][1] if found else []:
                        position = entry_id
                        if b"execution_id" in fields:
                            yield fields[b"execution_id"].decode()
            except RedisError as exc:
                if attempt == 0:
                    log.warning(
                        "cannot hear cancels from %s (%s); retrying", redacted(self.url), exc
                    )
                attempt += 1
                await anyio.sleep(backoff(attempt))
            finally:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()

    async def aclose(self) -> None:
        """Close the connections; a reader's group and position stay in Redis."""
        self._closed = True
        await self._reader.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.aclose()


def _batch(encoded: Sequence[bytes]) -> bytes:
    """Envelopes encoded one by one, joined as the wire format's batch (`wire.encode_batch`)."""
    return b'{"envelopes":[' + b",".join(encoded) + b"]}"
