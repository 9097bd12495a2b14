"""Fixtures: a topic prefix of the test's own on the real Mosquitto, cleaned up after it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from stepstream import Engine, make_plugin_manager
from stepstream.transports import open_transport
from stepstream_mqtt.transport import MqttTransport

from mqtt_support import HOST, PORT, Proxy, clear, end_sessions


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def broker_is_up() -> None:
    """Fail early, saying how to start it, if Mosquitto is not there."""
    try:
        socket.create_connection((HOST, PORT), timeout=5).close()
    except OSError as exc:
        pytest.fail(
            f"no MQTT broker on {HOST}:{PORT} ({exc}); "
            "start one: mosquitto -d -c /etc/mosquitto/mosquitto.conf"
        )


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A topic prefix no other test uses; what the test retained under it goes afterwards."""
    name = f"test/stepstream-mqtt/{uuid.uuid4().hex}"
    yield name
    await clear(name)


@pytest.fixture
def url(prefix: str) -> str:
    """The test's broker URL."""
    return f"mqtt://{HOST}:{PORT}/{prefix}"


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    """A proxy in front of the broker, started; the test stops and starts it."""
    proxy = Proxy()
    await proxy.start()
    yield proxy
    if proxy.listening:
        await proxy.stop()


@pytest.fixture
async def transports() -> AsyncIterator[Callable[[str], MqttTransport]]:
    """Factory: open an MQTT transport by URL through the plugin manager, as `--publish` does.

    Each is closed after the test, and the persistent session its reader made ends.
    """
    schemes = make_plugin_manager().transport_schemes()
    opened: list[MqttTransport] = []

    def open_(url: str) -> MqttTransport:
        transport = open_transport(url, schemes)
        assert isinstance(transport, MqttTransport)
        opened.append(transport)
        return transport

    yield open_
    for transport in opened:
        await transport.aclose()
    await end_sessions({t.settings.client_id for t in opened})


@pytest.fixture
def server() -> Engine:
    """The receiving side: an engine as a stepstream server has, on a memory store."""
    return Engine(load_entrypoints=False)
