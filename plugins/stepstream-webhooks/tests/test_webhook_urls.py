"""A webhook URL opens as the README says, and a secret never rides in it or in an error."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path

import pytest
from stepstream_webhooks import WebhookTransport
from stepstream_webhooks.delivery import retry_after
from stepstream_webhooks.options import DEFAULT_EVENTS, EVENT_TYPES, default_outbox, parse
from webhook_support import SECRET

from stepstream import make_plugin_manager
from stepstream.transports import TransportError, open_transport


def test_the_entry_point_offers_both_schemes(secret: str, tmp_path: Path) -> None:
    schemes = make_plugin_manager().transport_schemes()
    assert schemes["webhook+https"] is schemes["webhook+http"] is WebhookTransport
    transport = open_transport(f"webhook+https://ci.example/hook?outbox={tmp_path}", schemes)
    assert transport.options.receiver == "https://ci.example/hook"
    assert list(tmp_path.glob("ci.example-*.sqlite3"))


@pytest.mark.parametrize(
    "query",
    [
        f"secret={SECRET}",
        "token=abc123",
        "api_key=abc123",
        "X-Signature=abc123",
        "password=abc123",
        f"anything={SECRET}",
    ],
)
def test_a_secret_in_the_url_is_refused_without_repeating_it(secret: str, query: str) -> None:
    with pytest.raises(TransportError) as refused:
        WebhookTransport.from_url(f"webhook+https://ci.example/hook?{query}")
    message = str(refused.value)
    assert "abc123" not in message and SECRET not in message
    assert "STEPSTREAM_WEBHOOK_SECRET" in message and "?secret_env=NAME" in message


def test_a_password_in_the_url_is_refused_without_repeating_it(secret: str) -> None:
    with pytest.raises(TransportError) as refused:
        WebhookTransport.from_url("webhook+https://bot:hunter2@ci.example/hook")
    assert "hunter2" not in str(refused.value)


def test_the_secret_comes_from_the_variable_the_url_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STEPSTREAM_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("MY_HOOK_SECRET", raising=False)
    url = f"webhook+https://ci.example/hook?secret_env=MY_HOOK_SECRET&outbox={tmp_path}"
    with pytest.raises(TransportError, match="set MY_HOOK_SECRET to the receiver's signing"):
        WebhookTransport.from_url(url)
    with pytest.raises(TransportError, match="set STEPSTREAM_WEBHOOK_SECRET"):
        WebhookTransport.from_url(f"webhook+https://ci.example/hook?outbox={tmp_path}")
    monkeypatch.setenv("MY_HOOK_SECRET", SECRET)
    assert WebhookTransport.from_url(url).options.secret_env == "MY_HOOK_SECRET"


def test_a_malformed_secret_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STEPSTREAM_WEBHOOK_SECRET", "whsec_not*base64!")
    with pytest.raises(TransportError) as refused:
        WebhookTransport.from_url(f"webhook+https://ci.example/hook?outbox={tmp_path}")
    assert "not*base64" not in str(refused.value)
    assert "STEPSTREAM_WEBHOOK_SECRET is not a signing secret" in str(refused.value)


def test_options_are_taken_out_and_the_receivers_own_query_is_kept(tmp_path: Path) -> None:
    options = parse(
        f"webhook+http://ci.example:8080/hook?project=etl&events=failed,completed"
        f"&timeout=3&retry_for=60&backoff=0.5&backoff_max=5&outbox_size=7&outbox={tmp_path}"
    )
    assert options.receiver == "http://ci.example:8080/hook?project=etl"
    assert options.events == {"failed", "completed"}
    assert (options.timeout, options.retry_for, options.backoff, options.backoff_max) == (
        3,
        60,
        0.5,
        5,
    )
    assert (options.outbox_size, options.outbox) == (7, tmp_path)


def test_by_default_the_lifecycle_of_a_run_is_sent_and_all_sends_every_type() -> None:
    assert parse("webhook+https://ci.example").events == DEFAULT_EVENTS
    assert {"started", "completed", "failed", "cancelled"} == DEFAULT_EVENTS
    assert parse("webhook+https://ci.example?events=all").events == set(EVENT_TYPES)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("events=finished", "?events= takes a comma-separated list"),
        ("events=", "?events= takes a comma-separated list"),
        ("timeout=0", "?timeout= takes a number of seconds above 0"),
        ("retry_for=soon", "?retry_for= takes a number of seconds above 0"),
        ("outbox_size=-1", "?outbox_size= takes a whole number"),
        ("secret_env=1BAD", "?secret_env= takes an environment variable's name"),
        ("events=failed&events=completed", "gives ?events= more than once"),
    ],
)
def test_a_bad_option_is_a_one_line_error_naming_it(query: str, complaint: str) -> None:
    with pytest.raises(TransportError, match=complaint.replace("?", r"\?")):
        parse(f"webhook+https://ci.example/hook?{query}")


def test_the_outbox_lives_in_the_users_state_dir_unless_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STEPSTREAM_WEBHOOK_OUTBOX", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_outbox() == tmp_path / ".local/state/stepstream/webhooks"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_outbox() == tmp_path / "state/stepstream/webhooks"
    monkeypatch.setenv("STEPSTREAM_WEBHOOK_OUTBOX", str(tmp_path / "hooks"))
    assert parse("webhook+https://ci.example").outbox == tmp_path / "hooks"


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None
    assert retry_after("whenever") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: at once
    in_an_hour = retry_after(formatdate(time.time() + 3600, usegmt=True))
    assert in_an_hour is not None and 3500 < in_an_hour <= 3600
