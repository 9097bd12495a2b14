"""The entry point: offers `redis://` and `rediss://`; redis-py loads only when one is used."""

from __future__ import annotations

from stepstream import hookimpl


@hookimpl
def register_transports() -> dict[str, type]:
    """Offer `redis://` and `rediss://`."""
    from .transport import RedisTransport

    return {"redis": RedisTransport, "rediss": RedisTransport}
