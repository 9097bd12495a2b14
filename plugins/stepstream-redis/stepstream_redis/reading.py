"""Reading the main stream in a consumer group: batches acknowledged once the server kept them.

The group (one per server, or per set of server processes sharing a store) keeps
its position in Redis, so a server restarted after minutes reads on from where
it was. What a reader was given but never acknowledged (it was killed) stays
pending: the same consumer reads its own pending entries first when it starts
again, and entries another consumer of the group left pending for `claim_after`
seconds are claimed (XAUTOCLAIM) and read again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from stepstream import Envelope
from stepstream.transports import redacted
from stepstream.transports.wire import decode_batch, decode_envelope

from .connection import backoff, client, failure
from .url import Settings

log = logging.getLogger("stepstream.transports.redis")

BATCH = 500  # entries per read of an execution's stream, or of claimed entries, at most
READ = 20  # entries per delivery of the main stream at most: each is a publisher's batch
BLOCK = 1.0  # seconds a read waits for new entries before looking for ones to claim
FIELD = b"batch"  # the field of a stream entry that holds a batch of envelopes
ONE = b"envelope"  # the field of an entry holding one envelope (as versions before 0.2 wrote)


def decode_entry(fields: dict[bytes, bytes] | None, where: str) -> list[Envelope]:
    """The envelopes of a stream entry, in order; none for a trimmed or foreign one.

    An entry holds a batch (`batch`, what a publisher sent at once) or, as older
    publishers wrote, one envelope (`envelope`); events of a type this version
    does not know are left out.
    """
    fields = fields or {}
    try:
        if (data := fields.get(FIELD)) is not None:
            return decode_batch(data)
        if (data := fields.get(ONE)) is not None:
            envelope = decode_envelope(data)
            return [] if envelope is None else [envelope]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("ignoring an entry of %s: not stepstream envelopes (%s)", where, exc)
    return []


@dataclass
class RedisDelivery:
    """Envelopes read from the main stream, and the entry ids to acknowledge for them."""

    envelopes: list[Envelope]
    settings: Settings
    connection: Redis
    ids: list[bytes] = field(default_factory=list)

    async def ack(self) -> None:
        """XACK the batch's entries (those that held nothing usable too): the group moves on."""
        if not self.ids:
            return
        try:
            await self.connection.xack(self.settings.stream, self.settings.group, *self.ids)
        except RedisError as exc:
            raise failure(self.settings, exc) from None


class Reader:
    """Reads the main stream as one consumer of one group, until closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: Redis | None = None
        self._closed = False

    async def read(self) -> AsyncIterator[RedisDelivery]:
        """Deliveries: this consumer's pending entries, claimed ones, then new ones; reconnects."""
        attempt = 0
        while not self._closed:
            self._connection = connection = client(self.settings, blocking=BLOCK)
            try:
                await self._join(connection)
                if attempt:
                    log.warning("reading from %s again", self._where)
                attempt = 0
                async for delivery in self._deliveries(connection):
                    yield delivery
            except RedisError as exc:
                if self._closed:
                    return
                if attempt == 0:
                    log.warning("cannot read from %s (%s); retrying", self._where, exc)
                attempt += 1
                await anyio.sleep(backoff(attempt))
            finally:
                await self._drop()

    async def _join(self, connection: Redis) -> None:
        """Make the group if it is new, reading the stream from its oldest entry kept."""
        try:
            await connection.xgroup_create(
                self.settings.stream, self.settings.group, "0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _deliveries(self, connection: Redis) -> AsyncIterator[RedisDelivery]:
        settings = self.settings
        last: bytes | str = "0-0"
        while entries := await self._read(connection, last):  # given before, never acknowledged
            last = entries[-1][0]
            yield self._delivery(connection, entries)
        claimed_at = -float("inf")
        while True:
            if time.monotonic() - claimed_at >= max(settings.claim_after, BLOCK):
                async for delivery in self._claimed(connection):
                    yield delivery
                claimed_at = time.monotonic()
            entries = await self._read(connection, ">", block=int(BLOCK * 1000))
            if entries:
                yield self._delivery(connection, entries)

    async def _read(
        self, connection: Redis, position: bytes | str, block: int | None = None
    ) -> list[Any]:
        found = await connection.xreadgroup(
            self.settings.group,
            self.settings.consumer,
            {self.settings.stream: position},
            count=READ,
            block=block,
        )
        return found[0][1] if found else []

    async def _claimed(self, connection: Redis) -> AsyncIterator[RedisDelivery]:
        """Entries other consumers of the group were given and left unacknowledged too long."""
        start: bytes | str = "0-0"
        while True:
            start, entries, *_ = await connection.xautoclaim(
                self.settings.stream,
                self.settings.group,
                self.settings.consumer,
                int(self.settings.claim_after * 1000),
                start,
                count=READ,
            )
            if entries:
                log.warning(
                    "%s: read again %d events another reader of group %r left unacknowledged",
                    self._where,
                    len(entries),
                    self.settings.group,
                )
                yield self._delivery(connection, entries)
            if start in (b"0-0", "0-0"):
                return

    def _delivery(self, connection: Redis, entries: Sequence[Any]) -> RedisDelivery:
        delivery = RedisDelivery([], self.settings, connection)
        for entry_id, fields in entries:
            delivery.envelopes += decode_entry(fields, self._where)
            delivery.ids.append(entry_id)
        return delivery

    async def close(self) -> None:
        """End `read`: its connection goes; the group's position stays in Redis."""
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.aclose()

    @property
    def _where(self) -> str:
        return redacted(self.settings.url)
