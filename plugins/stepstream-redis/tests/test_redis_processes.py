"""Worker and server as the user runs them: `stepstream run --publish` and `serve --subscribe`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from redis_support import WAIT, serving, stepstream_command

pytestmark = pytest.mark.anyio  # for the fixtures; the processes are waited for plainly

TARGETS = Path(__file__).with_name("worker_pipelines.py")


def _worker(url: str, pipeline: str, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSTREAM_")}
    return subprocess.Popen(
        [stepstream_command(), "run", f"{TARGETS}:{pipeline}", *args, "--publish", url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _the_run(api: httpx.Client, status: str | None = None) -> dict | None:
    """The one execution the server knows of, once it has (that) status."""
    items = api.get("/api/v1/executions").json()["items"]
    if items and (status is None or items[0]["status"] == status):
        return items[0]
    return None


def _until(check, what: str):
    deadline = time.monotonic() + WAIT
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return found


async def test_a_cron_workers_run_shows_on_a_subscribed_server(url: str, tmp_path: Path) -> None:
    with (
        serving(tmp_path, "--subscribe", url) as served,
        httpx.Client(base_url=served.url, timeout=WAIT) as api,
    ):
        worker = _worker(url, "tally", "-i", "items=25")
        _, stderr = worker.communicate(timeout=WAIT)
        assert worker.returncode == 0, stderr.decode()
        assert b"could not be delivered" not in stderr
        record = _until(lambda: _the_run(api, "completed"), "the run to complete on the server")
    assert record["pipeline"] == "redis-tally"
    assert record["origin"] == {"host": socket.gethostname(), "pid": worker.pid}
    assert record["outputs"] == {"items": 25}


async def test_a_cancel_on_the_server_stops_the_step_in_the_worker(
    url: str, tmp_path: Path
) -> None:
    with (
        serving(tmp_path, "--subscribe", url) as served,
        httpx.Client(base_url=served.url, timeout=WAIT) as api,
    ):
        worker = _worker(url, "spin")
        try:
            running = _until(lambda: _the_run(api, "running"), "the run to show as running")
            began = time.monotonic()
            answer = api.post(f"/api/v1/executions/{running['execution_id']}/cancel")
            assert answer.status_code == 202, answer.text  # passed on, not 409 "runs elsewhere"
            worker.wait(WAIT)
            assert time.monotonic() - began < 10  # the step had 60 s to go
            record = _until(lambda: _the_run(api, "cancelled"), "the cancel to come back")
        finally:
            worker.kill()
            worker.wait()
    assert record["execution_id"] == running["execution_id"]
    assert b"cancelled" in worker.stdout.read() + worker.stderr.read()
