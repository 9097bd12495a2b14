"""`stepstream serve` as a user runs it: the console script in a subprocess, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from cli_support import ROOT, STARTUP, free_port, stepstream_command, wait_for_health


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*stepstream_command(), "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


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


def test_serve_with_two_pipelines_of_one_name_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for name in ("first.py", "second.py"):
        (tmp_path / name).write_text(
            "from stepstream import Pipeline\n"
            "twin = Pipeline('twin')\n"
            "@twin.step\n"
            "def only() -> int:\n"
            "    return 1\n"
        )
    process = serve(
        "--port",
        str(free_port()),
        "--store",
        "memory://",
        "--pipelines",
        str(tmp_path / "first.py"),
        "--pipelines",
        str(tmp_path / "second.py"),
    )
    out, err = process.communicate(timeout=STARTUP)
    assert process.returncode == 2, (out, err)
    assert err.splitlines() == [
        "Error: two pipelines are named 'twin'; pipeline names must be unique"
    ]


def test_a_second_ctrl_c_quits_at_once_with_exit_130() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = serve(
        "--port", str(port), "--pipelines", "tests/server/pipelines.py", "--store", "memory://"
    )
    try:
        wait_for_health(process, base_url)
        with httpx.Client(base_url=base_url, timeout=20) as client:
            # The step checks for cancellation between items, and its first item takes a minute.
            body = {"pipeline": "quick", "inputs": {"items": 2, "seconds_per_item": 60}}
            execution_id = client.post("/api/v1/executions", json=body).json()["execution_id"]
            deadline = time.monotonic() + 20
            while client.get(f"/api/v1/executions/{execution_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        assert "Ctrl-C again to quit now" in process.stderr.readline()
        assert process.poll() is None, "the graceful shutdown waits for the step"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
