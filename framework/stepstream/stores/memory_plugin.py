"""Built-in plugin `stepstream.stores.memory`: offers `memory://`, importing the store on call."""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl
def register_stores() -> dict[str, type]:
    """Offer `memory://`."""
    from .memory import MemoryStore

    return {"memory": MemoryStore}
