"""stepstream-webhooks: publish executions to a webhook receiver as Standard Webhooks.

`stepstream run --publish webhook+https://receiver/path` (or `create_app(...,
publish=[...])`) signs each chosen event, queues it on disk and delivers it
with retries; see the README for the URL's options.
"""

from .transport import WebhookTransport

__all__ = ["WebhookTransport"]
