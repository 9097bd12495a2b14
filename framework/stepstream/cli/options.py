"""Options and exits shared by the commands of every distribution (`run` here, `serve`)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from ..errors import PluginConflict

if TYPE_CHECKING:
    from rich.console import Console

    from ..plugins import PluginManager
    from ..runtime.engine import Engine
    from ..transports import Transport


class UsageProblem(click.ClickException):
    """A bad option value: one line on stderr and exit code 2."""

    exit_code = 2


class UrlList(click.ParamType):
    """A URL option that also reads a comma-separated list from its environment variable."""

    name = "URL"
    envvar_list_splitter = ","

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip()
        if not text:
            self.fail("an empty URL", param, ctx)
        return text


def open_transports(plugins: PluginManager, urls: tuple[str, ...]) -> list[Transport]:
    """The transports the URLs name; a bad one is a one-line usage error (exit 2)."""
    from ..transports import TransportError, open_transport

    try:
        schemes = plugins.transport_schemes()
        return [open_transport(url, schemes) for url in urls]
    except (TransportError, PluginConflict) as exc:
        raise UsageProblem(str(exc)) from None


def exit_leaving_abandoned_threads(engine: Engine, code: int, console: Console) -> None:
    """Exit now if a step's thread was abandoned, rather than shut the interpreter down under it."""
    if engine.abandoned_threads:
        console.print(
            f"{engine.abandoned_threads} step thread(s) ignored the cancel and were abandoned; "
            "exiting without waiting for them",
            highlight=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
