"""The entry point: offers `mqtt://` and `mqtts://`; aiomqtt loads only when one is used."""

from __future__ import annotations

from stepstream import hookimpl


@hookimpl
def register_transports() -> dict[str, type]:
    """Offer `mqtt://` and `mqtts://`."""
    from .transport import MqttTransport

    return {"mqtt": MqttTransport, "mqtts": MqttTransport}
