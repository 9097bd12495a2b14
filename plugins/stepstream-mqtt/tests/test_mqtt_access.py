"""A broker that checks who reads and writes what: the credentials come from the URL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from stepstream import Engine
from stepstream.transports import TransportError

from mqtt_support import (
    counting,
    finished,
    open_session,
    private_broker,
    run_published,
    subscribed,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def guarded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Mosquitto where `worker` may write `jobs/#` and `server` read it (password `s3cret`)."""
    folder = tmp_path_factory.mktemp("guarded-broker")
    passwords = folder / "passwords"
    passwords.write_text("")
    for user in ("worker", "server"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, "s3cret"], check=True)
    (folder / "acl").write_text(
        "user worker\ntopic write jobs/#\n\nuser server\ntopic read jobs/#\n"
    )
    with private_broker(
        folder, "allow_anonymous false", f"password_file {passwords}", f"acl_file {folder}/acl"
    ) as port:
        yield port


async def test_credentials_in_the_url_carry_a_run_from_worker_to_server(
    guarded_broker: int, server: Engine, transports
) -> None:
    reader = transports(f"mqtt://server:s3cret@127.0.0.1:{guarded_broker}/jobs")
    await open_session(
        reader.settings.client_id,
        "jobs/executions/+/events",
        guarded_broker,
        username="server",
        password="s3cret",
    )
    writer = transports(f"mqtt://worker:s3cret@127.0.0.1:{guarded_broker}/jobs")
    record, _ = await run_published(counting(), {"n": 2}, writer)
    async with subscribed(server, reader):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_a_wrong_password_is_a_transport_error_that_does_not_repeat_it(
    guarded_broker: int, transports
) -> None:
    transport = transports(f"mqtt://worker:guess@127.0.0.1:{guarded_broker}/jobs")
    with pytest.raises(TransportError) as refused:
        await transport.publish([])
    message = str(refused.value)
    assert message.startswith(f"MQTT broker mqtt://worker:***@127.0.0.1:{guarded_broker}/jobs: ")
    assert "guess" not in message
    assert "authori" in message.lower() or "password" in message.lower(), message
