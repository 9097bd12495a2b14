"""The commands that talk to a server, run as a user runs them: the console script in a
subprocess against a real `stepstream serve`, checked by output and exit code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stepstream import ExecutionFinished, encode
from stepstream.client import Client

from cli_support import PIPELINES, ROOT, WAIT, Served, free_port, start_serve, stepstream_command
from proxy_support import Proxy

CRAWL = str(PIPELINES / "crawl.py")
FAILING = str(PIPELINES / "failing.py")
LONG = ("-i", "items=2000", "-i", "pause=0.01")  # 20 s a step: running whenever the test acts
SHORT = ("-i", "items=3", "-i", "pause=0.001")
ENV = {k: v for k, v in os.environ.items() if k not in ("STEPSTREAM_TOKEN", "STEPSTREAM_URL")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(
        "--store",
        "memory://",
        "--pipelines",
        CRAWL,
        "--pipelines",
        FAILING,
        "--progress-interval",
        "0.02",
        cwd=tmp_path_factory.mktemp("cli-server"),
    )
    yield served
    served.stop()


@pytest.fixture
def client(server: Served) -> Iterator[Client]:
    with Client(server.url, timeout=WAIT) as client:
        yield client


@pytest.fixture
def cancel_afterwards(client: Client) -> Iterator[list[str]]:
    """Ids to cancel once the test is over, so a failing test leaves no long run behind."""
    ids: list[str] = []
    yield ids
    for execution_id in ids:
        with contextlib.suppress(ExecutionFinished):
            client.cancel(execution_id)
        client.wait(execution_id, timeout=WAIT)


Remote = Callable[..., subprocess.CompletedProcess[str]]


def environment(url: str | None, **extra: str) -> dict[str, str]:
    return {**ENV, **({"STEPSTREAM_URL": url} if url else {}), "COLUMNS": "80", **extra}


@pytest.fixture
def remote(server: Served) -> Remote:
    """Run `stepstream ARGS...` with STEPSTREAM_URL pointing at the module's server."""

    def run(*args: str, url: str | None = server.url, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*stepstream_command(), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment(url, **env),
        )

    return run


def background(*args: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*stepstream_command(), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(url),
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0].removeprefix("Error: ")


# -- help ----------------------------------------------------------------------------------


def test_h_is_help_for_the_command_and_its_sub_commands(remote: Remote) -> None:
    assert remote("-h").stdout == remote("--help").stdout
    for args in ([], ["watch"], ["run"], ["serve"]):  # `-h` is set once, on the group
        result = remote(*args, "-h")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"Usage: stepstream {' '.join(args)}".rstrip())
        assert "-h, --help" in result.stdout


# -- submit, show, ls, cancel -----------------------------------------------------------------


def test_submit_prints_the_id_and_show_and_ls_describe_the_execution(
    remote: Remote, client: Client
) -> None:
    submitted = remote("submit", "crawl", *SHORT)
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()
    record = client.wait(execution_id, timeout=WAIT)
    assert record.status == "completed" and record.inputs == {"items": 3, "pause": 0.001}

    shown = remote("show", execution_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [execution_id, "crawl", "completed"]
    assert "100.0%  step 3/3" in shown.stdout
    for step in ("fetch", "parse", "store"):
        assert any(line.split()[1:3] == [step, "completed"] for line in lines if line.strip())
    outputs = shown.stdout[shown.stdout.index("outputs\n") + len("outputs\n") :]
    assert json.loads(outputs) == {"items": 9}

    raw = remote("show", execution_id, "--json")
    assert json.loads(raw.stdout) == json.loads(encode(record))

    # Piped, with no COLUMNS: rows are never cut.
    listed = remote(
        "ls", "--pipeline", "crawl", "--status", "completed", "--limit", "200", COLUMNS=""
    )
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(execution_id))
    assert row.split()[1:4] == ["crawl", "completed", "100.0%"]
    assert listed.stdout.splitlines()[0].split() == [
        "ID",
        "PIPELINE",
        "STATUS",
        "PROGRESS",
        "CREATED",
        "TOOK",
    ]
    assert remote("ls", "--pipeline", "nothing-by-this-name").stdout == "no executions\n"


def test_show_tells_why_an_execution_failed(remote: Remote, client: Client) -> None:
    execution_id = remote("submit", "failing", "-i", "n=7").stdout.strip()
    client.wait(execution_id, timeout=WAIT)
    shown = remote("show", execution_id, "--traceback")
    assert shown.returncode == 0, shown.stderr
    assert "step 'explode' failed: ValueError: bad value 7" in shown.stdout
    assert 'raise ValueError(f"bad value {n}")' in shown.stdout


def test_cancel_stops_a_running_execution_and_refuses_a_finished_one(
    remote: Remote, client: Client, cancel_afterwards: list[str]
) -> None:
    execution_id = client.submit("crawl", items=2000, pause=0.01).execution_id
    cancel_afterwards.append(execution_id)
    wait_until(lambda: client.get(execution_id).status == "running", "running")
    cancelled = remote("cancel", execution_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{execution_id} ")
    assert client.wait(execution_id, timeout=WAIT).status == "cancelled"
    again = remote("cancel", execution_id)
    assert again.returncode == 2
    assert one_error_line(again) == f"execution '{execution_id}' already finished: cancelled"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show", "exec_nope"), "no execution with id 'exec_nope'"),
        (("cancel", "exec_nope"), "no execution with id 'exec_nope'"),
        (("watch", "exec_nope"), "no execution with id 'exec_nope'"),
        (("submit", "nope"), "no pipeline named 'nope' (known: crawl, demo, demo_async, failing)"),
        (
            ("submit", "crawl", "-i", "items=many", "-i", "colour=red"),
            "invalid inputs for pipeline 'crawl': items: expected int, got string;"
            " colour: unknown input (expected: items, pause)",
        ),
    ],
)
def test_what_the_server_refuses_is_one_line_and_exit_code_2(
    remote: Remote, args: tuple[str, ...], expected: str
) -> None:
    result = remote(*args)
    assert result.returncode == 2
    assert one_error_line(result) == expected


# -- watch and submit --watch ------------------------------------------------------------------


def test_logs_prints_what_the_steps_printed_and_logged(remote: Remote, client: Client) -> None:
    failed = client.submit("failing", n=5).execution_id
    client.wait(failed, timeout=WAIT)
    result = remote("logs", failed)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.endswith(" prepare stdout preparing 5"), line
    demo = client.submit("demo", steps=2, seconds_per_step=0.01, items_per_step=3).execution_id
    client.wait(demo, timeout=WAIT)
    lines = remote("logs", demo).stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "extract INFO stepstream_demo.pipelines: step 1 of 2 counted 3 items",
        "publish INFO stepstream_demo.pipelines: step 2 of 2 counted 3 items",
    ]
    assert one_error_line(remote("logs", "exec_nope")) == "no execution with id 'exec_nope'"


def test_logs_follow_prints_lines_as_they_come_and_exits_as_watch(
    server: Served, client: Client
) -> None:
    execution_id = client.submit(
        "demo", steps=3, seconds_per_step=1, items_per_step=10
    ).execution_id
    following = background("logs", execution_id, "--follow", url=server.url)
    stdout, stderr = following.communicate(timeout=WAIT)
    assert following.returncode == 0, stderr
    assert [line.split(" ", 2)[1] for line in stdout.splitlines()] == [
        "extract",
        "validate",
        "publish",
    ]
    failed = client.submit("failing", n=1).execution_id
    result = background("logs", "-f", failed, url=server.url)
    stdout, _ = result.communicate(timeout=WAIT)
    assert result.returncode == 1 and stdout.endswith("preparing 1\n")


def test_submit_watch_prints_the_outputs_and_exits_0_when_it_completes(remote: Remote) -> None:
    result = remote("submit", "crawl", *SHORT, "--watch")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"items": 9}
    assert "completed" in result.stderr and "100.0%" in result.stderr
    assert "Traceback" not in result.stderr


def test_submit_watch_exits_1_naming_the_failed_step(remote: Remote) -> None:
    result = remote("submit", "failing", "-i", "n=7", "--watch")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "failed: step 'explode' failed: ValueError: bad value 7" in result.stderr


def test_watch_exits_130_when_an_execution_is_cancelled(
    server: Served, client: Client, cancel_afterwards: list[str]
) -> None:
    execution_id = client.submit("crawl", items=2000, pause=0.01).execution_id
    cancel_afterwards.append(execution_id)
    watching = background("watch", execution_id, url=server.url)
    wait_until(lambda: client.get(execution_id).status == "running", "running")
    client.cancel(execution_id)
    _, stderr = watching.communicate(timeout=WAIT)
    assert watching.returncode == 130, stderr
    assert f"{execution_id} crawl cancelled" in stderr


def test_watch_of_ids_exits_0_once_all_completed(remote: Remote, client: Client) -> None:
    ids = [client.submit("crawl", items=10, pause=0.01).execution_id for _ in range(2)]
    result = remote("watch", *ids)
    assert result.returncode == 0, result.stderr
    for execution_id in ids:
        assert f"{execution_id} crawl completed" in result.stderr
    bars = [line for line in result.stderr.splitlines() if "100.0%" in line]
    assert len(bars) == 2 and all(len(line) <= 80 for line in bars)
    assert {line.split()[1] for line in bars} == {i[-6:] for i in ids}  # told apart by id


def test_watch_without_ids_follows_the_running_and_those_that_start(
    server: Served, client: Client, cancel_afterwards: list[str]
) -> None:
    running = client.submit("crawl", items=2000, pause=0.01).execution_id
    cancel_afterwards.append(running)
    proxy = Proxy(server.port)
    try:
        watching = background("watch", url=proxy.url)
        # Both of its streams are open: the one of the running execution, and the one for new ones.
        wait_until(lambda: len(proxy.streams()) == 2, "the watch's two streams")
        new = client.submit("crawl", items=5, pause=0.01).execution_id
        client.wait(new, timeout=WAIT)
        client.cancel(running)
        _, stderr = watching.communicate(timeout=WAIT)
    finally:
        proxy.close()
    assert watching.returncode == 130, stderr  # one was cancelled
    assert f"{new} crawl completed" in stderr
    assert f"{running} crawl cancelled" in stderr


def test_watch_without_ids_and_nothing_unfinished_says_so(remote: Remote) -> None:
    result = remote("watch")
    assert result.returncode == 0, result.stderr
    assert "nothing to watch: no execution is pending or running" in result.stderr


def test_ctrl_c_stops_watching_with_130_and_leaves_the_execution_running(
    server: Served, client: Client, cancel_afterwards: list[str]
) -> None:
    execution_id = client.submit("crawl", items=2000, pause=0.01).execution_id
    cancel_afterwards.append(execution_id)
    proxy = Proxy(server.port)
    try:
        watching = background("watch", execution_id, url=proxy.url)
        wait_until(lambda: len(proxy.streams()) == 1, "the watch's stream")
        watching.send_signal(signal.SIGINT)
        _, stderr = watching.communicate(timeout=WAIT)
    finally:
        proxy.close()
    assert watching.returncode == 130
    assert "stopped watching; the executions go on on the server" in stderr
    assert "Traceback" not in stderr
    assert client.get(execution_id).status == "running"


# -- pipelines --------------------------------------------------------------------------------


def test_pipelines_lists_a_files_pipelines_with_their_inputs(remote: Remote) -> None:
    result = remote("pipelines", str(PIPELINES / "forms.py"))
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert rows[0][:1] == ["greet"] and "repeats a name" in result.stdout
    assert ["name", "string", "(required)"] in rows
    assert ["times", "integer", "2"] in rows
    mode = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["mode"])
    assert mode.split() == ["mode", '"fancy"', "|", '"plain"', '"plain"']


def test_pipelines_lists_a_servers_pipelines(remote: Remote, server: Served) -> None:
    result = remote("pipelines", server.url, url=None)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line and line[0] != " "]
    assert names == ["crawl", "demo", "demo_async", "failing"]
    assert "  steps: fetch, parse, store" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["fail_at_step", "integer", "|", "null", "null"] in rows
    without_target = remote("pipelines")  # STEPSTREAM_URL
    assert without_target.stdout == result.stdout


def test_pipelines_of_a_bad_target_is_one_line(remote: Remote) -> None:
    result = remote("pipelines", "no/such/file.py")
    assert result.returncode == 1
    assert one_error_line(result).startswith("no such file: no/such/file.py")


# -- no server, or no token -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "demo"),
        ("submit", "demo", "--watch"),
        ("watch",),
        ("watch", "exec_x"),
        ("ls",),
        ("show", "exec_x"),
        ("cancel", "exec_x"),
    ],
)
def test_a_server_that_is_not_there_is_one_line_naming_the_url_and_exit_2(
    remote: Remote, args: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = remote(*args, url=url)
    assert result.returncode == 2
    assert one_error_line(result) == (
        f"cannot reach the stepstream server at {url}: connection refused; "
        "start it with 'stepstream serve' or set --url/STEPSTREAM_URL"
    )
    if args == ("ls",):  # --url says the same as STEPSTREAM_URL
        with_option = remote(*args, "--url", url, url=None)
        assert with_option.returncode == 2 and with_option.stderr == result.stderr


def test_pipelines_of_a_server_that_is_not_there_is_one_line(remote: Remote) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = remote("pipelines", url, url=None)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"cannot reach the stepstream server at {url}: ")


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_serve(
        "--store", "memory://", "--token", "s3cret", cwd=tmp_path_factory.mktemp("token")
    )
    yield served
    served.stop()


def test_a_server_with_a_token_takes_it_from_the_environment_or_a_file(
    remote: Remote, token_server: Served, tmp_path: Path
) -> None:
    url = token_server.url
    refused = remote("ls", url=url)
    assert refused.returncode == 2
    assert one_error_line(refused) == (
        f"the stepstream server at {url} refused the request (missing or invalid bearer "
        "token; send the header 'Authorization: Bearer <token>'); set STEPSTREAM_TOKEN "
        "(or --token-file) to the server's token"
    )
    wrong = remote("watch", url=url, STEPSTREAM_TOKEN="wrong")
    assert wrong.returncode == 2 and "set STEPSTREAM_TOKEN" in wrong.stderr

    submitted = remote(
        "submit", "demo", "-i", "steps=1", "-i", "seconds_per_step=0", "--watch",
        url=url, STEPSTREAM_TOKEN="s3cret",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    listed = remote("ls", "--token-file", str(token_file), url=url)
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout and "completed" in listed.stdout
    missing = remote("ls", "--token-file", str(tmp_path / "absent"), url=url)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
