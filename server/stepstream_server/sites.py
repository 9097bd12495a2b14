"""Which web sites may talk to the server: the Host it is asked for, the Origin of browsers, CORS.

A server on localhost is within reach of every web page its user opens. Without
these checks a page on any site could start executions (a `text/plain` POST needs
no CORS preflight), read every execution through a WebSocket (WebSockets are not
bound by the same-origin policy), or, through DNS rebinding (its own name
resolving to 127.0.0.1), read the API as if it were the server's own page. A
token does not replace the checks: many servers run without one. So, before
anything else (plugins' wrappers, the token, routing):

- **Host.** A request must name an allowed host in its `Host` header: the loopback
  names by default (`localhost`, `127.0.0.1`, `[::1]`, any port), plus the ones
  configured (`--host`, `--allow-host`; `*` allows any). A rebinding page's requests
  name the page's own domain, so they are refused: 400 when the header is missing or
  malformed, 403 otherwise; a WebSocket is closed with 4403.
- **Origin.** Browsers send `Origin` with every cross-site request, every POST and
  every WebSocket handshake. A request without one (curl, Python clients) or from
  the server's own origin (the dashboard: the origin's host is the `Host`) goes on.
  So does one from an origin configured as allowed (`--allow-origin`). From any
  other site, a WebSocket is closed with 4403 and a request that can change
  something (anything but GET, HEAD and OPTIONS) is a 403; a GET goes on without
  CORS headers, so the browser does not let the page read the answer.
- **CORS.** For the allowed origins, the answers carry CORS headers and preflight
  requests (`OPTIONS` with `Access-Control-Request-Method`) are answered here, before
  the token is checked, as browsers send preflights without credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from .hosts import ANY_HOST, LOOPBACK_HOSTS, allowed_host, allowed_origin, origin_host, split_host
from .problems import PROBLEM_JSON, Problem, clip

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CLOSE_FORBIDDEN = 4403
PREFLIGHT_MAX_AGE = "600"
ALLOWED_METHODS = "GET, HEAD, POST"
EXPOSED_HEADERS = "Location, Idempotent-Replayed, WWW-Authenticate"
MAX_CLOSE_REASON = 123  # bytes in a WebSocket close frame's reason


class SitePolicy:
    """The hosts the server answers for and the other sites' origins it lets in."""

    def __init__(self, hosts: Iterable[str] = LOOPBACK_HOSTS, origins: Iterable[str] = ()) -> None:
        entries = {allowed_host(h) for h in hosts}
        self.any_host = ANY_HOST in entries
        self.hosts = sorted(entries - {ANY_HOST})
        self._names = {h for h in self.hosts if not _has_port(h)}
        self._with_ports = {h for h in self.hosts if _has_port(h)}
        self.origins = frozenset(allowed_origin(o) for o in origins)

    def host_problem(self, host: str | None) -> tuple[int, str] | None:
        """Why a request for this Host is refused (status, detail); None if it is allowed."""
        if host is None:
            return 400, "the request has no Host header; send the host name of the server"
        parts = split_host(host)
        if parts is None:
            return 400, f"the Host header {clip(host, 80)!r} is not a host name"
        if self.any_host:
            return None
        name, port = parts
        if name in self._names or (port is not None and f"{name}:{port}" in self._with_ports):
            return None
        allowed = ", ".join(self.hosts) or "none"
        return 403, (
            f"this server does not answer requests for host {clip(host, 80)!r} (it answers for "
            f"{allowed}), so that a web page cannot reach it through a DNS name of its own; "
            f"to serve this name, start it with --allow-host {clip(name, 80)}"
        )

    def is_same_origin(self, origin: str, host: str | None) -> bool:
        """Whether `origin` is the server's own: its host[:port] is the request's Host."""
        return host is not None and origin_host(origin) == host.strip().lower()


def _has_port(entry: str) -> bool:
    return entry.rpartition("]")[2].count(":") == 1 if entry.startswith("[") else ":" in entry


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _problem(status: int, detail: str, type_: str, title: str) -> tuple[list[Any], bytes]:
    body = msgspec.json.encode(Problem(type=type_, title=title, status=status, detail=detail))
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"vary", b"Origin"),
    ]
    return headers, body


async def _refuse_http(send: Send, status: int, detail: str, type_: str, title: str) -> None:
    headers, body = _problem(status, detail, type_, title)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(receive: Receive, send: Send, reason: str) -> None:
    """Accept, then close with 4403: a browser sees a close code only after the handshake."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        reason = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
        await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN, "reason": reason})


def site_guard(app: ASGIApp, policy: SitePolicy) -> ASGIApp:
    """Wrap `app` with the Host, Origin and CORS rules of `policy` (see the module docstring)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        host = _header(scope, b"host")
        refused = policy.host_problem(host)
        if refused is not None:
            status, detail = refused
            if kind == "websocket":
                await _refuse_websocket(receive, send, f"host {host!r} is not allowed")
            else:
                await _refuse_http(send, status, detail, "host-not-allowed", "Host not allowed")
            return
        origin = _header(scope, b"origin")
        if origin is None or policy.is_same_origin(origin, host):
            await app(scope, receive, send)
            return
        canonical = _canonical(origin)
        allowed = canonical in policy.origins
        if kind == "websocket":
            if allowed:
                await app(scope, receive, send)
            else:
                await _refuse_websocket(
                    receive, send, f"origin {origin} is not allowed (--allow-origin)"
                )
            return
        method = scope["method"]
        preflight = method == "OPTIONS" and _header(scope, b"access-control-request-method")
        if allowed and preflight:
            await _answer_preflight(scope, send, origin)
        elif allowed:
            await app(scope, receive, _with_cors(send, origin))
        elif method in SAFE_METHODS and not preflight:
            await app(scope, receive, send)  # no CORS headers: the page cannot read the answer
        else:
            await _refuse_http(
                send,
                403,
                f"this server does not take requests from web pages of {clip(origin, 80)}: "
                "only its own pages and the origins it was started with (--allow-origin) may "
                "send it anything but GET; to allow this site, start it with "
                f"--allow-origin {clip(canonical or origin, 80)}",
                "origin-not-allowed",
                "Origin not allowed",
            )

    return guarded


def _canonical(origin: str) -> str | None:
    try:
        return allowed_origin(origin)
    except ValueError:
        return None


async def _answer_preflight(scope: Scope, send: Send, origin: str) -> None:
    """204 with what the browser asked may be sent: our methods, the headers it named."""
    requested = _header(scope, b"access-control-request-headers") or ""
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        (b"content-length", b"0"),
    ]
    if requested:
        headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    """`send`, adding CORS headers for `origin` to the response's start."""
    cors = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *cors]}
        await send(message)

    return sending
