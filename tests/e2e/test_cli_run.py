"""`stepstream run` as a subprocess: outputs, exit codes, errors a person can act on, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from stepstream.cli.loader import load_pipeline

from cli_support import PIPELINES, ROOT, stepstream_command

FAILING = str(PIPELINES / "failing.py")
FLAKY = str(PIPELINES / "flaky.py")
SLOW = str(PIPELINES / "slow.py")
TWO = str(PIPELINES / "two.py")


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_run_prints_the_outputs_as_json_and_exits_0(cli) -> None:
    result = cli("run", "examples/etl.py:etl", "-i", "rows=2000")
    assert result.returncode == 0, result.stderr
    expected = load_pipeline(str(ROOT / "examples/etl.py") + ":etl").run(rows=2000)
    assert json.loads(result.stdout) == expected
    assert expected["written"] > 0
    assert "100.0%" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_works_on_the_async_example(cli) -> None:
    result = cli("run", "examples/async_fetch.py:fetch", "-i", "pages=4", "-i", "latency=0.001")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["pages"] == 4
    assert outputs["words"] == 1 + 2 + 3 + 4


def test_inputs_json_and_a_file_of_inputs_work_and_i_overrides(cli, tmp_path: Path) -> None:
    inline = cli("run", "examples/etl.py:etl", "--inputs-json", '{"rows": 50, "seed": 1}')
    assert inline.returncode == 0, inline.stderr
    inputs = tmp_path / "inputs.json"
    inputs.write_text('{"rows": 50, "seed": 2}')
    from_file = cli("run", "examples/etl.py:etl", "--inputs-json", f"@{inputs}", "-i", "seed=1")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout) == json.loads(inline.stdout)


def test_run_takes_a_module_target(cli) -> None:
    result = subprocess.run(
        [*stepstream_command(), "run", "two:second", "-i", "word=ab"],
        cwd=PIPELINES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "abab"


def test_a_failing_step_exits_1_with_the_error_and_no_traceback(cli) -> None:
    result = cli("run", f"{FAILING}:failing", "-i", "n=7")
    assert result.returncode == 1
    assert result.stdout == ""  # what the step printed is shown above the bar, on stderr
    assert "prepare preparing 7" in result.stderr
    assert "step 'explode' failed: ValueError: bad value 7" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_step_failing_every_retry_says_how_often_it_was_tried(cli) -> None:
    result = cli("run", f"{FLAKY}:flaky")
    assert result.returncode == 1
    assert (
        "step 'fetch' failed: OSError: cannot reach http://example.invalid (3 attempts)"
        in result.stderr
    )


def test_a_step_timeout_exits_1_naming_the_step(cli) -> None:
    result = cli("run", f"{FLAKY}:slow")
    assert result.returncode == 1
    assert "step 'crawl' failed: StepTimeout: step 'crawl' timed out after 0.2 s" in result.stderr


def test_traceback_flag_shows_the_steps_traceback(cli) -> None:
    result = cli("run", f"{FAILING}:failing", "-i", "n=7", "--traceback")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise ValueError(f"bad value {n}")' in result.stderr
    assert "step 'explode' failed: ValueError: bad value 7" in result.stderr


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no/such/file.py:p", "no such file: no/such/file.py (expected a Python file"),
        (f"{TWO}:missing", "has no attribute 'missing' (pipelines there: first, second)"),
        (f"{TWO}:NOT_A_PIPELINE", "is a dict, not a Pipeline; expected an object made with"),
        ("no_such_module_xyz:p", "no module named 'no_such_module_xyz' (expected FILE.py or"),
        (TWO, "holds several pipelines (first, second); pick one with"),
        (f"{PIPELINES / 'broken_import.py'}:p", "RuntimeError: this module cannot be imported"),
        (":p", "names no file or module; expected FILE.py:pipeline"),
    ],
)
def test_a_bad_target_gives_one_line_saying_what_was_expected(
    cli, target: str, expected: str
) -> None:
    result = cli("run", target)
    assert result.returncode != 0
    assert expected in _one_error_line(result.stderr)


def test_a_pipeline_that_cannot_run_is_refused_naming_the_function_and_the_fix(cli) -> None:
    result = cli("run", f"{PIPELINES / 'bad_declaration.py'}:twice")
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "already has a step named 'load'" in line
    assert "load_again" in line
    assert "@pipeline.step(name=...)" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-i", "rows"], "Invalid value for '-i': 'rows' is not KEY=VALUE"),
        (["-i", "=3"], "Invalid value for '-i': '=3' is not KEY=VALUE"),
        (["--inputs-json", "{rows: 1"], "Invalid value for '--inputs-json': not valid JSON"),
        (["--inputs-json", "[1, 2]"], "Invalid value for '--inputs-json': must be a JSON object"),
        (["--inputs-json", "@/no/such/inputs.json"], "cannot read /no/such/inputs.json"),
    ],
)
def test_bad_input_options_are_usage_errors_naming_the_option(
    cli, args: list[str], expected: str
) -> None:
    result = cli("run", "examples/etl.py:etl", *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_inputs_that_do_not_fit_are_listed_by_name(cli) -> None:
    result = cli("run", "examples/etl.py:etl", "-i", "rows=lots", "-i", "colour=red")
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "rows: expected int, got string" in line
    assert "colour: unknown input (expected: rows, seed)" in line


@pytest.mark.parametrize(
    ("pipeline", "how"),
    [("spin", "cancelled after"), ("sleeper", "cancelled"), ("hog", "cancelled")],
)
def test_ctrl_c_cancels_the_running_step_cleanly_and_exits_130(
    tmp_path: Path, pipeline: str, how: str
) -> None:
    marker = tmp_path / "marker.txt"
    process = subprocess.Popen(
        [*stepstream_command(), "run", f"{SLOW}:{pipeline}", "-i", f"marker={marker}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text().startswith("started")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert "cancelled" in stderr
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
    lines = marker.read_text().splitlines()
    assert lines[0] == "started"
    assert lines[1].startswith(how)
    assert lines[-1] == "finally"


def test_ctrl_c_during_a_deaf_step_says_at_once_what_happens_and_a_second_quits(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker.txt"
    process = subprocess.Popen(
        [*stepstream_command(), "run", f"{SLOW}:deaf", "-i", f"marker={marker}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text().startswith("started")):
            assert process.poll() is None
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        while not any("cancel requested" in line for line in lines):
            assert process.poll() is None, lines
            assert time.monotonic() < deadline, f"nothing said after Ctrl-C: {lines}"
            time.sleep(0.02)
        assert any("Ctrl-C again to quit now" in line for line in lines), lines
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
    assert any("interrupted again: quitting now" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)


def test_an_input_given_twice_is_an_error_not_a_silent_choice(cli) -> None:
    result = cli("run", f"{TWO}:second", "-i", "word=ab", "-i", "word=cd")
    assert result.returncode == 2
    assert "'word' is given twice; give each input once" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_abandons_a_deaf_step_after_the_grace_period_and_exits_130(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    process = subprocess.Popen(
        [*stepstream_command(), "run", f"{SLOW}:deaf", "-i", f"marker={marker}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "STEPSTREAM_CANCEL_GRACE": "0.5"},
    )
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text().startswith("started")):
            assert process.poll() is None
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)  # the step itself sleeps 60 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "abandoned" in stderr and "exiting without waiting" in stderr


def test_the_bar_keeps_to_one_line_in_an_80_column_terminal() -> None:
    """In a terminal, rich redraws the bar in place; a bar wider than the terminal would wrap,
    and the redraw would move the cursor up a line. So: no cursor-up, no line over 80."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*stepstream_command(), "run", "examples/etl.py:etl", "-i", "rows=300000"],
        cwd=ROOT,
        stdin=terminal,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = output.decode(errors="replace")
    assert "\x1b[1A" not in text, "the bar took more than one line"
    lines = re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))
    frames = [line for line in lines if "%" in line]
    assert len(frames) >= 2, text  # drawn live, then final
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert frames[-1].startswith("etl completed") and "100.0%" in frames[-1]


def test_run_works_on_the_graph_example(cli) -> None:
    result = cli("run", "examples/report.py:report", "-i", "days=12")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert set(outputs) == {"summary", "outliers"}
    expected = load_pipeline(str(ROOT / "examples/report.py") + ":report").run(days=12)
    assert outputs == expected
    assert "100.0%" in result.stderr
    assert "12 days, total" in result.stderr  # what the last step printed, above the bars
    assert "12 days" not in result.stdout  # never mixed into the outputs
