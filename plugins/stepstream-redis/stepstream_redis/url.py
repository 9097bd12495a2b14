"""The `redis://` URL: which server and database, under which key prefix, read as which group."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from stepstream.transports import TransportError, redacted

DEFAULT_PREFIX = "stepstream"
PORT = 6379
OPTIONS = ("prefix", "maxlen", "ttl", "group", "consumer", "claim_after")
DEFAULT_MAXLEN = 100_000  # entries a stream keeps, approximately (XADD MAXLEN ~)
DEFAULT_TTL = 7 * 24 * 3600  # seconds an execution's own stream outlives its last event
DEFAULT_CLAIM_AFTER = 60.0  # seconds an entry another reader holds unacknowledged is left to it


@dataclass(frozen=True)
class Settings:
    """What a `redis://` or `rediss://` URL says."""

    url: str
    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None
    prefix: str
    maxlen: int
    ttl: int
    group: str  # the reader's consumer group: one per server that should see every event
    consumer: str  # the reader's name in its group: stable across restarts, to resume
    claim_after: float

    @property
    def stream(self) -> str:
        """The stream every event goes to, in order: what servers read."""
        return self.prefix

    def execution(self, execution_id: str) -> str:
        """One execution's own stream, entry ids `{seq}-0`: what gaps are filled from."""
        return f"{self.prefix}:exec:{execution_id}"

    def first(self, execution_id: str) -> str:
        """One execution's first envelope, with its record: a start that outlives trimming."""
        return f"{self.prefix}:first:{execution_id}"

    @property
    def cancels(self) -> str:
        """The stream of cancel requests every publishing worker listens to."""
        return f"{self.prefix}:cancel"


def parse(url: str) -> Settings:
    """`redis[s]://[[user]:password@]host[:port][/db][?prefix=..&maxlen=..&group=..]`."""
    shown = redacted(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise TransportError(
            f"transport URL {shown!r} names no Redis server; use e.g. redis://host:6379/0"
        )
    if parts.fragment:
        raise TransportError(f"transport URL {shown!r}: a Redis URL takes no #part")
    try:
        port = parts.port or PORT
    except ValueError:
        raise TransportError(f"transport URL {shown!r} has a bad port") from None
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise TransportError(
            f"transport URL {shown!r}: the path is the database number, not {db_text!r}"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TransportError(
            f"transport URL {shown!r}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})"
        )
    prefix = options.get("prefix") or DEFAULT_PREFIX
    host = socket.gethostname()
    return Settings(
        url=url,
        host=parts.hostname,
        port=port,
        db=int(db_text),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=prefix,
        maxlen=_number(shown, options, "maxlen", DEFAULT_MAXLEN, int, 1),
        ttl=_number(shown, options, "ttl", DEFAULT_TTL, int, 1),
        group=options.get("group") or f"stepstream-{host}",
        consumer=options.get("consumer") or host,
        claim_after=_number(shown, options, "claim_after", DEFAULT_CLAIM_AFTER, float, 0),
    )


def _number(
    shown: str, options: dict[str, str], name: str, default: float, kind: type, least: float
) -> Any:
    """An option's number (`kind` int or float), at least `least`; a TransportError otherwise."""
    text = options.get(name)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < least:
        what = "an integer" if kind is int else "a number"
        raise TransportError(
            f"transport URL {shown!r}: {name} must be {what} of at least {least:g}, not {text!r}"
        )
    return value
