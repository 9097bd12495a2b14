"""Schemathesis against the server's own OpenAPI document: no request it makes gets a 5xx,
and every answer fits the document (status code, content type, body).

The document names the registered pipelines and their inputs (`openapi.py`), so the
fuzzer starts real executions as well as malformed ones. The server has one slot,
taken by an execution that lets go of it only when the test ends (it ignores
cancels, which the fuzzer sends too), so everything the fuzzer starts stays
pending: nothing it asks for runs. Schemathesis's coverage phase tries each
parameter's boundaries (`after` = 2**63, `limit` = 201, ...) and its fuzzing phase
a bounded number of generated requests, deterministically, so a run is repeatable.
Its command line is used: its pytest plugin does not run under pytest 9.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from stepstream import Pipeline, Progress
from stepstream.stores.sqlite import SqliteStore
from stepstream_server.app import create_app

from cli_support import STARTUP, WAIT
from server_support import make_engine, test_pipelines

EXAMPLES = 25  # per operation and phase: the whole run takes a few seconds
CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "status_code_conformance",
        "content_type_conformance",
    ]
)
ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"}

slot_holder = Pipeline("slot_holder", description="Holds the only slot until the test ends")


@slot_holder.step
def hold(gate_name: str, progress: Progress) -> None:
    """Keep running, cancelled or not, until cancelled *and* the gate is open."""
    gate = test_pipelines.gate(gate_name)
    while not (progress.cancelled and gate.is_set()):
        time.sleep(0.01)
    progress.check()


def schemathesis_command() -> list[str]:
    """The schemathesis console script of the environment running the tests."""
    script = Path(sys.executable).with_name("schemathesis")
    assert script.exists(), "schemathesis is not installed (the dev dependency group has it)"
    return [str(script)]


def test_the_api_answers_every_generated_request_as_its_document_says(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "fuzz.db")  # the real store: SQLite's limits show
    engine = make_engine(store=store, max_concurrent=1)
    engine.add_pipeline(slot_holder)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        create_app(engine), log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    gate = f"fuzz-{os.getpid()}"
    try:
        deadline = time.monotonic() + STARTUP
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=base_url, timeout=WAIT) as client:
            body = {"pipeline": "slot_holder", "inputs": {"gate_name": gate}}
            holder = client.post("/api/v1/executions", json=body).json()["execution_id"]
            document = client.get("/schema/openapi.json").json()
            submit = document["components"]["schemas"]["SubmitRequest"]
            assert set(submit["properties"]["pipeline"]["enum"]) == set(engine.pipelines)

            fuzz = subprocess.run(
                [
                    *schemathesis_command(),
                    "run",
                    f"{base_url}/schema/openapi.json",
                    *("--phases", "examples,coverage,fuzzing"),
                    *("--checks", CHECKS),
                    *("--max-examples", str(EXAMPLES)),
                    "--generation-deterministic",
                    *("--workers", "1"),
                    *("--request-timeout", str(WAIT)),
                    "--no-color",
                ],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
                env=ENV,
            )
            report = fuzz.stdout + fuzz.stderr
            assert fuzz.returncode == 0, report
            assert "No issues found" in report, report

            # It started real executions (the document has the names and inputs), and
            # none of them ran: the holder still has the slot.
            listed = client.get("/api/v1/executions", params={"limit": 200}).json()["items"]
            started = [r for r in listed if r["execution_id"] != holder]
            assert {r["pipeline"] for r in started} >= {"demo", "quick"}, started
            assert all(r["started_at"] is None for r in started)
            assert client.get(f"/api/v1/executions/{holder}").json()["status"] == "running"
    finally:
        server.should_exit = True  # the engine stops: the pending stay pending, the holder
        test_pipelines.open_gate(gate)  # is cancelled and now lets go
        thread.join(15)
        store.close()
    assert not thread.is_alive(), "uvicorn did not shut down within 15 s"
