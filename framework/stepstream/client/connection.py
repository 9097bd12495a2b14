"""Where the server is and how to talk to it: the settings both clients share, and the errors
of a connection rather than of a route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ServerUnavailable
from ..model.events import AnyEvent, decode_event
from .streams import Follow, Watch

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 10.0  # seconds for one HTTP answer (streams wait as long as it takes)
DEFAULT_RETRY_FOR = 30.0  # seconds a stream keeps reconnecting after its connection dropped


@dataclass(frozen=True)
class Settings:
    """A server's base URL, the bearer token, and the client's patience."""

    url: str
    token: str | None
    timeout: float
    retry_for: float

    def __post_init__(self) -> None:
        url = self.url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"expected the server's http(s):// URL (e.g. {DEFAULT_URL}), got {url!r}"
            )
        object.__setattr__(self, "url", url)

    def httpx_options(self) -> dict[str, Any]:
        """Options for `httpx.Client` / `httpx.AsyncClient`."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {"base_url": self.url, "headers": headers, "timeout": self.timeout}

    def ws_options(self) -> dict[str, Any]:
        """Options for httpx-ws: ping the server as it pings us, so a dead peer is noticed."""
        return {"keepalive_ping_interval_seconds": 20.0, "keepalive_ping_timeout_seconds": 20.0}


def not_a_stream(url: str, path: str, response: httpx.Response) -> ServerUnavailable:
    """The server answered the WebSocket handshake with plain HTTP."""
    if response.status_code == 401:
        return ServerUnavailable(url, "missing or invalid bearer token", 401)
    return ServerUnavailable(url, f"{path} is not a WebSocket there", response.status_code)


def undecodable(url: str, error: Exception) -> ServerUnavailable:
    """A message that is no stepstream event: not a stepstream server, or another version."""
    return ServerUnavailable(url, f"a stream message is not a stepstream event ({error})")


def decode(text: str, url: str) -> AnyEvent:
    """One stream message as a typed event."""
    try:
        return decode_event(text)
    except ValueError as exc:  # msgspec's DecodeError and ValidationError are ValueErrors
        raise undecodable(url, exc) from None


def timed_out(state: Follow | Watch) -> TimeoutError:
    """`wait(..., timeout=)` ran out."""
    what = f"execution {state.execution_id}" if isinstance(state, Follow) else "the watch"
    return TimeoutError(f"{what} did not finish in time")
