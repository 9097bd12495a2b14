"""Helpers for tests that use stepstream from outside, as a user would.

They run the `stepstream` console script, start `stepstream serve` on a free
port and wait until it answers, and hold a WebSocket stream against the event log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "tests" / "e2e" / "pipelines"
STARTUP = 30.0  # seconds for `stepstream serve` to answer /health on a loaded 2-core box
WAIT = 20.0  # seconds for anything else: generous, so a loaded 2-core box is not flaky


def stepstream_command() -> list[str]:
    """The console script of the environment running the tests."""
    script = shutil.which("stepstream") or str(Path(sys.executable).with_name("stepstream"))
    assert Path(script).exists(), "the stepstream console script is not installed"
    return [script]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(
    process: subprocess.Popen[Any],
    base_url: str,
    *,
    stderr: Callable[[], str] | None = None,
    timeout: float = STARTUP,
) -> None:
    """Return once the `stepstream serve` in `process` answers GET /health.

    Fails if the process exits first (with its stderr: the pipe's, or `stderr()`'s)
    or does not answer in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = stderr() if stderr else process.communicate()[1]
            raise AssertionError(f"serve exited with code {process.returncode}: {output}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"serve did not answer {base_url}/health in time"
        time.sleep(0.05)


def assert_matches_log(
    messages: list[dict[str, Any]], log: list[dict[str, Any]], after: int = 0
) -> None:
    """A stream against GET /events: same events, in order, none twice, no lifecycle one lost.

    The log keeps lifecycle events and, between them, the latest progress event; a
    live stream may carry more progress events, or coalesce them (a coalesced one
    carries the step changes of those it stands for in `steps`, which the log's
    copy, whose record keeps every step, does without).
    """
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs)), f"out of order or repeated: {seqs}"
    assert all(s > after for s in seqs), f"an event at or before after={after}: {seqs}"
    logged = {e["seq"]: e for e in log}
    for message in messages:
        if message["seq"] in logged:
            bare = {k: v for k, v in message.items() if k != "steps"}
            assert bare == logged[message["seq"]], "a streamed event differs from the log"
        else:
            assert message["type"] == "progress", message
    lifecycle = {e["seq"] for e in log if e["type"] != "progress" and e["seq"] > after}
    assert lifecycle <= set(seqs), f"lifecycle events missing: {sorted(lifecycle - set(seqs))}"


class Served:
    """A `stepstream serve` subprocess started by `start_serve`, its URL and its output files."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs."""
        self.process.kill()
        self.process.wait(WAIT)

    def stop(self) -> None:
        """Ctrl-C, then SIGKILL if it does not end in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.kill()


def start_serve(
    *args: str, cwd: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Served:
    """`stepstream serve --port PORT ARGS...` in `cwd`, returned once it answers /health.

    STEPSTREAM_TOKEN is not passed on unless `env` sets it; the output goes to a file in `cwd`.
    """
    port = port or free_port()
    log = cwd / f"serve-{port}-{time.monotonic_ns()}.log"
    base = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*stepstream_command(), "serve", "--port", str(port), *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    served = Served(process, port, log)
    try:
        wait_for_health(process, served.url, stderr=served.output)
    except BaseException:
        served.stop()
        raise
    return served
