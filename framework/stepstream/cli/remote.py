"""Commands that talk to a stepstream server: `submit`, `watch`, `ls`, `show`, `cancel`,
`logs`, and `pipelines` (of a server, or of a file or module).

They find the server with `--url` (or STEPSTREAM_URL) and read its token from
STEPSTREAM_TOKEN or `--token-file`, never from the command line, where other
users of the machine could read it. Anything the server cannot do, or a server
that is not there, is one line on stderr and exit code 2. The client, and with
it httpx, is imported only when one of these commands runs; so is what only
some of them need (anyio, the console's bars, the loader).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import PipelineDefinitionError, ServerUnavailable, StepstreamError
from ..hookspecs import hookimpl
from .commands import _parse_inputs

if TYPE_CHECKING:
    from rich.console import Console

    from ..client import Client, LogPage, PipelineInfo
    from ..model.events import ExecutionRecord, Status

DEFAULT_URL = "http://127.0.0.1:8000"  # stepstream.client.DEFAULT_URL, without importing httpx
URL_ENV = "STEPSTREAM_URL"
TOKEN_ENV = "STEPSTREAM_TOKEN"
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FOLLOW_INTERVAL = 0.5  # seconds between two reads of the logs with `logs --follow`
COLOURS = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


def _console(**options: Any) -> Console:
    """A rich console: rich loads when a command prints, not for `stepstream --help`."""
    from rich.console import Console

    return Console(**options)


def _escape(text: str) -> str:
    """Text shown as it is, not read as rich markup."""
    from rich.markup import escape

    return escape(text)


class ServerProblem(click.ClickException):
    """The server is not there, refused us, or cannot do what was asked: exit code 2."""

    exit_code = 2


def _message(error: StepstreamError, url: str) -> str:
    if isinstance(error, ServerUnavailable):
        if error.status is None:
            return (
                f"{error}; start it with 'stepstream serve' or set --url/{URL_ENV}"
                if "refused" in error.detail
                else f"{error}; is the server at --url/{URL_ENV} running?"
            )
        if error.status == 401:
            return (
                f"the stepstream server at {url} refused the request ({error.detail}); "
                f"set {TOKEN_ENV} (or --token-file) to the server's token"
            )
    return str(error)


def _token(token_file: Path | None) -> str | None:
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        return token_file.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {token_file}: {exc.strerror}", param_hint="'--token-file'"
        ) from None


@contextmanager
def _server(url: str, token_file: Path | None) -> Iterator[Client]:
    """A client for the server; its errors leave as one line and exit code 2."""
    from ..client import Client

    try:
        client = Client(url, _token(token_file))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url'") from None
    try:
        with client:
            yield client
    except StepstreamError as exc:
        raise ServerProblem(_message(exc, client.url)) from None


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--url` and `--token-file`, shared by every command that talks to a server."""
    command = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Read the server's token from this file (default: ${TOKEN_ENV}).",
    )(command)
    return click.option(
        "--url",
        envvar=URL_ENV,
        default=DEFAULT_URL,
        show_default=True,
        help=f"The server's URL (or ${URL_ENV}).",
    )(command)


def _watch(
    url: str, token_file: Path | None, ids: list[str] | None, *, print_outputs: bool = False
) -> int:
    """Draw the executions until they end; the exit code of `watch`."""
    import anyio

    from ..client import AsyncClient
    from .watching import watch_executions

    console = _console(stderr=True)

    async def main() -> int:
        async with AsyncClient(url, _token(token_file)) as client:
            code, outcomes = await watch_executions(client, ids, console)
            if print_outputs and ids and outcomes.get(ids[0]) == "completed":
                # From the record: a watch that began after the end has no CompletedEvent.
                outputs = (await client.get(ids[0])).outputs
                click.echo(json.dumps(outputs, indent=2, default=repr))
        return code

    try:
        return anyio.run(main)
    except StepstreamError as exc:
        raise ServerProblem(_message(exc, url)) from None
    except BaseExceptionGroup as group:  # from the task groups that draw the streams
        matched, _ = group.split(StepstreamError)
        if matched is None:
            raise
        error = _leaves(matched)[0]
        raise ServerProblem(_message(error, url)) from None


def _leaves(group: BaseExceptionGroup[Any]) -> list[Any]:
    return [
        leaf
        for exc in group.exceptions
        for leaf in (_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    ]


@click.command()
@click.argument("pipeline")
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
    "--watch",
    "follow",
    is_flag=True,
    help="Follow it with a progress bar, then print its outputs; exit code as `watch`.",
)
@server_options
def submit(
    pipeline: str,
    pairs: tuple[str, ...],
    inputs_json: str | None,
    follow: bool,
    url: str,
    token_file: Path | None,
) -> None:
    """Start PIPELINE on the server and print the execution's id."""
    inputs = _parse_inputs(pairs, inputs_json)
    with _server(url, token_file) as client:
        record = client.submit(pipeline, **inputs)
    if not follow:
        click.echo(record.execution_id)
        return
    click.echo(f"started {record.execution_id} ({record.pipeline})", err=True)
    sys.exit(_watch(url, token_file, [record.execution_id], print_outputs=True))


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@server_options
def watch(ids: tuple[str, ...], url: str, token_file: Path | None) -> None:
    """Progress bars for executions on the server until they end.

    Without IDs, every pending or running execution, and those that start
    meanwhile. Exit code 0 when all completed, 1 when any failed, 130 when any
    was cancelled or on Ctrl-C (which stops watching, not the executions).
    """
    wanted = list(dict.fromkeys(ids))
    with _server(url, token_file) as client:
        for execution_id in wanted:
            client.get(execution_id)  # an unknown id is an error, not a bar that never moves
    sys.exit(_watch(url, token_file, wanted or None))


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _took(record: ExecutionRecord) -> str:
    if record.started_at is None:
        return ""
    end = record.finished_at or datetime.now(record.started_at.tzinfo)
    return f"{(end - record.started_at).total_seconds():.1f}s"


def _progress_text(record: ExecutionRecord) -> str:
    progress = record.progress
    if progress is None:
        return ""
    where = f"{progress.current_step + 1}/{progress.total_steps}"
    if not record.finished and progress.current_step_name:
        where += f" {progress.current_step_name}"
    return f"{progress.percentage:5.1f}%  step {where}"


def _percent(record: ExecutionRecord) -> str:
    """`42.0% processing` while it runs, `100.0%` once done, blank without progress."""
    progress = record.progress
    if progress is None:
        return ""
    step = progress.current_step_name if not record.finished else None
    return f"{progress.percentage:5.1f}%" + (f" {step}" if step else "")


def _table_console() -> Console:
    """stdout; piped with no COLUMNS, wide enough that rows are never cut (rich assumes 80)."""
    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return _console(width=200 if wide else None)


def _status_text(status: str) -> str:
    colour = COLOURS.get(status)
    return f"[{colour}]{status}[/]" if colour else status


@click.command(name="ls")
@click.option("--status", type=click.Choice(STATUSES), help="Only executions with this status.")
@click.option("--pipeline", help="Only executions of this pipeline.")
@click.option(
    "--limit", type=click.IntRange(1, 200), default=20, show_default=True, help="How many."
)
@server_options
def list_executions(
    status: Status | None, pipeline: str | None, limit: int, url: str, token_file: Path | None
) -> None:
    """List the server's executions, newest first."""
    from rich.table import Table

    with _server(url, token_file) as client:
        page = client.list(status=status, pipeline=pipeline, limit=limit)
    console = _table_console()
    if not page.items:
        console.print("no executions", highlight=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=len(page.items[0].execution_id))
    table.add_column("PIPELINE", no_wrap=True, overflow="ellipsis")
    table.add_column("STATUS", no_wrap=True, min_width=9)
    table.add_column("PROGRESS", no_wrap=True, overflow="ellipsis")
    table.add_column("CREATED", no_wrap=True, overflow="ellipsis")
    table.add_column("TOOK", no_wrap=True, justify="right")
    for record in page.items:
        table.add_row(
            record.execution_id,
            _escape(record.pipeline),
            _status_text(record.status),
            _escape(_percent(record)),
            _when(record.created_at),
            _took(record),
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"[dim]the newest {limit} shown; --limit shows more[/]", highlight=False)


@click.command()
@click.argument("execution_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show a failed step's traceback.")
@server_options
def show(
    execution_id: str, as_json: bool, show_traceback: bool, url: str, token_file: Path | None
) -> None:
    """Show an execution: status, progress, steps, error and outputs."""
    import msgspec
    from rich.table import Table

    from ..model.events import encode
    from .console import tries

    with _server(url, token_file) as client:
        record = client.get(execution_id)
    if as_json:
        click.echo(msgspec.json.format(encode(record), indent=2).decode())
        return
    console = _console(highlight=False)
    console.print(
        f"[bold]{record.execution_id}[/]  {_escape(record.pipeline)}  {_status_text(record.status)}"
    )
    facts = Table.grid(padding=(0, 2))
    facts.add_row("created", _when(record.created_at))
    if record.started_at:
        facts.add_row("started", _when(record.started_at))
    if record.finished_at:
        facts.add_row("finished", f"{_when(record.finished_at)}  (took {_took(record)})")
    if record.progress:
        facts.add_row("progress", _escape(_progress_text(record)))
    facts.add_row("inputs", _escape(json.dumps(record.inputs, default=repr)))
    console.print(facts)
    steps = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("#", "STEP", "STATUS", "TOOK", "ITEMS"):
        steps.add_column(name, no_wrap=True)
    for step in record.steps:
        items = f"{step.items_done}/{step.items_total}" if step.items_done is not None else ""
        took = f"{step.duration_seconds:.1f}s" if step.duration_seconds is not None else ""
        steps.add_row(
            str(step.index), _escape(step.name), _status_text(step.status), took, items.rstrip("/")
        )
    console.print(steps)
    if record.error is not None:
        error = record.error
        if show_traceback and error.traceback:
            console.print(error.traceback, markup=False)
        console.print(
            f"[red]step {error.step!r} failed:[/] {_escape(error.type)}: {_escape(error.message)}"
            f"{tries(error)}"
        )
    if record.status == "completed":
        console.print("outputs")
        click.echo(json.dumps(record.outputs, indent=2, default=repr))


@click.command()
@click.argument("execution_id", metavar="ID")
@server_options
def cancel(execution_id: str, url: str, token_file: Path | None) -> None:
    """Cancel an execution: a pending one at once, a running one at its step's next checkpoint."""
    with _server(url, token_file) as client:
        record = client.cancel(execution_id)
    if record.finished:
        click.echo(f"{execution_id} {record.status}")
    else:
        click.echo(f"{execution_id} cancelling ({record.status}: it stops at its next checkpoint)")


@click.command()
@click.argument("execution_id", metavar="ID")
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Go on printing new lines until the execution ends; exit code as `watch`.",
)
@server_options
def logs(execution_id: str, follow: bool, url: str, token_file: Path | None) -> None:
    """Print what an execution's steps printed and logged: time, step, level, message.

    The server keeps each execution's last lines (`serve --keep-log-lines`).
    """
    from .signals import EXIT_INTERRUPTED
    from .watching import exit_code

    console = _console(highlight=False, soft_wrap=True)
    with _server(url, token_file) as client:
        after = _print_lines(console, client.logs(execution_id))
        if not follow:
            return
        try:
            while not (record := client.get(execution_id)).finished:
                after = _print_lines(console, client.logs(execution_id, after))
                time.sleep(FOLLOW_INTERVAL)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)  # stops following, not the execution
        _print_lines(console, client.logs(execution_id, after))  # the lines of its ending
    sys.exit(exit_code({execution_id: record.status}))


def _print_lines(console: Console, page: LogPage) -> int:
    """Print a page of lines; the number to read on from."""
    for line in page.lines:
        when = line.at.astimezone().strftime("%H:%M:%S")
        parts = [when, line.step, line.level or (line.stream if line.stream != "log" else None)]
        prefix = " ".join(p for p in parts if p)
        console.print(f"[dim]{_escape(prefix)}[/] {_escape(line.message)}")
    return page.next_after


def _described(target: str) -> list[PipelineInfo]:
    from ..client import PipelineInfo, StepInfo
    from .loader import LoadError, load_pipelines

    try:
        pipelines = load_pipelines(target)
        return [
            PipelineInfo(
                name=p.name,
                description=p.description,
                steps=[StepInfo(name=s.name, weight=s.weight) for s in p.steps],
                input_schema=p.input_schema(),
            )
            for p in pipelines
        ]
    except (LoadError, PipelineDefinitionError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command(name="pipelines")
@click.argument("target", required=False)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the server's token from this file (default: ${TOKEN_ENV}).",
)
def list_pipelines(target: str | None, token_file: Path | None) -> None:
    """List pipelines and their inputs (name, type, default).

    TARGET is a server's http(s):// URL (default: ${STEPSTREAM_URL}, else
    http://127.0.0.1:8000), or a FILE.py or module, as `stepstream run` takes it.
    """
    target = target or os.environ.get(URL_ENV) or DEFAULT_URL
    if target.startswith(("http://", "https://")):
        with _server(target, token_file) as client:
            pipelines = client.pipelines()
    else:
        pipelines = _described(target)
    console = _console(highlight=False)
    for index, pipeline in enumerate(pipelines):
        if index:
            console.print()
        about = f"  {_escape(pipeline.description)}" if pipeline.description else ""
        console.print(f"[bold]{_escape(pipeline.name)}[/]{about}")
        console.print(f"  steps: {_escape(', '.join(s.name for s in pipeline.steps))}")
        if not pipeline.inputs:
            console.print("  inputs: none")
            continue
        rows = [("INPUT", "TYPE", "DEFAULT")] + [
            (
                item.name,
                item.type,
                "(required)" if item.required else json.dumps(item.default, default=repr),
            )
            for item in pipeline.inputs
        ]
        for line in _aligned(rows):
            console.print(f"  {_escape(line)}", soft_wrap=True)


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Columns two spaces apart, with no trailing blanks for whoever reads the output."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add `submit`, `watch`, `ls`, `show`, `cancel`, `logs` and `pipelines`."""
    for command in (submit, watch, list_executions, show, cancel, logs, list_pipelines):
        cli.add_command(command)
