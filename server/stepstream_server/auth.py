"""Bearer-token auth for every route but the public ones, on HTTP and WebSocket alike.

It wraps the app's router as plain ASGI rather than being Litestar middleware: it
runs before routing, so no path, known or unknown, answers anything but 401 without
the token, and it costs a header scan per request, where Litestar route middleware
adds an exception-handler layer and a connection object to every request.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Receive, Scope, Send

from .problems import PROBLEM_JSON, Problem

PUBLIC = "public"  # a route handler with opt={"public": True} needs no token
FILE_METHODS = frozenset({"GET", "HEAD"})
CLOSE_UNAUTHORIZED = 4401
REASON = "missing or invalid bearer token"
UNAUTHORIZED_BODY = msgspec.json.encode(
    Problem(
        type="about:blank",
        title="Unauthorized",
        status=401,
        detail=f"{REASON}; send the header 'Authorization: Bearer <token>'",
    )
)
UNAUTHORIZED_HEADERS = [
    (b"content-type", PROBLEM_JSON.encode()),
    (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
    (b"www-authenticate", b"Bearer"),
]


def token_problem(token: str) -> str | None:
    """What makes `token` unusable (it ends "...; do this"), or None.

    An empty token would turn authentication off, and whitespace at either end or a
    control character cannot travel in an Authorization header.
    """
    if not token.strip():
        what = "is empty" if not token else "is only whitespace"
        return f"{what}, which would leave the server without authentication; give a token"
    if token != token.strip():
        return (
            "starts or ends with whitespace, which an Authorization header cannot carry; remove it"
        )
    bad = next((c for c in token if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        return (
            f"contains the control character {bad!r}, which an Authorization header cannot "
            "carry; use printable characters"
        )
    return None


def bearer_credentials(scope: Scope) -> bytes | None:
    """The credentials of the request's first `Authorization` header, if it is `Bearer ...`."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            credentials = credentials.strip()
            return credentials if scheme.lower() == b"bearer" and credentials else None
    return None


def query_token(scope: Scope) -> bytes | None:
    """`?token=`, URL-decoded: browsers cannot set headers on a WebSocket."""
    for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
        if name == "token":
            return value.encode()
    return None


def public_routes(app: Litestar) -> set[tuple[str, str]]:
    """(method, path) of the HTTP handlers marked public; only paths without parameters qualify."""
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute) and not route.path_parameters
        for handler in route.route_handlers
        if handler.opt.get(PUBLIC)
        for method in handler.http_methods
    }


def public_trees(app: Litestar) -> set[str]:
    """Path prefixes of the public file trees (`create_static_files_router`'s, for one).

    A tree is a route whose one parameter is a trailing `{name:path}` below a fixed
    prefix (never `/` alone), with a GET or HEAD handler marked public.
    """
    return {
        prefix
        for route in app.routes
        if isinstance(route, HTTPRoute)
        and len(route.path_parameters) == 1
        and route.path.endswith(":path}")
        and (prefix := route.path.partition("{")[0]) != "/"
        for handler in route.route_handlers
        if handler.opt.get(PUBLIC) and handler.http_methods & FILE_METHODS
    }


def in_tree(method: str, path: str, trees: Collection[str]) -> bool:
    """A GET or HEAD below one of `trees`, with no `.` or `..` segment to climb out of it."""
    return (
        method in FILE_METHODS
        and any(path.startswith(tree) for tree in trees)
        and not {".", ".."} & set(path.split("/"))
    )


def bearer_auth(
    app: ASGIApp,
    token: str,
    public: Collection[tuple[str, str]] = (),
    trees: Collection[str] = (),
) -> ASGIApp:
    """Let through to `app` only requests with `token`, those for a `public` (method, path)
    and GET or HEAD requests for a file below one of the public `trees` (path prefixes).

    WebSockets may send the token as `?token=` instead. Refused HTTP requests get a
    401 problem with `WWW-Authenticate: Bearer`; refused WebSockets a close with 4401.
    """
    expected = token.encode()
    open_routes = frozenset(public)
    open_trees = tuple(trees)

    def accepts(presented: bytes | None) -> bool:
        # Constant time, so the comparison's duration says nothing about the token.
        return presented is not None and hmac.compare_digest(presented, expected)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if accepts(bearer_credentials(scope)):
            await app(scope, receive, send)
        elif scope["type"] == "websocket":
            if accepts(query_token(scope)):
                await app(scope, receive, send)
            else:
                await refuse_websocket(receive, send)
        elif (scope["method"], scope["path"]) in open_routes or in_tree(
            scope["method"], scope["path"], open_trees
        ):
            await app(scope, receive, send)
        else:
            await refuse_http(send)

    return guarded


async def refuse_http(send: Send) -> None:
    """401 problem details, with the challenge that names the scheme."""
    await send({"type": "http.response.start", "status": 401, "headers": UNAUTHORIZED_HEADERS})
    await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})


async def refuse_websocket(receive: Receive, send: Send) -> None:
    """Accept, then close with 4401: a client sees a close code only after the handshake."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": REASON})
