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
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class Site:
    """Another web site, on a loopback port of its own: the pages tests put there.

    A real server, not pages Playwright makes up: Chromium lets a page load from
    loopback only if the page itself came from a private address.
    """

    def __init__(self) -> None:
        pages = self.pages = {}  # path: HTML

        class Pages(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def show(self, tab: Any, html: str) -> None:
        """Open `html` in `tab` as a page of this site, so the browser sends its Origin."""
        path = f"/{uuid.uuid4().hex}"
        self.pages[path] = html
        tab.goto(self.origin + path)


_sites: dict[str, Site] = {}


def site(name: str) -> Site:
    """The site called `name`, started on first use: `embed` is let in by every server
    `serve` starts (--allow-origin), any other is not."""
    if name not in _sites:
        _sites[name] = Site()
    return _sites[name]


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
        env = ENV | {"STEPSTREAM_TOKEN": self.token} if self.token else ENV
        with err.open("wb") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
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
    """`stepstream serve` in `folder` (its own SQLite file) with the test pipelines, letting
    pages of `site("embed")` in (the embeddable script's tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    defaults = (
        *("--pipelines", FORMS, "--pipelines", TWO, "--progress-interval", "0.05"),
        *("--allow-origin", site("embed").origin),
    )
    return Served(folder, free_port(), (*defaults, *args), token=token).start()


def shot(page: Any, name: str) -> None:
    """A full-page screenshot into tests/artifacts/dashboard/ (gitignored), for people."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def execution_hash(execution_id: str) -> re.Pattern[str]:
    return re.compile(rf"#/executions/{re.escape(execution_id)}$")
