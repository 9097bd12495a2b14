"""The `stepstream` command; every sub-command, built-in or not, arrives via `register_commands`."""

from __future__ import annotations

import logging

import click

from ..plugins import PluginManager, make_plugin_manager


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stepstream")
@click.option("-v", "--verbose", is_flag=True, help="Log plugin and server details to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Run pipelines and watch their progress."""
    from ..tracking import logs  # here: `stepstream --help` needs no event loop

    # The root logger lets INFO through, so a step's `logger.info(...)` is captured with
    # its execution; the console handler shows warnings only, unless -v.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
        handler.addFilter(logs.outside_steps)


def build_cli(plugins: PluginManager | None = None) -> click.Group:
    """The command group with each plugin's commands added."""
    plugins = plugins or make_plugin_manager()
    cli.context_settings["obj"] = plugins
    plugins.relay.register_commands(cli=cli)  # isolated: a broken plugin loses only its commands
    return cli


def main() -> None:
    """Console-script entry point."""
    build_cli()(prog_name="stepstream")
