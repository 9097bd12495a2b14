"""The one place that reaches under Litestar and uvicorn: an event's frame written to many sockets.

Why: fanning one progress event out to 1,000 subscribers through `socket.send_text`
wakes 1,000 tasks and makes 1,000 trips through Litestar's and uvicorn's `send`,
each framing the same bytes again. A frame from server to client is never masked,
so with no extension negotiated (`ws_per_message_deflate=False`, see serving.py)
it is the same bytes for every socket: the frame is built once per event and
written to each caught-up subscriber's transport from the publisher's loop
(`Subscription.send_now`).

`keep_server_send` wraps Litestar's router, inside every other wrapper (the site
guard, the token check, plugins' ASGI wrappers), and notes the `send` that reaches
it. Only when that is the `send` method of uvicorn's `websockets-sansio` protocol
(uvicorn 0.54's default with `websockets` installed), so nothing on the way looks at
what is sent, does `direct_writer` give a writer; with another server, another
uvicorn protocol, a negotiated extension or a wrapped `send` it gives None and the
stream sends through Litestar as before. Between the router and the route, Litestar
wraps `send` only to note an HTTP response's start, which a WebSocket never sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import WebSocket
from litestar.types import ASGIApp, Receive, Scope, Send
from websockets.frames import Frame, Opcode

from stepstream import Event, encode

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # another uvicorn layout: always the plain path
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

SERVER_SEND = "stepstream.server_send"  # the scope key `keep_server_send` sets
# What is read of uvicorn's protocol object: its attributes, not its API.
PROTOCOL_ATTRIBUTES = (
    "conn",
    "handshake_complete",
    "transport",
    "writable",
    "close_sent",
    "disconnected",
)


def keep_server_send(app: ASGIApp) -> ASGIApp:
    """Wrap Litestar's router so a WebSocket's scope holds the `send` that reached it."""

    async def keeping(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send  # type: ignore[typeddict-unknown-key]
        await app(scope, receive, send)

    return keeping


_last_frame: tuple[Event | None, bytes] = (None, b"")


def frame_of(event: Event) -> bytes:
    """The event as one unmasked text frame, built once for the many sockets it goes to in turn."""
    global _last_frame
    last, frame = _last_frame
    if last is not event:
        frame = Frame(Opcode.TEXT, encode(event)).serialize(mask=False)
        _last_frame = (event, frame)
    return frame


def direct_writer(socket: WebSocket[Any, Any, Any]) -> Callable[[Event], bool] | None:
    """A function writing an event's frame to the socket's transport at once, or None if unsafe.

    The function returns False, writing nothing, when the socket is closing or its
    transport has paused writing (a slow reader): the caller then buffers the event.
    """
    protocol = getattr(socket.scope.get(SERVER_SEND), "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    if not all(hasattr(protocol, name) for name in PROTOCOL_ATTRIBUTES):
        return None  # another uvicorn release: the plain path goes on
    if protocol.conn.extensions or not protocol.handshake_complete:
        return None
    transport = protocol.transport
    writable = protocol.writable

    def write(event: Event) -> bool:
        if (
            protocol.close_sent
            or protocol.disconnected
            or not writable.is_set()
            or transport.is_closing()
        ):
            return False
        transport.write(frame_of(event))
        return True

    return write
