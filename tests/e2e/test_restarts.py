"""`stepstream serve` on a SQLite file, killed or stopped and started again: nothing kept is lost.

Every server here is the real console script in a subprocess with a real SQLite
file in the test's folder, watched through the HTTP API and the WebSocket.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from stepstream import Engine, Pipeline
from stepstream.stores.sqlite import SqliteStore

from cli_support import (
    PIPELINES,
    WAIT,
    assert_matches_log,
    free_port,
    stepstream_command,
    wait_for_health,
)

CRAWL = str(PIPELINES / "crawl.py")
ENV = {k: v for k, v in os.environ.items() if k != "STEPSTREAM_TOKEN"} | {"PYTHONUNBUFFERED": "1"}
STOPPED = re.compile(
    r"the server stopped while this execution ran \(last event at (\S+)\); "
    r"it was marked failed at (\S+) on restart"
)
LONG = {"items": 2000, "pause": 0.01}  # 20 s a step: still running whenever the test acts


def when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


@dataclass
class Server:
    """One `stepstream serve` process, where its output goes, and an HTTP client for it."""

    process: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=WAIT)

    def submit(self, **inputs: Any) -> str:
        body = {"pipeline": "crawl", "inputs": inputs}
        response = self.client.post("/api/v1/executions", json=body)
        assert response.status_code == 202, response.text
        return response.json()["execution_id"]

    def record(self, execution_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        response = self.client.get(
            f"/api/v1/executions/{execution_id}/events", params={"after": after}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["last_seq"] == (body["events"][-1]["seq"] if body["events"] else after)
        return body["events"]

    def listed(self) -> list[str]:
        """Every execution id, newest first (one page holds them all here)."""
        response = self.client.get("/api/v1/executions", params={"limit": 200})
        assert response.status_code == 200, response.text
        assert response.json()["next_cursor"] is None
        return [r["execution_id"] for r in response.json()["items"]]

    def wait_for(self, execution_id: str, *statuses: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while (record := self.record(execution_id))["status"] not in statuses:
            assert time.monotonic() < deadline, f"{execution_id} still {record['status']}"
            time.sleep(0.02)
        return record

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def ws(self, execution_id: str, after: int | None = None) -> ClientConnection:
        query = "" if after is None else f"?after={after}"
        url = f"ws://127.0.0.1:{self.port}/api/v1/executions/{execution_id}/progress/ws{query}"
        return connect(url, open_timeout=WAIT)

    def kill(self) -> datetime:
        """SIGKILL: no shutdown code runs; returns when the process is gone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)
        return datetime.now(UTC)

    def stop(self) -> int:
        """Ctrl-C: the graceful shutdown; returns the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(WAIT)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: `serve(*args, port=None)` starts `stepstream serve` in tmp_path and waits for it.

    Every server runs the crawl pipeline one execution at a time with 20 ms
    progress events; whatever is still running at the end of the test is killed.
    """
    started: list[Server] = []

    def start(*args: str, port: int | None = None) -> Server:
        port = port or free_port()
        name = f"serve-{len(started)}"
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    *stepstream_command(),
                    "serve",
                    "--port",
                    str(port),
                    "--pipelines",
                    CRAWL,
                    "--max-concurrent",
                    "1",
                    "--progress-interval",
                    "0.02",
                    *args,
                ],
                cwd=tmp_path,
                stdout=stdout,
                stderr=stderr,
                env=ENV,
            )
        server = Server(process, port, out, err)
        started.append(server)
        wait_for_health(process, f"http://127.0.0.1:{port}", stderr=server.stderr)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.client.close()


def run_serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `stepstream serve` expected to refuse to start."""
    return subprocess.run(
        [*stepstream_command(), "serve", "--port", str(free_port()), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
    )


def read_until(ws: ClientConnection, enough: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    """Messages until `enough(messages)` holds."""
    messages: list[dict[str, Any]] = []
    while not enough(messages):
        messages.append(json.loads(ws.recv(timeout=WAIT)))
    return messages


def read_to_close(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes, and the close code."""
    messages: list[dict[str, Any]] = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=WAIT)))
    except ConnectionClosed:
        pass
    return messages, ws.close_code


def is_plain_progress(event: dict[str, Any]) -> bool:
    return event["type"] == "progress" and "step" not in event


# -- a SIGKILL and a restart on the same file ------------------------------------------------


def test_after_a_sigkill_the_restarted_server_accounts_for_every_execution(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    db = tmp_path / "kept" / "executions.db"
    db.parent.mkdir()
    store = ("--store", f"sqlite:///{db}")
    first = serve(*store)
    assert f"store: sqlite:///{db}" in first.stdout().splitlines()

    done = first.submit(items=3)
    done_record = first.wait_for(done, "completed")
    done_events = first.events(done)
    running = first.submit(**LONG)
    waiting = [first.submit(items=25), first.submit(items=25)]
    first.wait_for(running, "running")
    assert [first.record(i)["status"] for i in waiting] == ["pending", "pending"]

    with first.ws(waiting[0]) as ws:
        (status,) = read_until(ws, lambda m: len(m) == 1)
    assert status["status"] == "pending" and status["seq"] == 1
    with first.ws(running) as ws:
        seen = read_until(ws, lambda m: sum(e["type"] == "progress" for e in m) >= 10)
        logged_before = first.events(running)
        pause_until = time.monotonic() + 0.5
        while time.monotonic() < pause_until:
            seen.append(json.loads(ws.recv(timeout=WAIT)))
        # A 202 means the execution is kept, even when the server dies right after it.
        waiting.append(first.submit(items=1))
        killed_at = first.kill()
    last_seen = seen[-1]["seq"]
    assert seen[-1]["progress"]["items_done"] > 0
    listed_before = [*reversed(waiting), running, done]

    restarting_at = datetime.now(UTC)
    second = serve(*store, port=first.port)
    restarted_at = datetime.now(UTC)

    # Every execution is still listed; the finished one exactly as it was.
    assert second.listed() == listed_before
    assert second.record(done) == done_record
    assert second.events(done) == done_events

    # The running one failed on restart, saying the server stopped and when.
    failed = second.record(running)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "ServerStopped" and failed["error"]["step"] == "fetch"
    match = STOPPED.fullmatch(failed["error"]["message"])
    assert match, failed["error"]["message"]
    last_event, marked = (when(t) for t in match.groups())
    assert when(failed["started_at"]) <= last_event <= killed_at
    assert restarting_at - timedelta(milliseconds=1) <= marked <= restarted_at
    assert abs(when(failed["finished_at"]) - marked) < timedelta(milliseconds=1)
    assert failed["steps"][0]["status"] == "failed"

    # Its events and last progress are kept; no seq a client saw is used again.
    log = second.events(running)
    seqs = [e["seq"] for e in log]
    assert seqs == sorted(set(seqs))
    assert [e["type"] for e in log[:2]] == ["status", "started"] and log[-1]["type"] == "failed"
    kept_before = [e for e in logged_before if not is_plain_progress(e)]
    assert [e for e in log if not is_plain_progress(e)][: len(kept_before)] == kept_before
    assert log[-1]["seq"] > last_seen
    assert failed["last_seq"] == log[-1]["seq"]
    progress = failed["progress"]
    assert progress == log[-1]["progress"] == log[-2]["progress"]
    assert progress["current_step_name"] == "fetch" and 0 < progress["items_done"] < LONG["items"]
    assert 0 < progress["percentage"] <= seen[-1]["progress"]["percentage"]

    # Replay resumes from the last seq a client saw: nothing twice, nothing lifecycle lost.
    assert second.events(running, after=last_seen) == [e for e in log if e["seq"] > last_seen]
    with second.ws(running, after=last_seen) as ws:
        replayed, code = read_to_close(ws)
    assert code == 1000
    # The status is the execution as it stood at the seq resumed from: still running.
    assert replayed[0]["type"] == "status" and replayed[0]["status"] == "running"
    assert replayed[0]["seq"] == last_seen
    assert replayed[1:] == [e for e in log if e["seq"] > last_seen]

    # The pending ones start again, first in first out, and complete; the stream resumes.
    with second.ws(waiting[0], after=status["seq"]) as ws:
        streamed, code = read_to_close(ws)
    assert code == 1000 and streamed[0]["type"] == "status"
    records = [second.wait_for(i, "completed") for i in waiting]
    assert [r["outputs"] for r in records] == [{"items": 75}, {"items": 75}, {"items": 3}]
    for earlier, later in itertools.pairwise(records):
        assert when(earlier["finished_at"]) <= when(later["started_at"])
    resumed_log = second.events(waiting[0])
    assert_matches_log(streamed[1:], resumed_log, after=status["seq"])
    assert streamed[-1]["type"] == "completed"
    for execution_id in waiting:
        log = second.events(execution_id)
        assert [e["type"] for e in log[:3]] == ["status", "status", "started"]
        assert [e["status"] for e in log[:2]] == ["pending", "pending"]
        assert [e["seq"] for e in log] == sorted({e["seq"] for e in log})
        assert log[-1]["type"] == "completed"
        assert second.events(execution_id, after=1) == log[1:]

    # New executions get ids that sort after every old one.
    fresh = second.submit(items=1)
    assert fresh > max(listed_before)
    assert second.listed() == [fresh, *listed_before]
    assert second.wait_for(fresh, "completed")["last_seq"] == second.events(fresh)[-1]["seq"]
    assert second.stop() == 0


def test_every_submission_of_a_burst_answered_202_survives_a_sigkill(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    """Submissions waiting at the same time share a commit; each 202 still means kept."""
    store = ("--store", f"sqlite:///{tmp_path / 'burst.db'}")
    first = serve(*store)
    running = first.submit(**LONG)  # holds the only slot: the burst stays pending
    first.wait_for(running, "running")
    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(lambda i: first.submit(items=1, pause=0), range(48)))
    first.kill()  # right after the last 202: nothing but the commits behind them is on disk

    second = serve(*store, port=first.port)
    assert set(second.listed()) == {running, *accepted}
    for execution_id in accepted:
        assert second.wait_for(execution_id, "completed")["outputs"] == {"items": 3}


# -- a clean shutdown ---------------------------------------------------------------------------


def test_ctrl_c_leaves_the_running_execution_cancelled_on_disk_in_the_default_store(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    first = serve()
    db = tmp_path / "stepstream.db"
    assert f"store: sqlite:///{db}" in first.stdout().splitlines()
    assert db.is_file()
    running = first.submit(**LONG)
    waiting = first.submit(items=2)
    first.wait_for(running, "running")
    assert first.stop() == 0
    assert "stopped: 1 of 1 running executions cancelled" in first.stderr()

    second = serve()
    assert second.listed() == [waiting, running]
    cancelled = second.record(running)
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    assert cancelled["progress"]["items_done"] > 0
    log = second.events(running)
    assert [e["type"] for e in log[:2]] == ["status", "started"] and log[-1]["type"] == "cancelled"
    assert second.wait_for(waiting, "completed")["outputs"] == {"items": 6}


# -- retention --------------------------------------------------------------------------------


def test_keep_prunes_the_oldest_finished_executions_and_never_running_or_pending_ones(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    store = ("--store", "sqlite:///kept.db")
    first = serve(*store, "--keep", "2", "--prune-interval", "0.2")
    assert (
        f"store: sqlite:///{tmp_path / 'kept.db'} (keeping the newest 2 finished executions)"
        in first.stdout().splitlines()
    )
    done = []
    for _ in range(4):
        done.append(first.submit(items=1, pause=0))
        first.wait_for(done[-1], "completed")
    running = first.submit(**LONG)
    waiting = first.submit(items=100, pause=0.02)
    first.wait_for(running, "running")
    first.wait_until(lambda: len(first.listed()) == 4, "the two oldest to be pruned")
    assert first.listed() == [waiting, running, done[3], done[2]]
    for old in done[:2]:
        assert first.client.get(f"/api/v1/executions/{old}").status_code == 404
        assert first.client.get(f"/api/v1/executions/{old}/events").status_code == 404
    assert first.record(running)["status"] == "running"
    assert first.record(waiting)["status"] == "pending"
    assert first.stop() == 0

    # Pruning also runs once at start: with --keep 1 only the newest finished one stays.
    second = serve(*store, "--keep", "1")
    second.wait_until(lambda: len(second.listed()) == 2, "the pass at start to prune")
    assert second.listed() == [waiting, running]
    assert second.record(running)["status"] == "cancelled"
    assert second.record(waiting)["status"] in ("pending", "running")


# -- refusing to start --------------------------------------------------------------------------


def test_a_second_server_on_the_same_file_refuses_to_start(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    first = serve("--store", "sqlite:///shared.db")
    result = run_serve(tmp_path, "--store", "sqlite:///shared.db")
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"Error: store {tmp_path / 'shared.db'} is in use by another stepstream process "
        f"(pid {first.process.pid}); stop it or point this one at another file"
    ]
    assert result.stdout == ""
    execution_id = first.submit(items=1)
    assert first.wait_for(execution_id, "completed")["outputs"] == {"items": 3}


def _damaged_store(path: Path) -> None:
    """A real store whose pages past the first (the schema) are overwritten with junk."""
    pipeline = Pipeline("p")
    pipeline.step(name="only")(lambda n: n)
    store = SqliteStore(path)
    engine = Engine(store=store, load_entrypoints=False)
    for n in range(200):
        engine.create(pipeline, {"n": n})
    store.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xab" * (len(data) - page)
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("prepare", "relative", "problem"),
    [
        (lambda p: None, "missing/x.db", "the directory {parent} does not exist"),
        (lambda p: p.parent.write_text(""), "a-file/x.db", "{parent} is not a directory"),
        (lambda p: p.write_text("my notes\n"), "notes.db", "it is not a SQLite database"),
        (_damaged_store, "damaged.db", "database disk image is malformed"),
    ],
    ids=["missing-directory", "file-as-directory", "not-sqlite", "damaged"],
)
def test_an_unusable_store_is_a_one_line_error_naming_the_path(
    tmp_path: Path, prepare: Callable[[Path], None], relative: str, problem: str
) -> None:
    path = tmp_path / relative
    prepare(path)
    before = path.read_bytes() if path.is_file() else None
    result = run_serve(tmp_path, "--store", f"sqlite:///{relative}")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: cannot ") and f"store {path}: " in line, line
    assert problem.format(parent=path.parent) in line
    assert result.stdout == "", "it never started serving, not even from memory"
    assert (path.read_bytes() if path.is_file() else None) == before, "the file is left alone"


@pytest.mark.parametrize(
    ("keep", "reason"),
    [
        ("7w", "'7w' is neither a count (e.g. 1000) nor an age (e.g. 30s, 15m, 12h, 7d)"),
        ("10,20", "give at most one count and one age, e.g. 1000,30d; got '10,20'"),
    ],
)
def test_a_bad_keep_value_is_a_usage_error(tmp_path: Path, keep: str, reason: str) -> None:
    result = run_serve(tmp_path, "--keep", keep)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert f"Error: Invalid value for '--keep': {reason}" in result.stderr.splitlines()
    assert not (tmp_path / "stepstream.db").exists()


def test_killed_the_moment_a_client_hears_completed_the_execution_stays_completed(
    serve: Callable[..., Server],
) -> None:
    """Write, then tell: a client told `completed` is never contradicted by a restart."""
    server = serve()
    for round_ in range(3):
        execution_id = server.submit(items=1, pause=0.001)
        with server.ws(execution_id) as ws:
            while (message := json.loads(ws.recv(timeout=WAIT)))["type"] != "completed":
                assert message["type"] not in ("failed", "cancelled"), message
            server.kill()  # within microseconds of hearing it, before anything else runs
        server = serve(port=server.port)
        record = server.record(execution_id)
        assert record["status"] == "completed", (round_, record)
        assert record["outputs"] == {"items": 3}
        assert [e["type"] for e in server.events(execution_id)][-1] == "completed"
    assert server.stop() == 0


# -- a restart on a full disk -----------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (tests run as root, here and in CI); unmounted after."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)
        if os.path.ismount(path):
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Write a file until the file system is full."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_a_restart_on_a_full_disk_is_one_line_and_exit_2(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    """It printed a 58-line traceback from the app's startup and exited 1."""
    with small_disk(tmp_path / "disk") as disk:
        store = ("--store", f"sqlite:///{disk}/runs.db")
        started = [serve(*store)]
        first = started[0]
        try:
            running = first.submit(**LONG)
            queued = first.submit(items=3)
            first.wait_for(running, "running")
            first.events(running)  # shows the start, which the store commits at once (as an ending)
            fill(disk)
            # The writer now fails: readiness says so, liveness does not.
            first.wait_until(
                lambda: first.client.get("/health/ready").status_code == 503,
                "/health/ready to see the full disk",
            )
            assert "disk is full" in first.client.get("/health/ready").json()["detail"]
            assert first.client.get("/health").status_code == 200
            first.kill()

            # Recovery must write (the running execution ends failed), and cannot.
            result = run_serve(tmp_path, "--pipelines", CRAWL, *store)
            assert result.returncode == 2, result
            assert result.stderr.count("\n") == 1, result.stderr
            (line,) = result.stderr.splitlines()
            assert line.startswith(f"Error: cannot write to store {disk / 'runs.db'}: "), line
            assert "disk is full" in line and "free some space" in line
            assert result.stdout == ""

            # With space again, the same file starts and nothing was lost.
            (disk / "filler").unlink()
            second = serve(*store, port=first.port)
            started.append(second)
            failed = second.record(running)
            assert failed["status"] == "failed" and failed["error"]["type"] == "ServerStopped"
            assert second.wait_for(queued, "completed")["outputs"] == {"items": 9}
            assert second.stop() == 0
        finally:  # before the unmount: a server still holds its files there
            for server in started:
                if server.process.poll() is None:
                    server.process.kill()
                    server.process.wait()
