"""Plugins: a broken one is logged and skipped; installed ones are found by entry point."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import stepstream_testplugin
from stepstream import Engine, Pipeline, Progress, hookimpl, make_plugin_manager
from stepstream.plugins import DEFAULT_PLUGINS

from fw_support import HookRecorder, engine_with

HOOKS = (
    "execution_started",
    "step_started",
    "step_progress",
    "step_done",
    "step_failed",
    "execution_finished",
)


class Broken:
    """A plugin whose every execution hook raises."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, hook: str) -> None:
        self.calls += 1
        raise RuntimeError(f"broken plugin in {hook}")

    @hookimpl
    def execution_started(self) -> None:
        self._fail("execution_started")

    @hookimpl
    def step_started(self) -> None:
        self._fail("step_started")

    @hookimpl
    def step_progress(self) -> None:
        self._fail("step_progress")

    @hookimpl
    def step_done(self) -> None:
        self._fail("step_done")

    @hookimpl
    def step_failed(self) -> None:
        self._fail("step_failed")

    @hookimpl
    def execution_finished(self) -> None:
        self._fail("execution_finished")


def _pipeline(fail: bool = False) -> Pipeline:
    p = Pipeline("plugged")

    @p.step
    def first(progress: Progress, n: int = 3) -> int:
        for _ in progress.iter(range(n)):
            pass
        return n

    @p.step
    async def second(n: int) -> int:
        await anyio.sleep(0)
        if fail:
            raise ValueError("second step fails")
        return n * 2

    return p


@pytest.mark.anyio
@pytest.mark.parametrize("fail", [False, True])
async def test_a_raising_plugin_is_logged_and_neither_fails_the_run_nor_starves_others(
    fail: bool, caplog: pytest.LogCaptureFixture
) -> None:
    before, after = HookRecorder(), HookRecorder()
    broken = Broken()
    engine = engine_with(before, broken, after)
    with caplog.at_level(logging.ERROR, logger="stepstream.plugins"):
        record = await engine.run(_pipeline(fail), {})
    assert record.status == ("failed" if fail else "completed")
    assert record.outputs == (None if fail else 6)
    expected = {"execution_started", "step_started", "step_progress", "execution_finished"}
    expected.add("step_failed" if fail else "step_done")
    for recorder in (before, after):
        assert expected <= set(recorder.names())
        assert recorder.names() == before.names()
        assert recorder.of("execution_finished")[0]["status"] == record.status
    assert broken.calls == len(before.calls)
    messages = [r.getMessage() for r in caplog.records if r.name == "stepstream.plugins"]
    assert len(messages) == broken.calls
    assert all("failed in hook" in m for m in messages)
    assert any("execution_finished" in m for m in messages)
    assert all(r.exc_info and "broken plugin" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.anyio
async def test_plugins_registered_or_removed_after_the_engine_was_built_are_honoured() -> None:
    engine = engine_with()
    late = HookRecorder()
    engine.plugins.register(late, name="late")
    first = await engine.run(_pipeline(), {})
    assert late.names(first.execution_id)[0] == "execution_started"
    engine.plugins.unregister(name="late")
    second = await engine.run(_pipeline(), {})
    assert late.names(second.execution_id) == []


def test_the_tracker_and_the_built_ins_are_registered_like_any_plugin() -> None:
    engine = Engine(load_entrypoints=False)
    assert engine.plugins.get_plugin("tracker") is engine.tracker
    for name in DEFAULT_PLUGINS:
        assert engine.plugins.has_plugin(name)
        assert engine.plugins.origin(name) == "built-in"
    tracker_hooks = {c.name for c in engine.plugins.get_hookcallers(engine.tracker)}
    assert set(HOOKS) <= tracker_hooks


@pytest.mark.anyio
async def test_an_installed_plugin_is_discovered_through_its_entry_point_and_gets_hooks() -> None:
    manager = make_plugin_manager()
    assert manager.get_plugin("testplugin") is stepstream_testplugin
    assert manager.origin("testplugin") == "stepstream-testplugin 0.0.1"
    record = await Engine(plugins=manager).run(_pipeline(), {})
    assert ("execution_started", record.execution_id) in stepstream_testplugin.SEEN
    assert ("execution_finished:completed", record.execution_id) in stepstream_testplugin.SEEN


@pytest.mark.anyio
async def test_load_entrypoints_false_leaves_installed_plugins_out() -> None:
    manager = make_plugin_manager(load_entrypoints=False)
    assert not manager.has_plugin("testplugin")
    record = await Engine(plugins=manager).run(_pipeline(), {})
    assert record.execution_id not in {seen for _, seen in stepstream_testplugin.SEEN}
    assert not Engine(load_entrypoints=False).plugins.has_plugin("testplugin")
    assert Engine().plugins.has_plugin("testplugin")


def test_pipeline_run_uses_no_installed_plugins() -> None:
    before = list(stepstream_testplugin.SEEN)
    assert _pipeline().run(n=2) == 4
    assert before == stepstream_testplugin.SEEN


def test_hook_arguments_are_passed_by_name_so_plugins_take_only_what_they_need() -> None:
    seen: list[Any] = []

    class Minimal:
        @hookimpl
        def step_done(self, index: int) -> None:
            seen.append(index)

    record = anyio.run(engine_with(Minimal()).run, _pipeline(), {})
    assert record.status == "completed"
    assert seen == [0, 1]


def test_a_plugin_whose_register_commands_raises_loses_only_its_own_commands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import click

    from stepstream.cli import build_cli

    class Broken:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            raise RuntimeError("cannot add my command")

    plugins = make_plugin_manager(load_entrypoints=False)
    plugins.register(Broken(), name="broken")
    with caplog.at_level(logging.ERROR, logger="stepstream.plugins"):
        group = build_cli(plugins)
    assert {"run", "plugins"} <= set(group.commands)
    assert "'broken' failed in hook register_commands" in caplog.text
