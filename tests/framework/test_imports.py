"""Importing stepstream loads what is used, not the whole framework; every public name resolves."""

from __future__ import annotations

import subprocess
import sys

import stepstream


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(result.stdout.split())


def test_import_stepstream_loads_none_of_the_framework_yet() -> None:
    loaded = _loaded_after("import stepstream")
    assert not {"asyncio", "msgspec", "pluggy", "anyio", "importlib.metadata"} & loaded
    assert [m for m in loaded if m.startswith("stepstream.")] == []


def test_declaring_a_pipeline_needs_neither_the_engine_nor_an_event_loop() -> None:
    loaded = _loaded_after("from stepstream import Pipeline, Progress")
    assert not {"asyncio", "anyio", "pluggy", "stepstream.runtime.engine"} & loaded


def test_an_engine_without_plugins_from_entry_points_skips_reading_them() -> None:
    loaded = _loaded_after("from stepstream import Engine\nEngine(load_entrypoints=False)")
    assert "stepstream.runtime.engine" in loaded
    assert "importlib.metadata" not in loaded


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in stepstream.__all__:
        assert getattr(stepstream, name) is not None, name
    assert set(stepstream.__all__) <= set(dir(stepstream))
    assert stepstream.Pipeline.__module__ == "stepstream.authoring.pipeline"
    assert stepstream.DEFAULT_CANCEL_GRACE == 30.0


def test_the_command_group_is_built_without_the_engine_or_an_event_loop() -> None:
    loaded = _loaded_after(
        "from stepstream.cli.main import build_cli\n"
        "from stepstream.plugins import make_plugin_manager\n"
        "build_cli(make_plugin_manager(load_entrypoints=False))"
    )
    assert not {"asyncio", "anyio", "rich", "stepstream.runtime.engine"} & loaded


def test_with_the_installed_plugins_the_command_group_loads_no_web_framework_or_store() -> None:
    """Every command, `--help` included, loads each plugin: they defer what only they use.

    The stores and transports load when a command opens one, msgspec with the first event.
    """
    loaded = _loaded_after(
        "from stepstream.cli.main import build_cli\n"
        "from stepstream.plugins import make_plugin_manager\n"
        "plugins = make_plugin_manager()\n"
        "build_cli(plugins)\n"
        "names = {plugins.get_name(p) for p in plugins.get_plugins()}\n"
        "assert {'server', 'demo', 'webhooks', 'stepstream.stores.sqlite'} <= names"
    )
    assert not {"litestar", "uvicorn", "rich", "anyio", "stepstream.runtime.engine"} & loaded
    assert not {"stepstream_demo.pipelines", "stepstream_webhooks.transport"} & loaded
    assert not {"msgspec", "stepstream.model.events", "stepstream.transports.wire"} & loaded
    implementations = {"stepstream.stores.memory", "stepstream.stores.sqlite", "sqlite3"}
    assert not {*implementations, "stepstream.transports.http"} & loaded


def test_the_built_in_stores_and_transports_load_when_their_schemes_are_asked_for() -> None:
    loaded = _loaded_after(
        "from stepstream.plugins import make_plugin_manager\n"
        "plugins = make_plugin_manager(load_entrypoints=False)\n"
        "from stepstream.stores.memory import MemoryStore\n"
        "from stepstream.stores.sqlite import SqliteStore\n"
        "from stepstream.transports.http import HttpTransport\n"
        "stores, transports = plugins.store_schemes(), plugins.transport_schemes()\n"
        "assert stores['memory'] is MemoryStore and stores['sqlite'] is SqliteStore\n"
        "assert transports['http'] is transports['https'] is HttpTransport"
    )
    assert {"msgspec", "stepstream.stores.sqlite"} <= loaded
