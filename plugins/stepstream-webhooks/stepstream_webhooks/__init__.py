"""stepstream-webhooks: publish executions to a webhook receiver as Standard Webhooks.

`stepstream run --publish webhook+https://receiver/path` (or `create_app(...,
publish=[...])`) signs each chosen event, queues it on disk and delivers it
with retries; see the README for the URL's options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport import WebhookTransport

__all__ = ["WebhookTransport"]


def __getattr__(name: str) -> object:
    """The transport, imported on first use: every `stepstream` command loads this package."""
    if name == "WebhookTransport":
        from .transport import WebhookTransport

        return WebhookTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
