"""What steps print and log is captured per execution and per step, bounded, kept, followed."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import anyio
import pytest

from stepstream import Engine, LogEvent, Pipeline, Progress
from stepstream.stores.sqlite import SqliteStore

pytestmark = pytest.mark.anyio
log = logging.getLogger("chatty")


def _chatty(name: str, *, is_async: bool = False, lines: int = 20) -> Pipeline:
    """A step that prints and logs lines naming its execution's tag, interleaved with sleeps."""
    p = Pipeline(name)

    if is_async:

        @p.step
        async def talk(tag: str, progress: Progress) -> int:
            for i in range(lines):
                print(f"{tag} out {i}")
                log.warning("%s log %d", tag, i)
                await anyio.sleep(0.001)
            return lines

    else:

        @p.step
        def talk(tag: str, progress: Progress) -> int:
            for i in range(lines):
                print(f"{tag} out {i}")
                print(f"{tag} err {i}", file=sys.stderr)
                log.warning("%s log %d", tag, i)
                time.sleep(0.001)
            return lines

    @p.step
    def after(n: int) -> int:
        print("second step")
        return n

    return p


async def test_two_executions_at_once_never_mix_their_lines() -> None:
    async with Engine(load_entrypoints=False) as engine:
        ids = {
            tag: engine.submit(_chatty(f"p-{tag}", is_async=is_async), {"tag": tag}).execution_id
            for tag, is_async in (("A", False), ("B", False), ("C", True))
        }
        for execution_id in ids.values():
            await engine.wait(execution_id)
    for tag, execution_id in ids.items():
        lines = engine.logs(execution_id)
        talk = [line for line in lines if line.step == "talk"]
        assert talk and all(line.message.startswith(tag) or tag in line.message for line in talk)
        assert all(other not in line.message for line in talk for other in ids if other != tag)
        assert [line.n for line in lines] == list(range(1, len(lines) + 1))
        assert {line.stream for line in talk} >= {"stdout", "log"}
        assert any(line.level == "WARNING" and "chatty:" in line.message for line in talk)
        assert [line.message for line in lines if line.step == "after"] == ["second step"]


async def test_only_the_last_lines_are_kept_and_output_outside_steps_passes_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = Engine(load_entrypoints=False, keep_log_lines=10)
    record = await engine.run(_chatty("bounded", lines=30), {"tag": "Z"})
    print("not in a step")
    lines = engine.logs(record.execution_id)
    assert len(lines) == 10
    assert lines[-1].message == "second step"
    assert lines[0].n == lines[-1].n - 9
    assert engine.logs(record.execution_id, after=lines[-2].n) == [lines[-1]]
    assert "not in a step" in capsys.readouterr().out
    assert "Z out" not in capsys.readouterr().out


async def test_lines_are_kept_in_the_sqlite_store_and_pruned_with_their_execution(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    engine = Engine(store=store, load_entrypoints=False, keep_log_lines=15)
    record = await engine.run(_chatty("kept", lines=12), {"tag": "K"})
    queued = engine.logs(record.execution_id)
    store.close()
    reopened = SqliteStore(tmp_path / "s.db")
    assert reopened.logs(record.execution_id) == queued
    assert len(queued) == 15
    assert reopened.prune(keep_count=0) == 1
    assert reopened.logs(record.execution_id) == []
    reopened.close()


async def test_a_follower_that_asks_gets_the_kept_lines_then_new_ones() -> None:
    gate = anyio.Event()
    p = Pipeline("gated-logs")

    @p.step
    async def talk(progress: Progress) -> None:
        print("before")
        await gate.wait()
        print("after")

    async with Engine(load_entrypoints=False) as engine:
        execution_id = engine.submit(p).execution_id
        while not engine.logs(execution_id):
            await anyio.sleep(0.01)
        received: list[str] = []
        async with (
            engine.subscribe(execution_id, logs=True) as events,
            engine.subscribe(execution_id) as plain,
        ):
            gate.set()
            async for event in events:
                if isinstance(event, LogEvent):
                    received += [line.message for line in event.lines]
            assert not [e async for e in plain if isinstance(e, LogEvent)]
    assert received == ["before", "after"]
