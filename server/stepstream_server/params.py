"""Parsing what clients put in URLs: sequence numbers, page sizes and cursors, strictly.

REST and the WebSockets parse a parameter with the same function, so `?after=` means
the same on both. A number is decimal digits only: no sign, exponent, underscore,
space or non-ASCII digit (Python's `int()` takes `1_0` and `٣`, and Litestar's
query parsing takes `1e3`), and it must fit what the store can hold.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.openapi.spec import OpenAPIType

MAX_SEQ = 2**63 - 1  # SQLite's INTEGER: a larger `after` cannot be compared with a stored seq
DEFAULT_PAGE = 50
MAX_PAGE = 200
_DIGITS = re.compile(r"[0-9]+")
# `exec_` and a ULID: 26 characters of Crockford's base32 (no I, L, O or U).
EXECUTION_ID = re.compile(r"exec_[0-9A-HJKMNP-TV-Z]{26}")
SHOWN = 40  # characters of a bad value echoed back in an error


class BadParameter(ValueError):
    """A URL parameter that cannot be used; the message says what would be accepted."""


def shown(value: str, limit: int = SHOWN) -> str:
    """`value` quoted for an error message, cut to `limit` characters: errors stay small."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def parse_int(raw: str, name: str, minimum: int, maximum: int) -> int:
    """`raw` as a whole number from `minimum` to `maximum`, written in decimal digits only."""
    wanted = f"{name!r} must be a whole number from {minimum} to {maximum}, in decimal digits"
    if not _DIGITS.fullmatch(raw):
        raise BadParameter(f"{wanted}; got {shown(raw)}")
    digits = raw.lstrip("0") or "0"  # int() of thousands of digits is slow, or refused
    if len(digits) > len(str(maximum)) or not minimum <= int(digits) <= maximum:
        raise BadParameter(f"{wanted}; got {shown(raw)}, which is out of range")
    return int(digits)


def parse_after(raw: str | None) -> int:
    """`?after=SEQ`: a sequence number, 0 (the default) to 2**63 - 1."""
    return 0 if raw is None else parse_int(raw, "after", 0, MAX_SEQ)


def parse_limit(raw: str | None) -> int:
    """`?limit=N`: a page size, 1 to MAX_PAGE (default DEFAULT_PAGE)."""
    return DEFAULT_PAGE if raw is None else parse_int(raw, "limit", 1, MAX_PAGE)


def parse_cursor(raw: str | None) -> str | None:
    """`?cursor=`: the `next_cursor` of a previous page, which is an execution id."""
    if raw is None:
        return None
    if not EXECUTION_ID.fullmatch(raw):
        raise BadParameter(
            "'cursor' must be the `next_cursor` of a previous page (an execution id: exec_ and "
            f"26 characters of Crockford base32); got {shown(raw)}"
        )
    return raw


def integer_schema(minimum: int, maximum: int, default: int) -> dict[str, Any]:
    """OpenAPI for a number parameter that the handler receives as text and parses itself."""
    return {"type": OpenAPIType.INTEGER, "minimum": minimum, "maximum": maximum, "default": default}


CURSOR_SCHEMA: dict[str, Any] = {
    "one_of": None,
    "type": OpenAPIType.STRING,
    "pattern": f"^{EXECUTION_ID.pattern}$",
}
