"""Built-in sub-commands, registered like any plugin's: `stepstream run`, `stepstream plugins`.

What a command needs only once it runs (the engine, rich, anyio) is imported
inside it, so every `stepstream` command, and `--help`, starts without them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from ..defaults import DEFAULT_CANCEL_GRACE
from ..errors import InputError, PipelineDefinitionError
from ..hookspecs import hookimpl
from .options import UrlList

if TYPE_CHECKING:
    from ..plugins import PluginManager

EXIT_FAILED = 1


class InvalidInputs(click.ClickException):
    """Inputs that do not fit: a usage problem (exit 2), not a failed step (exit 1)."""

    exit_code = 2


def _parse_inputs(pairs: tuple[str, ...], inputs_json: str | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if inputs_json:
        text = inputs_json
        if text.startswith("@"):
            try:
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            except OSError as exc:
                raise click.BadParameter(
                    f"cannot read {text[1:]}: {exc.strerror}", param_hint="'--inputs-json'"
                ) from None
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"not valid JSON ({exc.msg} at char {exc.pos})", param_hint="'--inputs-json'"
            ) from None
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                "must be a JSON object, e.g. '{\"rows\": 100}'", param_hint="'--inputs-json'"
            )
        inputs.update(loaded)
    given: set[str] = set()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'-i'")
        if key in given:
            raise click.BadParameter(
                f"{key!r} is given twice; give each input once", param_hint="'-i'"
            )
        given.add(key)
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw
    return inputs


@click.command()
@click.argument("target")
@click.option(
    "-i",
    "--input",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input; VALUE is read as JSON when it parses (42, true, [1,2]), else as a string.",
)
@click.option(
    "--inputs-json", metavar="JSON|@FILE", help="All inputs as one JSON object, or @file."
)
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Show the failed step's traceback."
)
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_CANCEL_GRACE,
    show_default=True,
    envvar="STEPSTREAM_CANCEL_GRACE",
    metavar="SECONDS",
    help="After Ctrl-C, how long a sync step that makes no Progress call may run on "
    "before it is abandoned.",
)
@click.option(
    "--publish",
    "publish",
    multiple=True,
    type=UrlList(),
    metavar="URL",
    envvar="STEPSTREAM_PUBLISH",
    help="Send the execution's events to URL (http://server:8000, or a transport plugin's "
    "scheme); repeatable, or comma separated in STEPSTREAM_PUBLISH.",
)
@click.option(
    "--publish-timeout",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="At the end, how long to wait for events still on their way to --publish URLs.",
)
@click.pass_obj
def run(
    plugins: PluginManager,
    target: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    show_traceback: bool,
    cancel_grace: float,
    publish: tuple[str, ...],
    publish_timeout: float,
) -> None:
    """Run a pipeline: TARGET is FILE.py:pipeline or module:pipeline."""
    import anyio
    from rich.console import Console

    from ..runtime.engine import Engine
    from ..transports.publisher import publishing
    from .console import ConsoleReporter, tries
    from .loader import LoadError, load_pipeline
    from .options import exit_leaving_abandoned_threads, open_transports
    from .signals import EXIT_INTERRUPTED, cancel_on_interrupt

    try:
        pipeline = load_pipeline(target)
        inputs = _parse_inputs(pairs, inputs_json)
    except (LoadError, PipelineDefinitionError) as exc:
        raise click.ClickException(str(exc)) from None
    try:  # here, before publishing starts: inside its task group the error would come grouped
        pipeline.validate_inputs(inputs)
    except InputError as exc:
        raise InvalidInputs(str(exc)) from None
    transports = open_transports(plugins, publish)
    console = Console(stderr=True)
    engine = Engine(plugins=plugins, cancel_grace=cancel_grace)

    async def main() -> int:
        async with publishing(engine, transports, flush_timeout=publish_timeout) as publishers:
            code = await execute()
        for publisher in publishers:
            if publisher.left or publisher.dropped:
                console.print(
                    f"[yellow]{publisher.left + publisher.dropped} events could not be "
                    f"delivered to {publisher.where}[/]",
                    highlight=False,
                    soft_wrap=True,
                )
        return code

    async def execute() -> int:
        job = engine.create(pipeline, inputs)

        def cancel() -> None:
            console.print(
                "[yellow]cancel requested[/]: the running step stops at its next progress "
                "call (Ctrl-C again to quit now)",
                highlight=False,
                soft_wrap=True,
            )
            job.cancel()

        with ConsoleReporter(engine, console) as reporter:
            async with anyio.create_task_group() as tg:
                await tg.start(cancel_on_interrupt, cancel)
                async with anyio.create_task_group() as drawing:  # ends once the bar is final
                    drawing.start_soon(reporter.follow, job.execution_id)
                    status, error = await engine.execute(job)
                tg.cancel_scope.cancel()
        record = engine.get(job.execution_id)
        if status == "completed":
            click.echo(json.dumps(record.outputs, indent=2, default=repr))
            return 0
        if status == "cancelled":
            why = f": {error.message}" if error else ""
            console.print(f"[yellow]cancelled[/]{why}", highlight=False, soft_wrap=True)
            return EXIT_INTERRUPTED
        assert error is not None
        if show_traceback and error.traceback:
            console.print(error.traceback, markup=False, highlight=False)
        console.print(
            f"[red]step {error.step!r} failed:[/] {error.type}: {error.message}{tries(error)}",
            highlight=False,
        )
        return EXIT_FAILED

    code = anyio.run(main)
    exit_leaving_abandoned_threads(engine, code, console)
    sys.exit(code)


@click.command(name="plugins")
@click.pass_obj
def list_plugins(plugins: PluginManager) -> None:
    """List registered plugins, where each came from and the hooks each implements."""
    from rich.console import Console

    console = Console()
    for name, plugin in sorted(plugins.list_name_plugin(), key=lambda item: str(item[0])):
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in plugins.get_hookcallers(plugin) or ())
        console.print(f"[bold]{name}[/]  ({plugins.origin(name)})", highlight=False, soft_wrap=True)
        console.print(f"  hooks: {', '.join(hooks) or 'none'}", highlight=False, soft_wrap=True)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add `run` and `plugins`."""
    cli.add_command(run)
    cli.add_command(list_plugins)
