"""Bearer-token auth for every route but /health, on HTTP and WebSocket alike."""

from __future__ import annotations

import hmac

from litestar import WebSocket
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

CLOSE_UNAUTHORIZED = 4401


def presented_token(connection: ASGIConnection, allow_query: bool) -> str | None:
    """The token from `Authorization: Bearer ...`, or `?token=` where browsers cannot set it."""
    scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if allow_query:
        return connection.query_params.get("token")
    return None


class BearerAuth(ASGIMiddleware):
    """Refuse requests without the server's token: 401 problem on HTTP, close 4401 on WebSocket."""

    exclude_opt_key = "public"

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _accepts(self, presented: str | None) -> bool:
        # Constant-time, so the comparison's duration says nothing about the token.
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Pass the request on only with the right token."""
        is_websocket = scope["type"] == "websocket"
        if self._accepts(presented_token(ASGIConnection(scope), allow_query=is_websocket)):
            await next_app(scope, receive, send)
            return
        reason = "missing or invalid bearer token"
        if is_websocket:
            # A close code reaches the client only after the handshake completed.
            socket: WebSocket = WebSocket(scope, receive, send)
            await socket.accept()
            await socket.close(code=CLOSE_UNAUTHORIZED, reason=reason)
            return
        raise NotAuthorizedException(
            f"{reason}; send the header 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
