"""`stepstream run --publish webhook+http://...` as a user runs it: processes, ends, restarts.

Each worker is the console script in a subprocess; the receiver is a real HTTP
server in the test process; the outbox is a folder of the test's own.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from stepstream_webhooks.outbox import Message, Outbox
from webhook_support import (
    PIPELINES,
    SECRET,
    WAIT,
    Answer,
    Receiver,
    free_port,
    hook_url,
    listening,
    stepstream_command,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[3]
README = Path(__file__).resolve().parents[1] / "README.md"


def _start(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*stepstream_command(), "-v", "run", f"{PIPELINES}:quick", "--publish", url, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )


def _finish(worker: subprocess.Popen[str]) -> str:
    """The worker's stderr, once it exited 0 and printed the pipeline's outputs."""
    stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert '"doubled": 6' in stdout
    return stderr


def test_a_run_ends_on_time_when_the_receiver_never_answers(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.answer(then=Answer(None))
    url = hook_url(receiver.url, tmp_path, timeout=120)
    began = time.monotonic()
    stderr = _finish(_start(url, "--publish-timeout", "1"))
    assert time.monotonic() - began < 30  # one attempt alone may take 120 s
    assert f"2 events could not be delivered to {url}" in stderr
    assert f"2 webhooks to {receiver.url} wait in {tmp_path}" in stderr
    assert SECRET.removeprefix("whsec_")[:12] not in stderr
    assert "Traceback" not in stderr


def test_what_a_run_could_not_deliver_the_next_run_does(receiver: Receiver, tmp_path: Path) -> None:
    receiver.answer(then=Answer(503))
    url = hook_url(receiver.url, tmp_path)
    first = _start(url, "--publish-timeout", "1")
    assert "2 events could not be delivered" in _finish(first)
    assert receiver.hits and not receiver.accepted()
    receiver.answer(then=Answer(200))
    second = _start(url, "--publish-timeout", str(WAIT))
    assert "could not be delivered" not in _finish(second)
    payloads = [hit.verified() for hit in receiver.accepted()]
    assert [(p["type"], p["data"]["origin"]["pid"]) for p in payloads] == [
        ("execution.started", first.pid),
        ("execution.completed", first.pid),
        ("execution.started", second.pid),
        ("execution.completed", second.pid),
    ]


def test_two_runs_sharing_an_outbox_deliver_each_webhook_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    backlog = [f"exec_backlog:{n}" for n in range(1, 101)]
    left_behind = Outbox.for_receiver(tmp_path, receiver.url, limit=10_000)
    left_behind.add([Message(i, "exec_backlog", "completed", b"{}", time.time()) for i in backlog])
    left_behind.close()
    receiver.answer(then=Answer(200, delay=0.01))
    url = hook_url(receiver.url, tmp_path)
    workers = [_start(url, "--publish-timeout", str(WAIT)) for _ in range(2)]
    for worker in workers:
        assert "could not be delivered" not in _finish(worker)
    ids = [hit.id for hit in receiver.hits]
    assert len(ids) == len(set(ids)), "a webhook was sent twice"
    assert set(ids) >= set(backlog) and len(ids) == len(backlog) + 4
    payloads = [hit.verified() for hit in receiver.hits]
    runs = [p["data"]["origin"]["pid"] for p in payloads if p]
    assert sorted(runs) == sorted(2 * [w.pid for w in workers])
    with sqlite3.connect(left_behind.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def test_the_readmes_receiver_verifies_what_a_run_sends(tmp_path: Path) -> None:
    found = re.search(r"as `receiver.py`.*?```python\n(.*?)```", README.read_text(), re.S)
    assert found, "the README shows no receiver"
    (tmp_path / "receiver.py").write_text(found.group(1))
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(tmp_path / "receiver.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=worker_env(),
    )
    try:
        listening(port)
        url = f"webhook+http://127.0.0.1:{port}/?outbox={tmp_path}"
        assert "could not be delivered" not in _finish(_start(url, "--publish-timeout", str(WAIT)))
    finally:
        receiver.terminate()
        printed, _ = receiver.communicate(timeout=WAIT)
    started, completed = printed.splitlines()
    assert started == "execution.started | quick started"
    assert completed.startswith("execution.completed | quick completed in ")
