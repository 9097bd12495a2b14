"""A worker's `stepstream run --publish http://...` reaches a real `stepstream serve`, nothing lost.

The worker is the console script in a subprocess; the server is another, on a
SQLite file, killed and restarted where a test needs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_support import PIPELINES, ROOT, WAIT, Served, free_port, start_serve, stepstream_command

CRAWL = str(PIPELINES / "crawl.py")
ENV = {k: v for k, v in os.environ.items() if k not in ("STEPSTREAM_TOKEN", "STEPSTREAM_PUBLISH")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module, token-free, with a short stale-worker timeout."""
    cwd = tmp_path_factory.mktemp("server")
    served = start_serve("--store", f"sqlite:///{cwd}/s.db", cwd=cwd)
    try:
        yield served
    finally:
        served.stop()


def _worker(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*stepstream_command(), "run", f"{CRAWL}:crawl", "--publish", url, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, **(env or {})},
    )


def _execution_of(client: httpx.Client, pid: int) -> dict[str, Any]:
    """The one execution on the server that the worker process `pid` ran."""
    items = client.get("/api/v1/executions", params={"limit": 200}).json()["items"]
    (found,) = [r for r in items if (r.get("origin") or {}).get("pid") == pid]
    return found


def test_a_cron_worker_shows_up_on_the_server_as_if_run_there(server: Served) -> None:
    worker = _worker(server.url, "-i", "items=20", "-i", "pause=0.01")
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "could not be delivered" not in stderr
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        record = _execution_of(client, worker.pid)
        assert record["status"] == "completed"
        assert record["origin"] == {"host": socket.gethostname(), "pid": worker.pid}
        assert record["outputs"] == {"items": 60}
        assert [s["status"] for s in record["steps"]] == ["completed"] * 3
        assert all(s["items_done"] == 20 for s in record["steps"])
        assert record["progress"]["percentage"] == 100.0
        events = client.get(f"/api/v1/executions/{record['execution_id']}/events").json()["events"]
        assert events[0]["type"] == "status"
        assert events[-1]["type"] == "completed"


def test_a_server_that_is_not_there_never_fails_or_slows_the_run(tmp_path: Path) -> None:
    began = time.monotonic()
    worker = _worker(f"http://127.0.0.1:{free_port()}", "-i", "items=2", "--publish-timeout", "1")
    stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert time.monotonic() - began < 30
    assert '"items": 6' in stdout
    assert "events could not be delivered to http://127.0.0.1:" in stderr
    assert "Traceback" not in stderr


def test_a_server_killed_mid_run_catches_up_after_its_restart(tmp_path: Path) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path}/s.db"
    first = start_serve("--store", store, cwd=tmp_path, port=port)
    worker = _worker(first.url, "-i", "items=100", "-i", "pause=0.02", "--publish-timeout", "30")
    try:
        with httpx.Client(base_url=first.url, timeout=WAIT) as client:
            deadline = time.monotonic() + WAIT
            while True:
                items = client.get("/api/v1/executions").json()["items"]
                if items and items[0]["status"] == "running":
                    break
                assert time.monotonic() < deadline, "the worker's execution never showed up"
                time.sleep(0.05)
        first.kill()
        time.sleep(1)  # the worker runs on while nobody listens
        second = start_serve("--store", store, cwd=tmp_path, port=port)
        try:
            _, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
            assert "could not be delivered" not in stderr
            with httpx.Client(base_url=second.url, timeout=WAIT) as client:
                record = _execution_of(client, worker.pid)
                assert record["status"] == "completed", record
                assert record["outputs"] == {"items": 300}
                assert [s["status"] for s in record["steps"]] == ["completed"] * 3
        finally:
            second.stop()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_a_bad_publish_url_is_one_line_naming_the_installed_schemes(cli: Any) -> None:
    # Built-ins only: installed transport plugins (stepstream-mqtt...) would join the list.
    only_built_ins = {**ENV, "STEPSTREAM_LOAD_PLUGINS": ""}
    result = cli("run", f"{CRAWL}:crawl", "--publish", "carrier-pigeon://roof", env=only_built_ins)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: no transport plugin handles carrier-pigeon:// (installed: http://, https://)"
    )
