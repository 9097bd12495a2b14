"""What a `webhook+https://...` URL asks for: the receiver, which events, where the secret is.

The options ride in the URL's query and are taken out of it; any other query
parameter is the receiver's own and is kept. A parameter that looks like a
secret is refused: URLs end up in shell history, process lists and logs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stepstream.transports import TransportError

SCHEMES = ("webhook+http", "webhook+https")
EVENT_TYPES = ("status", "started", "progress", "completed", "failed", "cancelled")
DEFAULT_EVENTS = frozenset({"started", "completed", "failed", "cancelled"})
SECRET_ENV = "STEPSTREAM_WEBHOOK_SECRET"
OUTBOX_ENV = "STEPSTREAM_WEBHOOK_OUTBOX"

_SECRET_PARTS = ("secret", "token", "passw", "signature", "credential", "apikey")
_SECRET_WORDS = frozenset({"key", "sig", "auth", "pwd", "pass"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Options:
    """One receiver and how to deliver to it; the defaults suit a CI or chat integration."""

    receiver: str  # the URL POSTed to, without `webhook+` and without these options
    outbox: Path  # the folder of outbox files, shared by every process of this user
    events: frozenset[str] = DEFAULT_EVENTS
    secret_env: str = SECRET_ENV
    retry_for: float = 3600.0  # seconds after an event was queued to keep trying it
    timeout: float = 15.0  # seconds for one attempt, answer included
    backoff: float = 1.0  # seconds before the first retry; doubles per attempt
    backoff_max: float = 300.0  # seconds between attempts at most
    outbox_size: int = 10_000  # events kept per receiver; past it the oldest go


def default_outbox() -> Path:
    """$STEPSTREAM_WEBHOOK_OUTBOX, else `stepstream/webhooks` in the user's state dir (XDG)."""
    configured = os.environ.get(OUTBOX_ENV)
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "stepstream" / "webhooks"


_OPTIONS = frozenset(
    {
        "events",
        "secret_env",
        "outbox",
        "outbox_size",
        "retry_for",
        "timeout",
        "backoff",
        "backoff_max",
    }
)


def parse(url: str) -> Options:
    """The options a webhook URL gives; TransportError saying what is wrong, never echoing a
    secret."""
    scheme, sep, rest = url.partition("://")
    if scheme not in SCHEMES or not sep:
        raise TransportError("a webhook URL starts with webhook+https:// or webhook+http://")
    try:
        parts = urlsplit(f"{scheme.removeprefix('webhook+')}://{rest}")
    except ValueError as exc:  # a malformed host; the message does not repeat the URL
        raise TransportError(f"a webhook URL that cannot be read: {exc}") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    _refuse_secrets(pairs, parts.password)
    if not parts.hostname:
        raise TransportError(f"webhook URL {url!r} names no receiver host")
    if parts.fragment:
        raise TransportError(f"webhook URL {url!r}: a receiver URL takes no #fragment")
    names = [name for name, _ in pairs if name in _OPTIONS]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TransportError(f"webhook URL {url!r} gives ?{repeated[0]}= more than once")
    ours = {name: value for name, value in pairs if name in _OPTIONS}
    theirs = urlencode([(name, value) for name, value in pairs if name not in _OPTIONS])
    receiver = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", theirs, ""))
    try:
        values = {"outbox": default_outbox(), **_values(ours)}
    except ValueError as exc:
        raise TransportError(f"webhook URL {url!r}: {exc}") from None
    return Options(receiver=receiver, **values)  # type: ignore[arg-type]


def _refuse_secrets(pairs: list[tuple[str, str]], password: str | None) -> None:
    """A secret in the URL would be logged and shown; name where it should go instead."""
    where = f"put the signing secret in ${SECRET_ENV}, or in a variable named by ?secret_env=NAME"
    if password is not None:
        raise TransportError(f"a webhook URL takes no user:password@; {where}")
    for name, value in pairs:
        lowered = name.lower()
        if name == "secret_env":
            continue
        if (
            value.startswith("whsec_")
            or any(part in lowered for part in _SECRET_PARTS)
            or _SECRET_WORDS & set(re.split(r"[^a-z0-9]+", lowered))
        ):
            raise TransportError(
                f"a webhook URL must not carry a secret (query parameter {name!r}); {where}"
            )


def _values(given: dict[str, str]) -> dict[str, object]:
    """Typed option values; ValueError naming the option that does not fit."""
    values: dict[str, object] = {}
    for name, text in given.items():
        if name == "events":
            values[name] = _events(text)
        elif name == "secret_env":
            if not _ENV_NAME.fullmatch(text):
                raise ValueError(f"?secret_env= takes an environment variable's name, not {text!r}")
            values[name] = text
        elif name == "outbox":
            if not text:
                raise ValueError("?outbox= takes a directory")
            values[name] = Path(text).expanduser()
        elif name == "outbox_size":
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"?outbox_size= takes a whole number of events, not {text!r}")
            values[name] = int(text)
        else:
            values[name] = _seconds(name, text)
    return values


def _events(text: str) -> frozenset[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    if names == {"all"}:
        return frozenset(EVENT_TYPES)
    unknown = sorted(names - set(EVENT_TYPES))
    if unknown or not names:
        raise ValueError(
            f"?events= takes a comma-separated list of {', '.join(EVENT_TYPES)}, or all; "
            f"not {', '.join(unknown) or 'nothing'}"
        )
    return frozenset(names)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"?{name}= takes a number of seconds above 0, not {text!r}")
    return value
