"""Built-in plugin `stepstream.stores.sqlite`: offers `sqlite://`, importing the store on call."""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl
def register_stores() -> dict[str, type]:
    """Offer `sqlite:///path.db`."""
    from .sqlite import SqliteStore

    return {"sqlite": SqliteStore}
