"""Envelopes on the wire: one JSON encoding for every transport, tolerant of newer senders.

A batch is `{"envelopes": [...]}`. An event of a type this version does not know
(sent by a newer worker) is left out with one log line per type, not a failure
of the batch it came in.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Sequence

import msgspec

from ..model.events import AnyEvent, Envelope, ExecutionRecord, encode, event_decoder

log = logging.getLogger("stepstream.transports")


class Gap(msgspec.Struct, frozen=True):
    """A receiver misses the events of an execution after `have` (0: it does not know it)."""

    execution_id: str
    have: int


class Batch(msgspec.Struct):
    """What a transport carries: envelopes, in the order they were sent."""

    envelopes: list[Envelope]


class IngestAnswer(msgspec.Struct, kw_only=True):
    """What a server's ingest route answers: counts, and the executions it misses events of."""

    applied: int
    duplicates: int
    gaps: list[Gap]


class _RawEnvelope(msgspec.Struct, kw_only=True):
    event: msgspec.Raw
    after: int = 0
    record: ExecutionRecord | None = None


class _RawBatch(msgspec.Struct):
    envelopes: list[_RawEnvelope]


_batch_decoder = msgspec.json.Decoder(_RawBatch)
_envelope_decoder = msgspec.json.Decoder(_RawEnvelope)
_unknown_tag = msgspec.json.Decoder(dict[str, object])
_unknown_seen: set[str] = set()
KNOWN_TYPES = frozenset(kind.__struct_config__.tag for kind in typing.get_args(AnyEvent))


def encode_batch(envelopes: Sequence[Envelope]) -> bytes:
    """A batch as JSON bytes."""
    return encode(Batch(list(envelopes)))


def encode_envelope(envelope: Envelope) -> bytes:
    """One envelope as JSON bytes, for transports that carry one per message."""
    return encode(envelope)


def decode_batch(data: bytes | str) -> list[Envelope]:
    """The envelopes of a batch; msgspec.DecodeError/ValidationError if it is not one."""
    return _known(_batch_decoder.decode(data).envelopes)


def decode_envelope(data: bytes | str) -> Envelope | None:
    """One envelope, or None when its event is of a type this version does not know."""
    found = _known([_envelope_decoder.decode(data)])
    return found[0] if found else None


def _known(raw: list[_RawEnvelope]) -> list[Envelope]:
    envelopes = []
    for item in raw:
        try:
            event = event_decoder.decode(item.event)
        except msgspec.ValidationError:
            kind = str(_unknown_tag.decode(item.event).get("type"))
            if kind in KNOWN_TYPES:
                raise  # a known type that is malformed: the batch is bad
            if kind not in _unknown_seen:
                _unknown_seen.add(kind)
                log.warning("ignoring events of type %r, unknown to this version", kind)
            continue
        envelopes.append(Envelope(event=event, after=item.after, record=item.record))
    return envelopes
