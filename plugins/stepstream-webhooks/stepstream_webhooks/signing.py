"""Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.

The key comes from an environment variable as a `whsec_` secret (base64 after the
prefix), as the receiver's `standardwebhooks.Webhook(secret)` takes it. Nothing
here ever formats the secret into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from stepstream.transports import TransportError

PREFIX = "whsec_"


class Signer:
    """Signs each attempt; holds the key and never shows it."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_env(cls, name: str) -> Signer:
        """The secret in `$name`; TransportError naming the variable, never its value."""
        value = os.environ.get(name, "").strip()
        if not value:
            raise TransportError(
                f"set {name} to the receiver's signing secret (whsec_ and base64), "
                "or name another variable with ?secret_env=NAME"
            )
        encoded = value.removeprefix(PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise TransportError(f"{name} is not a signing secret: whsec_ then base64 expected")
        return cls(key)

    def headers(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """The `webhook-*` headers of one attempt at `timestamp` (Unix seconds)."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
