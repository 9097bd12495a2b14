"""`stepstream plugins` shows every plugin, its origin and hooks; plugin commands are added."""

from __future__ import annotations

import re


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


def test_plugins_lists_the_tracker_the_built_ins_and_installed_plugins(cli) -> None:
    result = cli("plugins")
    assert result.returncode == 0, result.stderr
    plugins = _plugins(result.stdout)
    assert plugins["tracker"][0] == "built-in"
    assert {
        "execution_started",
        "step_started",
        "step_progress",
        "step_done",
        "step_failed",
        "execution_finished",
    } <= set(plugins["tracker"][1])
    assert plugins["stepstream.default_commands"] == ("built-in", ["register_commands"])
    assert plugins["stepstream.stores.memory"][0] == "built-in"
    assert "register_stores" in plugins["stepstream.stores.memory"][1]
    assert plugins["testplugin"] == (
        "stepstream-testplugin 0.0.1",
        ["execution_finished", "execution_started", "register_commands"],
    )


def test_a_plugins_command_is_available(cli) -> None:
    result = cli("hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from stepstream-testplugin"
    listed = cli("--help")
    assert re.search(r"^\s+hello\s", listed.stdout, re.MULTILINE)
    assert re.search(r"^\s+run\s", listed.stdout, re.MULTILINE)
    assert re.search(r"^\s+plugins\s", listed.stdout, re.MULTILINE)


def test_version_is_reported(cli) -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert "0.1.0" in result.stdout
