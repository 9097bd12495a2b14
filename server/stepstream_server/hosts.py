"""Host names and origins as the options and headers give them, made canonical or refused.

Apart from `sites`, whose guard checks every request against them, so that
`stepstream serve --help` and option parsing need no web framework.
"""

from __future__ import annotations

import re

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"

# host[:port]: a DNS name or IPv4 address, or an IPv6 address in brackets.
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#@\s]+)")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lower case, no trailing dot) and port; None if malformed."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    port = match["port"]
    if port is not None and int(port) > 65535:
        return None
    name = match["name"]
    return (name if name.startswith("[") else name.rstrip(".")), (
        None if port is None else int(port)
    )


def allowed_host(value: str) -> str:
    """An allowed-host entry made canonical: `name`, `name:port`, `[v6]`, or `*`; ValueError."""
    value = value.strip().lower()
    if value == ANY_HOST:
        return value
    if value.count(":") > 1 and not value.startswith("["):  # bare IPv6, as --host takes it
        value = f"[{value}]"
    parts = split_host(value)
    if parts is None or not parts[0].strip("."):
        raise ValueError(
            f"{value!r} is not a host name; give a name or address, optionally with a port "
            "(example.com, 192.168.1.5:8000, [::1]), or * for any"
        )
    name, port = parts
    return name if port is None else f"{name}:{port}"


def origin_host(origin: str) -> str | None:
    """The `host[:port]` of an origin as a browser sends it, lower case; None if not an origin."""
    match = _ORIGIN.fullmatch(origin.strip().lower())
    return None if match is None else match["host"]


def allowed_origin(value: str) -> str:
    """An allowed origin made canonical as browsers send it: `scheme://host[:port]`; ValueError."""
    text = value.strip().lower().rstrip("/")
    match = _ORIGIN.fullmatch(text)
    parts = split_host(match["host"]) if match else None
    if match is None or parts is None:
        raise ValueError(
            f"{value!r} is not an origin; give the scheme and host of the web page, "
            "optionally with a port and nothing after it, e.g. https://app.example.com or "
            "http://localhost:3000"
        )
    name, port = parts
    if port is None or str(port) == _DEFAULT_PORTS[match["scheme"]]:
        return f"{match['scheme']}://{name}"
    return f"{match['scheme']}://{name}:{port}"
