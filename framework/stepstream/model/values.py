"""Turning what steps return, receive and say into values a record can always keep.

Everything that enters an event passes through here first, so nothing a step
does can make an event that cannot be encoded: one such event would stop a
store's writer, and every execution after it would be lost. Outputs and inputs
are converted to JSON-ready builtins and encoded once to prove it; text is made
encodable (lone surrogates replaced) and bounded.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..defaults import DEFAULT_MAX_OUTPUT_BYTES as DEFAULT_MAX_OUTPUT_BYTES
from .events import encode

MAX_MESSAGE_CHARS = 1_000  # a step's progress message
MAX_ERROR_CHARS = 10_000  # an error's message
MAX_TRACEBACK_CHARS = 50_000  # an error's traceback, keeping its end (where the error is)


class Unstorable(ValueError):
    """A value cannot be kept as JSON; the message says which value and why."""


def jsonable(value: Any) -> Any:
    """`value` as JSON-ready builtins; what msgspec cannot encode becomes its repr."""
    try:
        return msgspec.to_builtins(value, enc_hook=repr, str_keys=True)
    except (TypeError, ValueError, OverflowError):  # e.g. tuple keys: convert by hand
        if isinstance(value, dict):
            return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [jsonable(v) for v in value]
        return repr(value)


def storable(value: Any, what: str) -> tuple[Any, int]:
    """`value` as JSON-ready builtins, and its encoded size; Unstorable saying why it cannot be.

    Python's int-to-text limit, lone surrogates in strings and the like make a
    value unencodable; better to know here than in a store's writer.
    """
    converted = jsonable(value)
    try:
        size = len(encode(converted))
    except (ValueError, TypeError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise Unstorable(f"{what} cannot be stored as JSON: {_short(str(exc))}") from None
    return converted, size


def bounded_outputs(outputs: Any, limit: int | None) -> Any:
    """Outputs as a record keeps them: converted, or a marker when over `limit` bytes.

    Raises Unstorable when they cannot be encoded at all.
    """
    converted, size = storable(outputs, "the outputs")
    if limit is not None and size > limit:
        return {
            "marker": "outputs_too_large",
            "bytes": size,
            "limit": limit,
            "message": f"the outputs were {size:,} bytes of JSON, over the limit of {limit:,}; "
            "they were not kept (raise the limit with max_output_bytes)",
        }
    return converted


def clean_text(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Text any encoder takes: lone surrogates replaced, at most `limit` characters.

    A cut is marked with `…`; `keep_end` keeps the end instead of the start.
    """
    if len(text) > limit:
        text = "…" + text[len(text) - limit + 1 :] if keep_end else text[: limit - 1] + "…"
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode(errors="replace").decode()
    return text


def _short(text: str) -> str:
    return clean_text(text, 200)
