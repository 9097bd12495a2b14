"""`mqtts://`: TLS to a broker whose certificate a CA file vouches for; an untrusted one refused."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

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

NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A Mosquitto of this module's own with a TLS listener: (port, the CA's certificate)."""
    folder = tmp_path_factory.mktemp("tls-broker")
    _openssl("req", "-x509", *NEW_KEY, "-days", "1", "-subj", "/CN=test CA", "-keyout", "ca.key",
             "-out", "ca.pem", cwd=folder)  # fmt: skip
    _openssl("req", *NEW_KEY, "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
             cwd=folder)  # fmt: skip
    with private_broker(
        folder,
        "allow_anonymous true",
        f"cafile {folder}/ca.pem",
        f"certfile {folder}/server.pem",
        f"keyfile {folder}/server.key",
    ) as port:
        yield port, folder / "ca.pem"


async def test_mqtts_with_the_brokers_ca_carries_a_run_to_a_server(
    tls_broker: tuple[int, Path], prefix: str, server: Engine, transports
) -> None:
    port, ca = tls_broker
    url = f"mqtts://127.0.0.1:{port}/{prefix}?cafile={ca}"
    reader = transports(url)
    trusting = ssl.create_default_context(cafile=ca)
    await open_session(
        reader.settings.client_id, f"{prefix}/executions/+/events", port, tls_context=trusting
    )
    record, _ = await run_published(counting(), {"n": 3}, transports(url))
    async with subscribed(server, reader):
        assert await wait_until(lambda: finished(server, record.execution_id)) == record


async def test_mqtts_to_a_broker_no_trusted_ca_vouches_for_is_refused(
    tls_broker: tuple[int, Path], prefix: str, transports
) -> None:
    port, _ = tls_broker
    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        await transports(f"mqtts://127.0.0.1:{port}/{prefix}").publish([])
