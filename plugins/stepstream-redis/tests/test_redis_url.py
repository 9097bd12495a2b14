"""The URL: what it may say, and a one-line error naming what is wrong, never the password."""

from __future__ import annotations

import socket

import pytest

from stepstream import make_plugin_manager
from stepstream.transports import TransportError, open_transport
from stepstream_redis.transport import RedisTransport


def _open(url: str) -> RedisTransport:
    transport = open_transport(url, make_plugin_manager().transport_schemes())
    assert isinstance(transport, RedisTransport)
    return transport


def test_defaults_and_every_option() -> None:
    plain = _open("redis://cache").settings
    assert (plain.host, plain.port, plain.db, plain.tls) == ("cache", 6379, 0, False)
    assert (plain.prefix, plain.maxlen, plain.claim_after) == ("stepstream", 100_000, 60.0)
    assert (plain.group, plain.consumer) == (
        f"stepstream-{socket.gethostname()}",
        socket.gethostname(),
    )
    full = _open(
        "rediss://app:s%40cret@cache:6380/3?prefix=team&maxlen=500&ttl=60"
        "&group=dash&consumer=web-1&claim_after=2.5"
    ).settings
    assert (full.port, full.db, full.tls, full.username, full.password) == (
        6380,
        3,
        True,
        "app",
        "s@cret",
    )
    assert (full.stream, full.execution("exec_1"), full.first("exec_1"), full.cancels) == (
        "team",
        "team:exec:exec_1",
        "team:first:exec_1",
        "team:cancel",
    )
    assert (full.maxlen, full.ttl, full.group, full.consumer, full.claim_after) == (
        500,
        60,
        "dash",
        "web-1",
        2.5,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://", "names no Redis server"),
        ("redis://:hunter2@cache/zero", "the path is the database number, not 'zero'"),
        ("redis://:hunter2@cache:port", "bad port"),
        ("redis://:hunter2@cache/0?maxlen=lots", "maxlen must be an integer of at least 1"),
        ("redis://:hunter2@cache/0?maxlen=0", "maxlen must be an integer of at least 1"),
        ("redis://:hunter2@cache/0?claim_after=-1", "claim_after must be a number of at least 0"),
        ("redis://:hunter2@cache/0?max_len=5", "unknown option 'max_len' (known: prefix, maxlen"),
    ],
)
def test_a_url_that_cannot_work_is_one_line_without_the_password(url: str, says: str) -> None:
    with pytest.raises(TransportError) as caught:
        _open(url)
    message = str(caught.value)
    assert says in message
    assert "hunter2" not in message and "\n" not in message
