"""`stepstream plugins` shows every plugin, its origin and hooks; plugin commands are added."""

from __future__ import annotations

import os
import re
from pathlib import Path


def _plugins(output: str) -> dict[str, tuple[str, list[str]]]:
    """Parse `name  (origin)` headers and their (possibly wrapped) `hooks:` lines."""
    entries: dict[str, tuple[str, list[str]]] = {}
    blocks = re.split(r"\n(?=\S)", output.strip())
    for block in blocks:
        text = " ".join(block.split())
        match = re.fullmatch(r"(\S+) \((.+?)\) hooks: (.+)", text)
        assert match, f"unexpected plugin entry: {block!r}"
        name, origin, hooks = match.groups()
        entries[name] = (origin, [] if hooks == "none" else hooks.split(", "))
    return entries


def _with_test_plugin(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def test_plugins_lists_the_built_ins_and_installed_plugins(cli, test_plugin_site: Path) -> None:
    result = cli("plugins", env=_with_test_plugin(test_plugin_site))
    assert result.returncode == 0, result.stderr
    plugins = _plugins(result.stdout)
    assert plugins["stepstream.cli.commands"] == ("built-in", ["register_commands"])
    assert plugins["stepstream.cli.remote"] == ("built-in", ["register_commands"])
    assert plugins["stepstream.stores.memory"][0] == "built-in"
    assert "register_stores" in plugins["stepstream.stores.memory"][1]
    assert plugins["demo"] == ("stepstream-demo 0.1.0", ["register_pipelines"])
    assert plugins["server"] == ("stepstream-server 0.1.0", ["register_commands"])
    assert plugins["testplugin"] == (
        "stepstream-testplugin 0.0.1",
        ["execution_finished", "execution_started", "register_commands"],
    )


def test_a_plugins_command_is_available(cli, test_plugin_site: Path) -> None:
    env = _with_test_plugin(test_plugin_site)
    result = cli("hello", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from stepstream-testplugin"
    listed = cli("--help", env=env)
    assert re.search(r"^\s+hello\s", listed.stdout, re.MULTILINE)
    assert re.search(r"^\s+run\s", listed.stdout, re.MULTILINE)
    assert re.search(r"^\s+plugins\s", listed.stdout, re.MULTILINE)


def test_the_default_environment_shows_users_no_test_command(cli) -> None:
    listed = cli("--help")
    assert listed.returncode == 0, listed.stderr
    commands = re.findall(r"^  (\S+)\s", listed.stdout.split("Commands:")[1], re.MULTILINE)
    built_in = ["cancel", "logs", "ls", "pipelines", "plugins", "run", "show", "submit", "watch"]
    assert sorted(commands) == sorted([*built_in, "serve"])
    assert "testplugin" not in cli("plugins").stdout


def test_version_is_reported(cli) -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert "0.1.0" in result.stdout
