"""The entry point: offers the webhook+ URL schemes; the transport loads when one is used."""

from __future__ import annotations

from stepstream import hookimpl


@hookimpl
def register_transports() -> dict[str, type]:
    """Offer `webhook+https://` and `webhook+http://`."""
    from .options import SCHEMES
    from .transport import WebhookTransport

    return dict.fromkeys(SCHEMES, WebhookTransport)
