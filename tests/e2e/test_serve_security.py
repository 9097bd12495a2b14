"""`stepstream serve`'s protections as a user starts it: which sites it answers, its token.

Each test runs the console script on a real socket, as the campaign against it did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

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


# -- the token: never empty, not on the command line, never in a log ------------------------


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--token", ""], {}, "--token"),
        ([], {"STEPSTREAM_TOKEN": ""}, "STEPSTREAM_TOKEN"),
        ([], {"STEPSTREAM_TOKEN": "   "}, "STEPSTREAM_TOKEN"),
        (["--token-file", "{empty}"], {}, "--token-file"),
        (["--token-file", "{newline}"], {}, "--token-file"),
        (["--token", " padded "], {}, "--token"),
        (["--token", "two\nlines"], {}, "--token"),
    ],
    ids=["flag", "env", "env-blank", "file", "file-newline", "padded", "control"],
)
def test_an_unusable_token_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], source: str
) -> None:
    """`--token ""` or an empty STEPSTREAM_TOKEN used to turn authentication off silently."""
    (tmp_path / "empty").write_text("")
    (tmp_path / "newline").write_text("\n")
    args = [a.format(empty=tmp_path / "empty", newline=tmp_path / "newline") for a in args]
    result = refused(*args, env=env)
    assert result.returncode == 2, result
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("Error: the token from "), result.stderr
    assert source in errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", "a", "--token-file", "x"], "give --token or --token-file, not both"),
        (["--token-file", "/nonexistent/token"], "cannot read --token-file /nonexistent/token"),
    ],
)
def test_token_options_that_cannot_work_are_one_line(args: list[str], message: str) -> None:
    result = refused(*args)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.stderr


def test_a_token_file_is_the_quiet_way(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")  # as `echo ... > token` writes it
    with running(tmp_path, "--token-file", str(token_file)) as server:
        with httpx.Client(base_url=server.base_url, timeout=WAIT) as client:
            assert client.get("/api/v1/pipelines").status_code == 401
            good = client.get("/api/v1/pipelines", headers={"Authorization": "Bearer from-a-file"})
            assert good.status_code == 200
        err = server.stop()
    assert "warning" not in err


def test_a_token_on_the_command_line_works_with_a_warning(tmp_path: Path) -> None:
    with running(tmp_path, "--token", "visible-in-ps") as server:
        with httpx.Client(base_url=server.base_url, timeout=WAIT) as client:
            response = client.get(
                "/api/v1/pipelines", headers={"Authorization": "Bearer visible-in-ps"}
            )
            assert response.status_code == 200
        err = server.stop()
    (warning,) = [line for line in err.splitlines() if line.startswith("warning:")]
    assert "--token" in warning and "STEPSTREAM_TOKEN" in warning and "--token-file" in warning


def test_verbose_logs_never_show_the_token(tmp_path: Path) -> None:
    """With -v uvicorn logs each WebSocket's URL, ?token= included."""
    secret = "super-secret-value"
    port = free_port()
    err = tmp_path / "verbose.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [*stepstream_command(), "-v", "serve", "--port", str(port), "--store", "memory://"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=ENV | {"STEPSTREAM_TOKEN": secret},
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(process, base_url, stderr=err.read_text)
        auth = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=base_url, headers=auth, timeout=WAIT) as client:
            body = {"pipeline": "demo", "inputs": {"steps": 1, "seconds_per_step": 0}}
            execution_id = client.post("/api/v1/executions", json=body).json()["execution_id"]
        url = f"ws://127.0.0.1:{port}/api/v1/executions/{execution_id}/progress/ws"
        for token in (secret, f"{secret}-wrong"):
            with (
                connect(f"{url}?after=0&token={token}", open_timeout=WAIT) as ws,
                contextlib.suppress(ConnectionClosed),
            ):
                while True:
                    ws.recv(timeout=WAIT)
        process.send_signal(signal.SIGINT)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logged = err.read_text()
    assert "WebSocket /api/v1/executions" in logged, "the handshakes were not logged at all"
    assert "token=***" in logged
    assert secret not in logged, logged
