"""Helpers for the dashboard's browser tests: Debian's Chromium, a `stepstream serve` process.

The browser is /usr/bin/chromium driven by Playwright (never a browser Playwright
downloads); the server is the real console script on a free port with its SQLite
store in a temporary folder, so it can be killed and started again on both.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli_support import PIPELINES, ROOT, WAIT, free_port, stepstream_command, wait_for_health

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that phones home: there is no network here but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
EXPECT_TIMEOUT = 30_000  # ms: generous, for a loaded 2-core box
ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"} | {"PYTHONUNBUFFERED": "1"}
FORMS = str(PIPELINES / "forms.py")
TWO = str(PIPELINES / "two.py")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Served:
    """One `stepstream serve` process on `port` with its store in `folder`."""

    folder: Path
    port: int
    args: tuple[str, ...]
    token: str | None = None
    process: subprocess.Popen[bytes] | None = None
    client: httpx.Client = field(init=False)
    starts: int = 0

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=WAIT)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        """Start (or start again) on the same port and store; returns once /health answers."""
        self.starts += 1
        err = self.folder / f"serve-{self.starts}.err"
        command = [*stepstream_command(), "serve", "--port", str(self.port), *self.args]
        if self.token:
            command += ["--token", self.token]
        with err.open("wb") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=ENV,
            )
        wait_for_health(self.process, self.base_url, stderr=err.read_text)
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-run, its connections drop without a close frame."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()

    def submit(self, pipeline: str = "demo", **inputs: Any) -> str:
        response = self.client.post(
            "/api/v1/executions", json={"pipeline": pipeline, "inputs": inputs}
        )
        assert response.status_code == 202, response.text
        return response.json()["execution_id"]

    def record(self, execution_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, execution_id: str, *statuses: str) -> dict[str, Any]:
        """Poll the API (the browser is what the test watches) until a status is reached."""
        wanted = statuses or TERMINAL
        deadline = time.monotonic() + WAIT
        while (record := self.record(execution_id))["status"] not in wanted:
            assert time.monotonic() < deadline, f"{execution_id} still {record['status']}"
            time.sleep(0.05)
        return record


def serve(folder: Path, *args: str, token: str | None = None) -> Served:
    """`stepstream serve` in `folder` (its own SQLite file) with the test pipelines."""
    folder.mkdir(parents=True, exist_ok=True)
    defaults = ("--pipelines", FORMS, "--pipelines", TWO, "--progress-interval", "0.05")
    return Served(folder, free_port(), (*defaults, *args), token=token).start()


def shot(page: Any, name: str) -> None:
    """A full-page screenshot into tests/artifacts/dashboard/ (gitignored), for people."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def execution_hash(execution_id: str) -> re.Pattern[str]:
    return re.compile(rf"#/executions/{re.escape(execution_id)}$")
