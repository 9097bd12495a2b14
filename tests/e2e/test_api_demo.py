"""examples/api_progress_query_demo.py and its twin on stepstream.client, examples/client_demo.py,
against a real `stepstream serve`, one pattern at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_support import ROOT, free_port, stepstream_command, wait_for_health

DEMO = ROOT / "examples" / "api_progress_query_demo.py"
CLIENT_DEMO = ROOT / "examples" / "client_demo.py"
DEMOS = pytest.mark.parametrize("demo", [DEMO, CLIENT_DEMO], ids=["raw", "client"])
ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"}  # no token on either side


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A `stepstream serve` subprocess for the whole module; Ctrl-C'd at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*stepstream_command(), "serve", "--port", str(port), "--store", "memory://"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        wait_for_health(process, url)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _demo(*args: str, demo: Path = DEMO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(demo), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )


@DEMOS
@pytest.mark.parametrize("pattern", ["polling", "websocket", "multi", "richbar"])
def test_demo_pattern_runs_to_completion(base_url: str, pattern: str, demo: Path) -> None:
    result = _demo(
        pattern,
        "--base-url",
        base_url,
        "--seconds-per-step",
        "0.05",
        "--poll-interval",
        "0.05",
        demo=demo,
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


@DEMOS
def test_demo_says_when_no_server_is_running(demo: Path) -> None:
    result = _demo("polling", "--base-url", f"http://127.0.0.1:{free_port()}", demo=demo)
    assert result.returncode == 2
    assert "stepstream serve" in result.stderr
    assert "Traceback" not in result.stderr
