"""A real webhook receiver on a loopback port, the signing secret, URLs and the console script.

The receiver is a threaded HTTP server in the test process: it answers as a test
scripts it (500 then 200, 429 with Retry-After, never...) and keeps every
request, so tests verify what arrived with `standardwebhooks`, as a receiver would.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from standardwebhooks import Webhook

WAIT = 20.0  # seconds for anything to happen: generous for a loaded 2-core box
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
PIPELINES = Path(__file__).with_name("hook_pipelines.py")


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request; status None: never (until the test ends)."""

    status: int | None = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass(frozen=True)
class Hit:
    """One request the receiver got, and the status it answered (None: it never did)."""

    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int | None
    client_port: int

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self) -> dict[str, Any]:
        """The payload, once `standardwebhooks` has checked its signature and timestamp."""
        return Webhook(SECRET).verify(self.body, self.headers)


class Receiver:
    """A webhook receiver on a free loopback port: answers as told, keeps every request."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self._script: list[Answer] = []
        self._then = Answer()
        self._changed = threading.Condition()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def answer(self, *first: Answer, then: Answer | None = None) -> None:
        """Answer the next requests with `first`, in order, and every later one with `then`."""
        with self._changed:
            self._script = list(first)
            self._then = then or Answer()

    def wait_for(self, done: Callable[[list[Hit]], bool], timeout: float = WAIT) -> list[Hit]:
        """The hits once `done(hits)` holds; fails after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.hits), timeout):
                raise AssertionError(f"the receiver never got what was expected: {self.hits}")
            return list(self.hits)

    def accepted(self) -> list[Hit]:
        with self._changed:
            return [hit for hit in self.hits if hit.accepted]

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Answer:
        with self._changed:
            return self._script.pop(0) if self._script else self._then

    def _keep(self, hit: Hit) -> None:
        with self._changed:
            self.hits.append(hit)
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers["content-length"]))
        answer = receiver._next()
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver._keep(Hit(headers, body, time.monotonic(), answer.status, self.client_address[1]))
        if answer.status is None:
            receiver._released.wait()
            self.close_connection = True
            return
        if answer.delay:
            time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the hits, not the access log."""


def hook_url(receiver_url: str, outbox: Path, **options: object) -> str:
    """A webhook+ URL for the receiver, with an outbox of the test's own and quick retries."""
    query = {"outbox": str(outbox), "backoff": 0.02, "backoff_max": 0.1, **options}
    return f"webhook+{receiver_url}?{urlencode(query)}"


def stepstream_command() -> list[str]:
    """The console script of the environment running the tests."""
    script = shutil.which("stepstream") or str(Path(sys.executable).with_name("stepstream"))
    assert Path(script).exists(), "the stepstream console script is not installed"
    return [script]


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a `stepstream run` subprocess: the secret, and no stray settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STEPSTREAM_PUBLISH", "STEPSTREAM_WEBHOOK_OUTBOX", "STEPSTREAM_LOAD_PLUGINS")
    }
    return {**env, "STEPSTREAM_WEBHOOK_SECRET": SECRET, **extra}


def listening(port: int, timeout: float = WAIT) -> None:
    """Return once something accepts connections on the loopback `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.05)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
