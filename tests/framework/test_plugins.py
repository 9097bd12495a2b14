"""Plugins: they see state after each change, a broken one is skipped, installed ones are found."""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any

import anyio
import pytest

from stepstream import (
    Engine,
    ExecutionRecord,
    Pipeline,
    PluginConflict,
    Progress,
    StoreError,
    hookimpl,
    make_plugin_manager,
)
from stepstream.plugins import DEFAULT_PLUGINS, LOAD_PLUGINS_ENV
from stepstream.stores.memory import MemoryStore

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
    assert all("raised in hook" in m and "this call of it is skipped" in m for m in messages)
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


def test_the_built_ins_are_registered_like_any_plugin() -> None:
    engine = Engine(load_entrypoints=False)
    for name in DEFAULT_PLUGINS:
        assert engine.plugins.has_plugin(name)
        assert engine.plugins.origin(name) == "built-in"


class StateProbe:
    """A plugin that reads the engine's record inside each hook, as a plugin author would."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any]] = []

    @hookimpl
    def execution_started(self, execution_id: str, record: ExecutionRecord) -> None:
        self.seen.append(("started", self.engine.get(execution_id).status))
        self.seen.append(("started record", record.status))

    @hookimpl
    def step_started(self, execution_id: str, index: int) -> None:
        self.seen.append(("step_started", self.engine.get(execution_id).steps[index].status))

    @hookimpl
    def step_done(self, execution_id: str, index: int, progress: Any) -> None:
        record = self.engine.get(execution_id)
        self.seen.append(("step_done", record.steps[index].status))
        self.seen.append(("step_done progress", record.progress == progress))

    @hookimpl
    def execution_finished(self, execution_id: str, record: ExecutionRecord) -> None:
        self.seen.append(("finished", self.engine.get(execution_id).status))
        self.seen.append(("finished record", record.status))


@pytest.mark.anyio
@pytest.mark.parametrize("fail", [False, True])
async def test_a_plugin_registered_after_the_engine_sees_the_state_after_each_change(
    fail: bool,
) -> None:
    engine = Engine(load_entrypoints=False)
    probe = StateProbe(engine)
    engine.plugins.register(probe, name="late")
    record = await engine.run(_pipeline(fail), {})
    final = "failed" if fail else "completed"
    assert record.status == final
    assert probe.seen[:2] == [("started", "running"), ("started record", "running")]
    assert ("step_started", "running") in probe.seen
    assert ("step_done", "completed") in probe.seen
    assert ("step_done progress", True) in probe.seen
    assert probe.seen[-2:] == [("finished", final), ("finished record", final)]


@pytest.mark.anyio
async def test_an_installed_plugin_is_discovered_through_its_entry_point_and_gets_hooks(
    test_plugin: ModuleType,
) -> None:
    manager = make_plugin_manager()
    assert manager.get_plugin("testplugin") is test_plugin
    assert manager.origin("testplugin") == "stepstream-testplugin 0.0.1"
    record = await Engine(plugins=manager).run(_pipeline(), {})
    assert ("execution_started", record.execution_id) in test_plugin.SEEN
    assert ("execution_finished:completed", record.execution_id) in test_plugin.SEEN


def test_the_test_plugin_is_not_installed_unless_a_test_installs_it() -> None:
    assert not make_plugin_manager().has_plugin("testplugin")


@pytest.mark.anyio
async def test_load_entrypoints_false_leaves_installed_plugins_out(test_plugin: ModuleType) -> None:
    manager = make_plugin_manager(load_entrypoints=False)
    assert not manager.has_plugin("testplugin")
    record = await Engine(plugins=manager).run(_pipeline(), {})
    assert record.execution_id not in {seen for _, seen in test_plugin.SEEN}
    assert not Engine(load_entrypoints=False).plugins.has_plugin("testplugin")
    assert Engine().plugins.has_plugin("testplugin")


@pytest.mark.parametrize(
    ("selection", "loaded"),
    [
        (None, {"testplugin", "demo"}),
        ("", set()),
        ("testplugin", {"testplugin"}),
        ("stepstream-testplugin", {"testplugin"}),  # a distribution name works too
        (" Stepstream_Demo , testplugin", {"testplugin", "demo"}),
    ],
)
def test_stepstream_load_plugins_selects_which_installed_plugins_load(
    test_plugin: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    selection: str | None,
    loaded: set[str],
) -> None:
    if selection is None:
        monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    else:
        monkeypatch.setenv(LOAD_PLUGINS_ENV, selection)
    manager = make_plugin_manager()
    assert {name for name in ("testplugin", "demo") if manager.has_plugin(name)} == loaded
    assert all(manager.has_plugin(name) for name in DEFAULT_PLUGINS)


def test_stepstream_load_plugins_naming_nothing_installed_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "stepstream-nothing")
    with caplog.at_level(logging.WARNING, logger="stepstream.plugins"):
        manager = make_plugin_manager()
    assert not manager.has_plugin("demo")
    assert "stepstream-nothing" in caplog.text and "installed:" in caplog.text


def test_pipeline_run_uses_no_installed_plugins(test_plugin: ModuleType) -> None:
    before = list(test_plugin.SEEN)
    assert _pipeline().run(n=2) == 4
    assert before == test_plugin.SEEN


class OtherMemory(MemoryStore):
    """A store class another plugin offers under a scheme that is already taken."""


def test_a_store_scheme_offered_twice_is_an_error_naming_both_plugins() -> None:
    class Rival:
        @hookimpl
        def register_stores(self) -> dict[str, type]:
            return {"memory": OtherMemory, "rival": OtherMemory}

    plugins = make_plugin_manager(load_entrypoints=False)
    plugins.register(Rival(), name="rival-plugin")
    with pytest.raises(PluginConflict) as raised:
        Engine(plugins=plugins, store="memory://")
    message = str(raised.value)
    assert "'memory'" in message
    assert "rival-plugin" in message and "stepstream.stores.memory" in message
    assert "STEPSTREAM_LOAD_PLUGINS" in message
    assert isinstance(Engine(plugins=plugins, store="rival://").store, OtherMemory)


def test_a_raising_register_stores_loses_only_its_own_schemes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def register_stores(self) -> dict[str, type]:
            raise RuntimeError("cannot offer my store")

    plugins = make_plugin_manager(load_entrypoints=False)
    plugins.register(Broken(), name="broken")
    with caplog.at_level(logging.ERROR, logger="stepstream.plugins"):
        engine = Engine(plugins=plugins)
    assert isinstance(engine.store, MemoryStore)
    assert "'broken' raised in hook register_stores" in caplog.text
    with pytest.raises(StoreError, match="installed: memory://, sqlite://"):
        Engine(plugins=plugins, store="broken://")


def test_plugins_ship_pipelines_and_two_offering_one_name_conflict() -> None:
    shipped = _pipeline()

    class Shipper:
        @hookimpl
        def register_pipelines(self) -> list[Pipeline]:
            return [shipped]

    plugins = make_plugin_manager(load_entrypoints=False)
    plugins.register(Shipper(), name="shipper")
    assert dict(plugins.pipelines()) == {"plugged": shipped}
    plugins.register(Shipper(), name="copycat")
    with pytest.raises(PluginConflict, match="copycat, shipper"):
        plugins.pipelines()["plugged"]


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

    from stepstream.cli.main import build_cli

    class Broken:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            raise RuntimeError("cannot add my command")

    plugins = make_plugin_manager(load_entrypoints=False)
    plugins.register(Broken(), name="broken")
    with caplog.at_level(logging.ERROR, logger="stepstream.plugins"):
        group = build_cli(plugins)
    assert {"run", "plugins"} <= set(group.commands)
    assert "'broken' raised in hook register_commands" in caplog.text


def test_the_documented_example_plugin_runs_as_docs_plugins_md_says() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "slow_step_plugin.py"
    spec = importlib.util.spec_from_file_location("slow_step_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as `python examples/slow_step_plugin.py` has it
    try:
        spec.loader.exec_module(module)
        assert module.main() == {"slept": 0.1}
    finally:
        del sys.modules[spec.name]
    assert module.REPORT[0].startswith("slow took 0.1")
    assert module.REPORT[-1] == "nap completed in 2 steps"
