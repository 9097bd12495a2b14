"""Built-in plugin `stepstream.transports.http`: offers `http(s)://`, importing it on call."""

from __future__ import annotations

from ..hookspecs import hookimpl


@hookimpl
def register_transports() -> dict[str, type]:
    """Offer `http://` and `https://`."""
    from .http import HttpTransport

    return {"http": HttpTransport, "https": HttpTransport}
