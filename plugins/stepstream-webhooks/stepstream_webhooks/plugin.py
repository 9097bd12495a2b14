"""The plugin the `stepstream` entry point loads: it offers the webhook+ URL schemes."""

from __future__ import annotations

from stepstream import hookimpl

from .options import SCHEMES
from .transport import WebhookTransport


@hookimpl
def register_transports() -> dict[str, type]:
    """Offer `webhook+https://` and `webhook+http://`."""
    return dict.fromkeys(SCHEMES, WebhookTransport)
