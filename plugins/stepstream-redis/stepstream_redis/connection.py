"""Clients of the Redis server a URL names, and errors that name it without its password."""

from __future__ import annotations

import random

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stepstream.transports import TransportError, redacted

from .url import Settings

CONNECT_TIMEOUT = 5.0  # seconds for the server to accept a connection
COMMAND_TIMEOUT = 10.0  # seconds for an answer to a command that does not block
FIRST_RETRY, LAST_RETRY = 0.2, 10.0  # seconds: the reconnect backoff's range


def client(settings: Settings, *, blocking: float = 0.0) -> Redis:
    """A client; `blocking` seconds are added to the answer timeout for commands that wait.

    redis-py's own retries are off: the publisher and the readers retry with backoff
    of their own, and a broker that is down should be known at once.
    """
    return Redis(
        host=settings.host,
        port=settings.port,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        ssl=settings.tls,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT + blocking,
        retry=Retry(NoBackoff(), 0),
        client_name="stepstream",
    )


def failure(settings: Settings, exc: Exception) -> TransportError:
    """A TransportError naming the server (never its password) and what went wrong."""
    return TransportError(f"Redis {redacted(settings.url)}: {str(exc) or type(exc).__name__}")


def backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so many readers do not reconnect in step."""
    return min(LAST_RETRY, FIRST_RETRY * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
