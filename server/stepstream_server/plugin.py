"""Registers `stepstream serve`; imports nothing heavy, since every engine loads this plugin."""

from __future__ import annotations

import click

from stepstream import hookimpl

from .serve import serve


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add `serve`."""
    cli.add_command(serve)
