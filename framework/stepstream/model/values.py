"""Turning what a step returns or receives into JSON-ready values a record can hold."""

from __future__ import annotations

from typing import Any

import msgspec


def jsonable(value: Any) -> Any:
    """Outputs as JSON-ready builtins; what msgspec cannot encode becomes its repr."""
    try:
        return msgspec.to_builtins(value, enc_hook=repr, str_keys=True)
    except (TypeError, ValueError, OverflowError):  # e.g. tuple keys: convert by hand
        if isinstance(value, dict):
            return {k if isinstance(k, str) else repr(k): jsonable(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [jsonable(v) for v in value]
        return repr(value)
