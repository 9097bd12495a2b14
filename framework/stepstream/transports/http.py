"""The built-in transport: publish to a stepstream server's ingest route over HTTP(S).

`http://server:8000` (a path prefix is kept, so `https://host/stepstream` works
behind a proxy). Each batch is one `POST /api/v1/events` with the bearer token
from `STEPSTREAM_TOKEN`; the server keeps the batch before it answers, and says
which executions it misses events of, which the publisher then sends again. A
worker needs nothing but the server's URL: no broker. Publish only: a server
cannot be read from over this transport.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from ..model.events import Envelope
from . import TransportError, TransportRejected
from .wire import Gap, IngestAnswer, encode_batch

if TYPE_CHECKING:
    import httpx

INGEST = "/api/v1/events"
TIMEOUT = 10.0  # seconds for the server to keep a batch and answer
MAX_POST = 4 * 1024 * 1024  # bytes per POST; a bigger batch goes as several


_answer_decoder = msgspec.json.Decoder(IngestAnswer)


class HttpTransport:
    """Publishes batches to one stepstream server."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self._endpoint = url.rstrip("/") + INGEST
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_url(cls, url: str) -> HttpTransport:
        """`http(s)://host[:port][/prefix]`; the token comes from `STEPSTREAM_TOKEN`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(
                f"transport URL {url!r} names no server; use e.g. http://server:8000"
            )
        if parts.query or parts.fragment:
            raise TransportError(f"transport URL {url!r}: a server URL takes no ?query or #part")
        return cls(url, os.environ.get("STEPSTREAM_TOKEN") or None)

    async def publish(self, envelopes: Sequence[Envelope]) -> list[Gap]:
        """POSTs of at most MAX_POST bytes, in order; TransportError to retry, TransportRejected
        when refused as bad."""
        gaps: list[Gap] = []
        for part in _parts(envelopes):
            gaps += await self._post(part)
        return gaps

    async def _post(self, body: bytes) -> list[Gap]:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT)
        try:
            response = await self._client.post(self._endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from exc
        if response.status_code == 200:
            try:
                return _answer_decoder.decode(response.content).gaps
            except msgspec.DecodeError as exc:
                raise TransportError(f"not a stepstream ingest answer: {exc}") from exc
        detail = _detail(response)
        if response.status_code in (400, 413, 415, 422):
            raise TransportRejected(f"{response.status_code}: {detail}")
        if response.status_code == 401:
            detail += "; set STEPSTREAM_TOKEN to the server's token"
        raise TransportError(f"{response.status_code}: {detail}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _parts(envelopes: Sequence[Envelope]) -> list[bytes]:
    """The batch as POST bodies of at most MAX_POST bytes (one envelope alone may be more)."""
    body = encode_batch(envelopes)
    if len(body) <= MAX_POST or len(envelopes) == 1:
        return [body]
    half = len(envelopes) // 2
    return _parts(envelopes[:half]) + _parts(envelopes[half:])


def _detail(response: Any) -> str:
    """A problem's `detail`, or the start of whatever else came back."""
    try:
        return str(response.json()["detail"])
    except Exception:
        return response.text[:200] or response.reason_phrase
