"""Keep tokens out of logs: `?token=` in WebSocket URLs and `Bearer` credentials.

Browsers cannot set headers on a WebSocket, so they send the token in the URL, and
uvicorn logs each handshake's URL (`"WebSocket /api/v1/...?token=..." [accepted]`,
with `-v`). A filter on the handlers that print (the root logger's, where uvicorn's
and our loggers end up, and uvicorn's own) rewrites every record before it is
written, whoever logged it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "***"
# `token=` in a query string or a logged scope, and the credentials of a Bearer header.
_SECRETS = re.compile(r"(?i)(\btoken=|\bbearer\s+)[^&\s'\"#,)]+")
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "stepstream_server")


def redact(text: str) -> str:
    """`text` with every token it holds replaced by ***."""
    return _SECRETS.sub(lambda m: m[1] + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message with its tokens redacted; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it when it formats it
            return True
        lowered = message.lower()
        if "token=" in lowered or "bearer" in lowered:
            record.msg, record.args = redact(message), None
        return True


def redact_secrets_in_logs() -> None:
    """Add the filter to the root logger's handlers and to uvicorn's and our loggers; once."""
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in LOGGERS]
    targets += [h for name in LOGGERS for h in logging.getLogger(name).handlers]
    for target in targets:
        if not any(isinstance(f, RedactSecrets) for f in target.filters):
            target.addFilter(RedactSecrets())
