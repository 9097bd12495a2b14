"""A third-party plugin as users write them: it records what it sees and adds a command."""

from __future__ import annotations

import click

from stepstream import hookimpl

SEEN: list[tuple[str, str]] = []


@hookimpl
def execution_started(execution_id: str) -> None:
    """Remember each start."""
    SEEN.append(("execution_started", execution_id))


@hookimpl
def execution_finished(execution_id: str, status: str) -> None:
    """Remember each end with its status."""
    SEEN.append((f"execution_finished:{status}", execution_id))


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add `stepstream hello`."""

    @cli.command()
    def hello() -> None:
        """Prove that plugin commands are discovered."""
        click.echo("hello from stepstream-testplugin")
