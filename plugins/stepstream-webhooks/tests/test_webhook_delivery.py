"""What a receiver gets while a pipeline runs in this process and publishes to it.

The engine runs real pipelines under `publishing`, as `stepstream run` does; the
receiver is a real HTTP server that answers as each test scripts it, and every
webhook is checked with `standardwebhooks`, as a receiver would.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
import pytest
from hook_pipelines import broken, quick
from stepstream_webhooks import WebhookTransport
from stepstream_webhooks.outbox import Claimed, Outbox
from webhook_support import SECRET, WAIT, Answer, Receiver, hook_url

from stepstream import Engine, ExecutionRecord, Pipeline
from stepstream.transports.publisher import Publisher, publishing

pytestmark = pytest.mark.anyio


async def _publish(
    url: str, *pipelines: Pipeline, flush_timeout: float = WAIT
) -> tuple[list[ExecutionRecord], Publisher]:
    """Run each pipeline once while publishing to `url`; the records and the publisher."""
    engine = Engine(load_entrypoints=False)
    records = []
    with anyio.fail_after(WAIT + flush_timeout):
        async with publishing(
            engine, [WebhookTransport.from_url(url)], flush_timeout=flush_timeout
        ) as (publisher,):
            for pipeline in pipelines:
                records.append(await engine.run(pipeline))
    return records, publisher


async def test_each_webhook_verifies_with_standardwebhooks_and_says_what_happened(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    (record,), publisher = await _publish(hook_url(receiver.url, tmp_path), quick)
    assert publisher.left == 0
    hits = receiver.accepted()
    assert [hit.id for hit in hits] == [
        f"{record.execution_id}:{seq}" for seq in (2, record.last_seq)
    ]
    started, completed = (hit.verified() for hit in hits)
    assert started["type"] == "execution.started"
    assert started["data"]["status"] == "running"
    assert started["data"]["text"] == "quick started"
    assert completed["type"] == "execution.completed"
    assert completed["timestamp"] == completed["data"]["finished_at"]
    data = completed["data"]
    assert data["execution_id"] == record.execution_id
    assert (data["pipeline"], data["status"], data["outputs"]) == (
        "quick",
        "completed",
        {"doubled": 6},
    )
    assert data["progress"]["percentage"] == 100.0
    assert data["error"] is None
    assert data["text"].startswith("quick completed in ")
    assert data["event"]["type"] == "completed"
    assert data["event"]["seq"] == record.last_seq
    assert hits[0].headers["content-type"] == "application/json"
    assert abs(int(hits[0].headers["webhook-timestamp"]) - time.time()) < WAIT


async def test_events_chooses_which_types_are_sent(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    await _publish(hook_url(receiver.url, tmp_path, events="failed"), quick, broken)
    (failed,) = [hit.verified() for hit in receiver.accepted()]
    assert failed["type"] == "execution.failed"
    assert failed["data"]["pipeline"] == "broken"
    assert failed["data"]["error"]["message"] == "bad row 1"
    assert failed["data"]["text"] == "broken failed at step 'explode': ValueError: bad row 1"


async def test_all_sends_every_event_type_in_order(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    (record,), _ = await _publish(hook_url(receiver.url, tmp_path, events="all"), quick)
    payloads = [hit.verified() for hit in receiver.accepted()]
    types = [p["type"] for p in payloads]
    assert types[:2] == ["execution.status", "execution.started"]
    assert "execution.progress" in types
    assert types[-1] == "execution.completed"
    seqs = [p["data"]["event"]["seq"] for p in payloads]
    assert seqs == sorted(set(seqs)) and seqs[-1] == record.last_seq


async def test_a_webhook_the_receiver_failed_is_sent_again_under_its_id_until_accepted(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    receiver.answer(Answer(500), Answer(503))
    _, publisher = await _publish(hook_url(receiver.url, tmp_path), quick)
    assert publisher.left == 0
    first, again, accepted, completed = receiver.hits
    assert first.id == again.id == accepted.id != completed.id
    assert first.body == again.body == accepted.body
    assert all(hit.verified() for hit in receiver.hits)  # each attempt signed afresh
    assert [hit.id for hit in receiver.accepted()] == [accepted.id, completed.id]


async def test_a_receiver_too_slow_to_answer_gets_the_webhook_again(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    receiver.answer(Answer(None))
    _, publisher = await _publish(hook_url(receiver.url, tmp_path, timeout=0.5), quick)
    assert publisher.left == 0
    assert receiver.hits[0].id == receiver.hits[1].id
    assert [hit.verified()["type"] for hit in receiver.accepted()] == [
        "execution.started",
        "execution.completed",
    ]


@pytest.mark.parametrize("status", [400, 410])
async def test_a_refusal_is_not_retried_and_logged_once(
    receiver: Receiver,
    secret: str,
    tmp_path: Path,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.answer(then=Answer(status, body=b"no thanks"))
    with caplog.at_level(logging.INFO, logger="stepstream.webhooks"):
        _, publisher = await _publish(hook_url(receiver.url, tmp_path), quick, quick)
    assert publisher.left == 0
    assert len(receiver.hits) == 4  # started and completed of two runs, each once
    assert len({hit.id for hit in receiver.hits}) == 4
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert "refused webhook" in errors[0].getMessage()
    assert f"({status} " in errors[0].getMessage() and "no thanks" in errors[0].getMessage()


async def test_429_retry_after_is_waited_for(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    receiver.answer(Answer(429, headers={"Retry-After": "1"}))
    _, publisher = await _publish(hook_url(receiver.url, tmp_path), quick)
    assert publisher.left == 0
    limited, retried = receiver.hits[:2]
    assert limited.id == retried.id and retried.accepted
    assert retried.at - limited.at >= 0.95  # the backoff alone would have been 0.02 s


async def test_a_receiver_that_never_answers_does_not_hold_up_the_run(
    receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    receiver.answer(then=Answer(None))
    began = time.monotonic()
    _, publisher = await _publish(
        hook_url(receiver.url, tmp_path, timeout=120), quick, quick, flush_timeout=0.5
    )
    assert time.monotonic() - began < WAIT  # an attempt alone may take 120 s
    assert publisher.left == 4
    outbox = Outbox.for_receiver(tmp_path, receiver.url, limit=100)
    assert isinstance(outbox.claim(lease=60), Claimed)  # released: the next process sends it


async def test_a_webhook_is_given_up_on_after_retry_for(
    receiver: Receiver, secret: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer(then=Answer(500))
    with caplog.at_level(logging.WARNING, logger="stepstream.webhooks"):
        _, publisher = await _publish(hook_url(receiver.url, tmp_path, retry_for=0.5), quick)
    assert publisher.left == 0
    assert len(receiver.hits) > 2
    assert not receiver.accepted()
    assert any("gave up on webhook" in r.getMessage() for r in caplog.records)


async def test_the_secret_never_appears_in_logs_or_errors(
    receiver: Receiver, secret: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answer(Answer(500), Answer(None), Answer(401), Answer(301, {"Location": "/x"}))
    with caplog.at_level(logging.DEBUG):
        await _publish(hook_url(receiver.url, tmp_path, timeout=0.5), quick, broken, quick)
    assert len(receiver.hits) >= 6
    assert "refused webhook" in caplog.text
    key = SECRET.removeprefix("whsec_")
    assert key not in caplog.text
    assert key[:12] not in caplog.text
