"""`stepstream serve` as a user runs it: the console script in a subprocess, stopped with Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
STARTUP = 30.0


def stepstream() -> str:
    path = shutil.which("stepstream")
    assert path, "the stepstream console script is not on PATH; run the tests with `uv run pytest`"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [stepstream(), "serve", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def wait_for_health(process: subprocess.Popen[str], base_url: str) -> None:
    deadline = time.monotonic() + STARTUP
    while True:
        assert process.poll() is None, f"serve exited early: {process.communicate()}"
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /health in time"
        time.sleep(0.1)


def test_serve_prints_url_and_pipelines_and_stops_cleanly_on_ctrl_c() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = serve(
        "--port",
        str(port),
        "--pipelines",
        "tests/server/pipelines.py",
        "--max-concurrent",
        "1",
        "--store",
        "memory://",
        "--progress-interval",
        "0.01",
        env={"STEPSTREAM_TOKEN": "cli-token"},
    )
    try:
        wait_for_health(process, base_url)
        auth = {"Authorization": "Bearer cli-token"}
        with httpx.Client(base_url=base_url, headers=auth, timeout=20) as client:
            assert client.get("/api/v1/pipelines", headers={"Authorization": ""}).status_code == 401
            names = {p["name"] for p in client.get("/api/v1/pipelines").json()["items"]}
            assert {"demo", "demo_async", "quick", "held", "failing", "chatty"} <= names
            ids = []
            for _ in range(2):
                response = client.post(
                    "/api/v1/executions",
                    json={"pipeline": "held", "inputs": {"gate_name": "never"}},
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["execution_id"])
            deadline = time.monotonic() + 20
            while client.get(f"/api/v1/executions/{ids[0]}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.get(f"/api/v1/executions/{ids[1]}").json()["status"] == "pending"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    lines = out.splitlines()
    assert lines[0].strip() == f"stepstream serving on {base_url}"
    listed = "\n".join(lines[1:])
    for name in ("demo", "demo_async", "quick", "held", "failing", "chatty"):
        assert name in listed, out


def test_serve_with_a_bad_target_is_one_line_and_exit_2() -> None:
    process = serve("--port", str(free_port()), "--pipelines", "tests/server/no_such_file.py")
    out, err = process.communicate(timeout=STARTUP)
    assert process.returncode == 2, (out, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "no_such_file.py" in err


def test_serve_on_an_occupied_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve("--port", str(port), "--store", "memory://")
        out, err = process.communicate(timeout=STARTUP)
    assert process.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert str(port) in err
