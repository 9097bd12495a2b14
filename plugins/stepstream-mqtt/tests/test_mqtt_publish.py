"""A worker's run reaches the broker: every event at QoS 1, the latest record retained."""

from __future__ import annotations

import logging
import socket

import msgspec
import pytest

from stepstream import Engine, ExecutionRecord, make_plugin_manager
from stepstream.transports import TransportError, open_transport
from stepstream.transports.publisher import publishing
from stepstream_mqtt.transport import MqttTransport

from mqtt_support import counting, listening, retained, run_published, wait_until

pytestmark = pytest.mark.anyio


def _record(payload: bytes) -> ExecutionRecord:
    return msgspec.json.decode(payload, type=ExecutionRecord)


async def test_each_event_goes_to_its_executions_topic_at_qos_1_in_order(
    url: str, prefix: str, transports
) -> None:
    async with listening(f"{prefix}/#") as listener:
        record, publisher = await run_published(counting(), {"n": 3}, transports(url))
        topic = f"{prefix}/executions/{record.execution_id}/events"
        await wait_until(lambda: len(listener.on(topic)) == publisher.delivered)
    messages = listener.on(topic)
    assert {(m.qos, m.retain) for m in messages} == {(1, False)}
    envelopes = [m.json() for m in messages]
    kinds = [e["event"]["type"] for e in envelopes]
    assert kinds[0] == "status" and kinds[1] == "started" and kinds[-1] == "completed"
    seqs = [e["event"]["seq"] for e in envelopes]
    assert seqs == sorted(set(seqs))
    assert [e.get("after", 0) for e in envelopes] == [0, *seqs[:-1]]
    assert envelopes[0]["record"]["pipeline"] == "mqtt-count"  # a receiver starts from it
    assert all("record" not in e for e in envelopes[1:])
    assert envelopes[-1]["event"]["outputs"] == {"items": 6}


async def test_a_dashboard_connecting_after_the_run_gets_its_final_status_retained(
    url: str, prefix: str, transports
) -> None:
    record, _ = await run_published(counting(), {"n": 4}, transports(url))
    kept = {m.topic: m for m in await retained(f"{prefix}/#")}
    assert set(kept) == {
        f"{prefix}/executions/{record.execution_id}/status",
        f"{prefix}/pipelines/mqtt-count/status",
    }  # events are never retained
    for message in kept.values():
        assert message.retain
        assert _record(message.payload) == record  # the worker's record, exactly
    status = kept[f"{prefix}/pipelines/mqtt-count/status"].json()
    assert status["status"] == "completed"
    assert status["progress"]["percentage"] == 100.0
    assert status["outputs"] == {"items": 8}


async def test_the_status_follows_the_run_while_it_runs(url: str, prefix: str, transports) -> None:
    async with listening(f"{prefix}/pipelines/+/status") as listener:
        record, _ = await run_published(counting(), {"n": 5, "pause": 0.05}, transports(url))
        topic = f"{prefix}/pipelines/mqtt-count/status"
        await wait_until(lambda: any(m.json()["status"] == "completed" for m in listener.on(topic)))
    statuses = [m.json() for m in listener.on(topic)]
    percentages = [s["progress"]["percentage"] for s in statuses if s["progress"]]
    assert percentages == sorted(percentages) and percentages[-1] == 100.0
    assert any(0 < p < 100 for p in percentages), percentages  # seen mid-run, not only at the end
    assert listener.on(topic)[-1].json()["execution_id"] == record.execution_id


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mqtt://", "names no broker; use e.g. mqtt://broker:1883/stepstream"),
        ("mqtt://broker:99999/x", "has a bad port"),
        ("mqtt://broker/a/+/b", "topic prefix 'a/+/b' may not start with $, hold + or #"),
        ("mqtt://broker/$SYS", "topic prefix '$SYS' may not start with $"),
        ("mqtt://broker/x?qos=2", "unknown option 'qos' (known: client_id, cafile)"),
        ("mqtt://broker/x?cafile=ca.pem", "cafile needs mqtts://"),
        ("mqtt://broker/x#frag", "an MQTT URL takes no #part"),
        ("mqtt://ann:s3cret@broker:port/x", "'mqtt://ann:***@broker:port/x' has a bad port"),
    ],
)
def test_a_bad_url_is_one_line_saying_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(TransportError) as raised:
        open_transport(url, make_plugin_manager().transport_schemes())
    message = str(raised.value)
    assert says in message
    assert "\n" not in message and "s3cret" not in message


def test_the_url_names_broker_prefix_credentials_and_session() -> None:
    settings = MqttTransport.from_url(
        "mqtts://ann:p%40ss@broker.lan/home/jobs/?client_id=nas-server&cafile=/etc/ca.pem"
    ).settings
    assert (settings.host, settings.port, settings.tls) == ("broker.lan", 8883, True)
    assert (settings.username, settings.password) == ("ann", "p@ss")
    assert settings.prefix == "home/jobs"
    assert (settings.client_id, settings.cafile) == ("nas-server", "/etc/ca.pem")
    plain = MqttTransport.from_url("mqtt://broker").settings
    assert (plain.port, plain.tls, plain.prefix) == (1883, False, "stepstream")
    assert plain.client_id == MqttTransport.from_url("mqtt://broker").settings.client_id


def test_the_entry_point_offers_mqtt_and_mqtts() -> None:
    plugins = make_plugin_manager()
    schemes = plugins.transport_schemes()
    assert schemes["mqtt"] is schemes["mqtts"] is MqttTransport
    assert plugins.origin("mqtt") == "stepstream-mqtt 0.1.0"


async def test_an_unreachable_broker_is_a_transport_error_that_never_shows_the_password(
    caplog: pytest.LogCaptureFixture, transports
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    transport = transports(f"mqtt://ann:s3cret@127.0.0.1:{port}/nowhere")
    with pytest.raises(TransportError, match=r"mqtt://ann:\*\*\*@127\.0\.0\.1:\d+/nowhere: "):
        await transport.publish([])
    caplog.set_level(logging.INFO)
    worker = Engine(load_entrypoints=False)
    async with publishing(worker, [transport], flush_timeout=0.5) as (publisher,):
        await worker.run(counting(), {"n": 1})
    assert publisher.left > 0
    assert "cannot publish to mqtt://ann:***@127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text
