"""Fixtures: a key prefix of the test's own on the real Redis, deleted after it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from stepstream import Engine, make_plugin_manager
from stepstream.transports import open_transport
from stepstream_redis.transport import RedisTransport

from redis_support import HOST, PORT, Proxy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def redis_is_up() -> None:
    """Fail early, saying how to start it, if Redis is not there."""
    try:
        socket.create_connection((HOST, PORT), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"no Redis on {HOST}:{PORT} ({exc}); start one: redis-server --daemonize yes")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A plain client of the shared Redis, for looking at and tampering with what is stored."""
    client = Redis(host=HOST, port=PORT)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix no other test uses; every key under it goes afterwards."""
    name = f"test:stepstream-redis:{uuid.uuid4().hex}"
    yield name
    keys = [name, *[key async for key in redis.scan_iter(match=f"{name}:*")]]
    await redis.delete(*keys)


@pytest.fixture
def url(prefix: str) -> str:
    """The test's Redis URL."""
    return f"redis://{HOST}:{PORT}/0?prefix={prefix}"


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    """A proxy in front of Redis, started; the test stops and starts it."""
    proxy = Proxy()
    await proxy.start()
    yield proxy
    if proxy.listening:
        await proxy.stop()


@pytest.fixture
async def transports() -> AsyncIterator[Callable[[str], RedisTransport]]:
    """Factory: open a Redis transport by URL through the plugin manager, as `--publish` does."""
    schemes = make_plugin_manager().transport_schemes()
    opened: list[RedisTransport] = []

    def open_(url: str) -> RedisTransport:
        transport = open_transport(url, schemes)
        assert isinstance(transport, RedisTransport)
        opened.append(transport)
        return transport

    yield open_
    for transport in opened:
        await transport.aclose()


@pytest.fixture
def server() -> Engine:
    """The receiving side: an engine as a stepstream server has, on a memory store."""
    return Engine(load_entrypoints=False)
