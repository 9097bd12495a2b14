"""examples/api_progress_query_demo.py against a real `stepstream serve`, one pattern at a time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "api_progress_query_demo.py"
ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"}  # no token on either side


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A `stepstream serve` subprocess for the whole module; Ctrl-C'd at the end."""
    script = shutil.which("stepstream")
    assert script, (
        "the stepstream console script is not on PATH; run the tests with `uv run pytest`"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [script, "serve", "--port", str(port), "--store", "memory://"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited: {process.communicate()[1]}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health in time"
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )


@pytest.mark.parametrize("pattern", ["polling", "websocket", "multi", "richbar"])
def test_demo_pattern_runs_to_completion(base_url: str, pattern: str) -> None:
    result = _demo(
        pattern, "--base-url", base_url, "--seconds-per-step", "0.05", "--poll-interval", "0.05"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "started exec_" in result.stdout
    if pattern == "multi":
        assert result.stdout.count("] completed") == 3, result.stdout
    else:
        assert "Done: completed" in result.stdout, result.stdout
    if pattern == "websocket":
        assert "Progress: 100.0%" in result.stdout, result.stdout


def test_demo_says_when_no_server_is_running() -> None:
    result = _demo("polling", "--base-url", f"http://127.0.0.1:{_free_port()}")
    assert result.returncode == 2
    assert "stepstream serve" in result.stderr
    assert "Traceback" not in result.stderr
