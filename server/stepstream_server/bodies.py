"""JSON request bodies: the one place a body becomes a value, and every way that can fail.

The app's request class parses JSON bodies here, for its own routes and for the
routes plugins add. A body must say it is JSON (`Content-Type: application/json`
or `application/*+json`): the content types a web page on another site can send
without asking first (a CORS "simple" request: `text/plain`, forms) are refused
with 415, so such a page cannot start anything. Then it must be UTF-8 and nest at
most `MAX_DEPTH` levels. Each failure is a 4xx problem that says what to send,
where msgspec would raise UnicodeDecodeError or RecursionError (a 500).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.types import Empty

from .params import shown
from .problems import ProblemError

MAX_DEPTH = 64  # arrays and objects inside one another, the body's outer object included
JSON_TYPES = ("application/json",)


def is_json(media_type: str) -> bool:
    """`application/json` or a structured `application/...+json` type (RFC 6839)."""
    media_type = media_type.strip().lower()
    return media_type in JSON_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def decode_json_body(media_type: str, body: bytes) -> Any:
    """The value of a JSON request body, or the 4xx problem that says what is wrong with it."""
    if not is_json(media_type):
        got = f"Content-Type {shown(media_type)}" if media_type else "no Content-Type"
        raise ProblemError(
            415,
            f"send the body as JSON, with the header 'Content-Type: application/json' (got {got})",
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            400,
            f"the request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at position "
            f"{exc.start}); send JSON encoded as UTF-8",
        ) from None
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        reason = str(exc).removeprefix("JSON is malformed: ")
        raise ProblemError(400, f"the request body is not valid JSON: {reason}") from None
    except RecursionError:
        raise too_deep() from None
    # Fewer openers than the limit cannot nest past it: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and depth_exceeds(value, MAX_DEPTH):
        raise too_deep()
    return value


def too_deep() -> ProblemError:
    return ProblemError(
        400,
        f"the request body nests arrays and objects more than {MAX_DEPTH} levels deep, "
        f"the server's limit; send flatter JSON",
    )


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep; iterative, so any depth is safe."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's Request, parsing JSON bodies with `decode_json_body`."""

    __slots__ = ()

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                value = decode_json_body(self.content_type[0], body) if body else None
                self._json = self._connection_state.json = value
        return self._json
