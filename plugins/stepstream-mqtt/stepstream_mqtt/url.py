"""The `mqtt://` URL: which broker, as whom, under which topic prefix, and the reader's session."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from stepstream.transports import TransportError, redacted

DEFAULT_PREFIX = "stepstream"
PORTS = {"mqtt": 1883, "mqtts": 8883}
OPTIONS = ("client_id", "cafile")


@dataclass(frozen=True)
class Settings:
    """What an `mqtt://` or `mqtts://` URL says."""

    url: str
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    prefix: str
    client_id: str  # the persistent session a reader resumes: stable across restarts
    cafile: str | None


def parse(url: str) -> Settings:
    """`mqtt[s]://[user[:password]@]host[:port][/prefix][?client_id=ID&cafile=PATH]`."""
    shown = redacted(url)
    parts = urlsplit(url)
    if parts.scheme not in PORTS or not parts.hostname:
        raise TransportError(
            f"transport URL {shown!r} names no broker; use e.g. mqtt://broker:1883/stepstream"
        )
    try:
        port = parts.port or PORTS[parts.scheme]
    except ValueError:
        raise TransportError(f"transport URL {shown!r} has a bad port") from None
    if parts.fragment:
        raise TransportError(f"transport URL {shown!r}: an MQTT URL takes no #part")
    prefix = unquote(parts.path).strip("/") or DEFAULT_PREFIX
    if prefix.startswith("$") or any(c in prefix for c in "+#\0") or "" in prefix.split("/"):
        raise TransportError(
            f"transport URL {shown!r}: topic prefix {prefix!r} may not start with $, hold + or #, "
            "or have an empty level"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TransportError(
            f"transport URL {shown!r}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})"
        )
    if "cafile" in options and parts.scheme != "mqtts":
        raise TransportError(f"transport URL {shown!r}: cafile needs mqtts://")
    return Settings(
        url=url,
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        prefix=prefix,
        client_id=options.get("client_id") or _default_client_id(parts.hostname, port, prefix),
        cafile=options.get("cafile") or None,
    )


def _default_client_id(broker: str, port: int, prefix: str) -> str:
    """The same on every restart of this host's reader of this prefix, so its session resumes.

    23 characters: the most MQTT 3.1.1 obliges a broker to accept.
    """
    key = f"{socket.gethostname()}|{broker}:{port}|{prefix}".encode()
    return "stepstream-" + hashlib.sha256(key).hexdigest()[:12]
