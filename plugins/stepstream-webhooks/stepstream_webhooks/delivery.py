"""One attempt to deliver, and what its answer means for the next, as Standard Webhooks says.

A 2xx delivered it. A timeout, a connection error, 408, 429 and 5xx are worth
another try, after the receiver's `Retry-After` when it sends one. Anything
else (3xx: redirects are not followed; other 4xx, 410 Gone among them) is a
refusal that trying again would not change.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import httpx

RETRIED = frozenset({408, 429})


@dataclass(frozen=True)
class Delivered:
    """The receiver took it."""


@dataclass(frozen=True)
class Retry:
    """Worth another try; `after` is the receiver's Retry-After in seconds, if it said."""

    reason: str
    after: float | None = None


@dataclass(frozen=True)
class Refused:
    """The receiver answered in a way that trying again would not change."""

    status: int
    reason: str


Outcome = Delivered | Retry | Refused


async def attempt(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> Outcome:
    """POST once, the answer included within `timeout` seconds."""
    import httpx

    try:
        with anyio.fail_after(timeout):
            response = await client.post(url, content=body, headers=headers)
    except TimeoutError:
        return Retry(f"no answer within {timeout:g} s")
    except httpx.TransportError as exc:
        return Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    status = response.status_code
    if 200 <= status < 300:
        return Delivered()
    reason = f"{status} {response.reason_phrase}".strip()
    if status in RETRIED or status >= 500:
        return Retry(reason, retry_after(response.headers.get("retry-after")))
    if 300 <= status < 400:
        location = response.headers.get("location", "nowhere")
        return Refused(status, f"{reason}: redirects are not followed; it points to {location}")
    detail = response.text[:200].strip()
    return Refused(status, f"{reason}: {detail}" if detail else reason)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds before attempt `attempts + 1`: exponential, capped, with jitter so that many
    senders do not retry in step."""
    return min(cap, first * 2 ** min(attempts - 1, 64)) * random.uniform(0.5, 1.5)
