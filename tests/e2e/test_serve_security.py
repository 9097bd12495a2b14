"""`stepstream serve`'s protections as a user starts it: which sites it answers, its token.

Each test runs the console script on a real socket, as the campaign against it did.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli_support import ROOT, STARTUP, WAIT, free_port, stepstream_command, wait_for_health

ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"} | {"PYTHONUNBUFFERED": "1"}


@dataclass
class Running:
    """A `stepstream serve` that answers on `base_url`; its stderr so far with `stderr()`."""

    process: subprocess.Popen[bytes]
    base_url: str
    err: Path

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> str:
        """Ctrl-C; asserts a clean exit and returns everything it wrote to stderr."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(WAIT) == 0, self.stderr()
        return self.stderr()


@contextmanager
def running(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Iterator[Running]:
    port = free_port()
    err = tmp_path / f"serve-{port}.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [*stepstream_command(), "serve", "--port", str(port), "--store", "memory://", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=ENV | (env or {}),
        )
    server = Running(process, f"http://127.0.0.1:{port}", err)
    try:
        wait_for_health(process, server.base_url, stderr=server.stderr)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def refused(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A `stepstream serve` expected to refuse to start."""
    return subprocess.run(
        [*stepstream_command(), "serve", "--port", str(free_port()), "--store", "memory://", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP,
        env=ENV | (env or {}),
    )


# -- which sites: --allow-host, --allow-origin ------------------------------------------------


def test_hosts_and_origins_come_from_the_command_line(tmp_path: Path) -> None:
    app = "https://app.example.com"
    with (
        running(tmp_path, "--allow-host", "myhost.test", "--allow-origin", app + "/") as server,
        httpx.Client(base_url=server.base_url, timeout=WAIT) as client,
    ):
        port = server.base_url.rsplit(":", 1)[1]
        for host, status in [
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            (f"myhost.test:{port}", 200),
            (f"rebound.evil.test:{port}", 403),
        ]:
            response = client.get("/api/v1/pipelines", headers={"Host": host})
            assert response.status_code == status, (host, response.text)
        refusal = client.get("/health", headers={"Host": "rebound.evil.test"}).json()
        assert "--allow-host rebound.evil.test" in refusal["detail"]
        preflight = client.options(
            "/api/v1/executions",
            headers={"Origin": app, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == app
        foreign = client.post(
            "/api/v1/executions",
            content=b'{"pipeline": "demo"}',
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert foreign.status_code == 403
        assert client.get("/api/v1/executions").json()["items"] == []
        server.stop()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--allow-origin", "*"),
        ("--allow-origin", "app.example.com"),
        ("--allow-origin", "https://app.example.com/path"),
        ("--allow-host", "http://example.com"),
        ("--allow-host", "a b"),
    ],
)
def test_a_bad_host_or_origin_is_one_line_and_exit_2(option: str, value: str) -> None:
    result = refused(option, value)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert f"Invalid value for '{option}'" in result.stderr


def test_listening_on_all_interfaces_says_which_names_are_answered(tmp_path: Path) -> None:
    with running(tmp_path, "--host", "0.0.0.0") as server:
        assert httpx.get(f"{server.base_url}/health", timeout=WAIT).status_code == 200
        err = server.stop()
    assert "only requests for localhost, 127.0.0.1, [::1] are answered" in err
    assert "--allow-host NAME" in err
