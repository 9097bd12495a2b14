"""`stepstream serve`: the progress server, with the pipelines you name and those plugins ship."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stepstream import (
    DEFAULT_CANCEL_GRACE,
    DEFAULT_LOG_LINES,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_PROGRESS_INTERVAL,
    PipelineDefinitionError,
    PluginConflict,
    StoreError,
)
from stepstream.cli import (
    UrlList,
    exit_leaving_abandoned_threads,
    open_transports,
)
from stepstream.transports import ReadableTransport, Transport, redacted

from .hosts import LOOPBACK_HOSTS, allowed_host, allowed_origin
from .retention import PRUNE_INTERVAL, Retention

if TYPE_CHECKING:
    from stepstream import Engine, ExecutionStore, Pipeline, PluginManager

# The web framework, the runtime, the pipeline loader and rich load in the functions
# that use them: every `stepstream` command, `--help` included, loads this module.

DEFAULT_STORE = "sqlite:///stepstream.db"
DEFAULT_STALE_AFTER = 120.0
TOKEN_ENV = "STEPSTREAM_TOKEN"
ALL_INTERFACES = ("0.0.0.0", "::", "")


class UsageProblem(click.ClickException):
    """A bad option value: one line on stderr and exit code 2, no traceback."""

    exit_code = 2


class AllowedHostParam(click.ParamType):
    """`--allow-host example.com`, `--allow-host 10.0.0.5:8000`, `--allow-host '*'`."""

    name = "HOST"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            return allowed_host(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AllowedOriginParam(click.ParamType):
    """`--allow-origin https://app.example.com`."""

    name = "ORIGIN"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            return allowed_origin(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class KeepParam(click.ParamType):
    """`--keep 1000`, `--keep 7d` or `--keep 1000,30d`."""

    name = "COUNT,AGE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Retention:
        if isinstance(value, Retention):
            return value
        try:
            return Retention.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _pipelines(plugins: PluginManager, targets: tuple[str, ...]) -> list[Pipeline]:
    """The user's pipelines first, then each plugin's pipeline whose name is still free.

    Two of the user's pipelines with one name are refused by `Engine.add_pipeline`,
    two plugins offering one name by PluginConflict.
    """
    from stepstream.cli import LoadError, load_pipelines

    found: list[Pipeline] = []
    for target in targets:
        try:
            found.extend(load_pipelines(target))
        except LoadError as exc:
            raise UsageProblem(str(exc)) from None
    taken = {pipeline.name for pipeline in found}
    offered = plugins.pipelines()
    try:
        return [*found, *(offered[name] for name in sorted(offered) if name not in taken)]
    except PluginConflict as exc:
        raise UsageProblem(str(exc)) from None


def _engine(
    plugins: PluginManager, pipelines: list[Pipeline], store: str, **options: Any
) -> Engine:
    from stepstream import Engine

    try:
        engine = Engine(plugins=plugins, store=store, **options)
        for pipeline in pipelines:
            engine.add_pipeline(pipeline)
    except (StoreError, PipelineDefinitionError, PluginConflict) as exc:
        raise UsageProblem(str(exc)) from None
    return engine


def _token(given: str | None, path: Path | None) -> str | None:
    """The token from --token, --token-file or STEPSTREAM_TOKEN (in that order), checked.

    An empty one is refused rather than taken as "no token", which used to turn
    authentication off without a word.
    """
    if given is not None and path is not None:
        raise UsageProblem("give --token or --token-file, not both")
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            raise UsageProblem(f"cannot read --token-file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageProblem(f"--token-file {path} is not UTF-8 text") from None
        source = f"--token-file {path}"
    elif given is not None:
        click.echo(
            "warning: a --token on the command line can be read by every user of this machine "
            f"(ps, /proc); pass it in {TOKEN_ENV} or with --token-file instead",
            err=True,
        )
        token, source = given, "--token"
    elif TOKEN_ENV in os.environ:
        token, source = os.environ[TOKEN_ENV], TOKEN_ENV
    else:
        return None
    from .auth import token_problem

    problem = token_problem(token)
    if problem is not None:
        raise UsageProblem(f"the token from {source} {problem}")
    return token


def _check_store(store: ExecutionStore) -> None:
    """Read what the engine's recovery reads, so a damaged file stops the start with one line."""
    try:
        store.unfinished()
        store.list(limit=1)
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None


def _store_url(url: str, store: ExecutionStore) -> str:
    """The store's URL with its file made absolute, so the line says which file is in use."""
    path = getattr(store, "path", None)
    return f"{url.partition('://')[0]}:///{path}" if path else url


def _announce(url: str, engine: Engine, store_url: str, retention: Retention | None) -> None:
    click.echo(f"stepstream serving on {url}")
    kept = f" (keeping {retention})" if retention else ""
    click.echo(f"store: {store_url}{kept}")
    click.echo("pipelines:")
    for name in sorted(engine.pipelines):
        pipeline = engine.pipelines[name]
        steps = len(pipeline.steps)
        about = f" - {pipeline.description}" if pipeline.description else ""
        click.echo(f"  {name} ({steps} step{'s' if steps != 1 else ''}){about}")


@dataclass(frozen=True)
class Sites:
    """The Host names the server answers for and the other sites' origins it lets in."""

    hosts: tuple[str, ...]
    origins: tuple[str, ...]


def _allowed_hosts(host: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """The loopback names, the address it listens on (when it names one), and `--allow-host`."""
    try:
        own = () if host in ALL_INTERFACES else (allowed_host(host),)
    except ValueError:  # not a name a client could send; binding to it reports the error
        own = ()
    return tuple(dict.fromkeys([*LOOPBACK_HOSTS, *own, *extra]))


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--pipelines",
    "targets",
    multiple=True,
    metavar="TARGET",
    help="FILE.py, module or module:pipeline whose pipelines to serve; repeatable.",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    default=None,
    help="Run at most N executions at once; the rest wait as pending, first in first out.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Require 'Authorization: Bearer TOKEN' (or ?token= on WebSockets), TOKEN being this "
    "file's content (one trailing newline ignored). Or set it in the environment: "
    f"{TOKEN_ENV}=TOKEN.",
)
@click.option(
    "--token",
    default=None,
    help=f"The same, TOKEN given here: other users can read it with ps; prefer {TOKEN_ENV} "
    "or --token-file.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    type=AllowedHostParam(),
    help="Also answer requests whose Host header names HOST (a name or address, optionally "
    "with :PORT), besides localhost, 127.0.0.1, [::1] and --host; repeatable; '*' for any. "
    "Others get 403, so web pages cannot reach the server through DNS rebinding.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    type=AllowedOriginParam(),
    help="Let web pages of ORIGIN (https://app.example.com) use the API and the WebSockets "
    "(with CORS); repeatable. Pages of other sites can neither change anything, open a "
    "WebSocket, nor read an answer; clients that are not browsers are not affected.",
)
@click.option(
    "--store",
    metavar="URL",
    default=DEFAULT_STORE,
    show_default=True,
    help="Where executions are kept: sqlite:///relative.db, sqlite:////absolute.db, memory://.",
)
@click.option(
    "--keep",
    "retention",
    type=KeepParam(),
    default=None,
    help="Prune older finished executions: a count (1000), an age (7d; s, m, h, d) or both "
    "(1000,30d). Running and pending ones are always kept.",
)
@click.option(
    "--prune-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=PRUNE_INTERVAL,
    show_default=True,
    help="Seconds between two prunings with --keep (it also prunes once at start).",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0),
    default=DEFAULT_PROGRESS_INTERVAL,
    show_default=True,
    help="Seconds between progress events of a running step.",
)
@click.option(
    "--publish",
    multiple=True,
    type=UrlList(),
    metavar="URL",
    envvar="STEPSTREAM_PUBLISH",
    help="Send the events of what this server runs to URL (another server's http://, a "
    "broker); repeatable, or comma separated in STEPSTREAM_PUBLISH.",
)
@click.option(
    "--subscribe",
    multiple=True,
    type=UrlList(),
    metavar="URL",
    envvar="STEPSTREAM_SUBSCRIBE",
    help="Receive executions run elsewhere from URL (a broker a transport plugin reads); "
    "they show here like local ones. Repeatable, or comma separated in STEPSTREAM_SUBSCRIBE.",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_STALE_AFTER,
    show_default=True,
    metavar="SECONDS",
    help="Mark an execution run elsewhere failed once nothing was heard from its worker "
    "for this long (a publishing worker repeats itself every 15 s while it lives).",
)
@click.option(
    "--max-output-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_OUTPUT_BYTES,
    show_default=True,
    metavar="BYTES",
    help="Outputs larger than this (as JSON) are replaced by a marker saying so.",
)
@click.option(
    "--cancel-grace",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_CANCEL_GRACE,
    show_default=True,
    metavar="SECONDS",
    help="How long a cancelled sync step that makes no Progress call may run on before it "
    "is abandoned (its execution ends cancelled, its slot is freed).",
)
@click.option(
    "--keep-log-lines",
    type=click.IntRange(min=1),
    default=DEFAULT_LOG_LINES,
    show_default=True,
    metavar="N",
    help="What steps print and log is kept per execution: its last N lines.",
)
@click.pass_obj
def serve(
    plugins: PluginManager,
    host: str,
    port: int,
    targets: tuple[str, ...],
    max_concurrent: int | None,
    token_file: Path | None,
    token: str | None,
    allow_hosts: tuple[str, ...],
    allow_origins: tuple[str, ...],
    store: str,
    retention: Retention | None,
    prune_interval: float,
    progress_interval: float,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    stale_after: float,
    max_output_bytes: int,
    cancel_grace: float,
    keep_log_lines: int,
) -> None:
    """Serve the progress API (REST and WebSocket) and run executions; Ctrl-C stops gracefully.

    Without a token (STEPSTREAM_TOKEN, --token-file or --token) anyone who can reach the
    port can use the API: by default only this machine, and only pages of its own site.
    """
    token = _token(token, token_file)
    sites = Sites(hosts=_allowed_hosts(host, allow_hosts), origins=allow_origins)
    transports = Transports(
        publish=open_transports(plugins, publish),
        subscribe=_readable(open_transports(plugins, subscribe)),
    )
    engine = _engine(
        plugins,
        _pipelines(plugins, targets),
        store,
        max_concurrent=max_concurrent,
        progress_interval=progress_interval,
        stale_after=stale_after,
        max_output_bytes=max_output_bytes,
        cancel_grace=cancel_grace,
        keep_log_lines=keep_log_lines,
    )
    opened = engine.store
    recovered = False
    try:
        _check_store(opened)
        _recover(engine)
        recovered = True
        _serve(
            engine,
            host,
            port,
            token,
            sites,
            transports,
            _store_url(store, opened),
            retention,
            prune_interval,
        )
    finally:
        _close(opened, quiet=not recovered)
    from rich.console import Console

    exit_leaving_abandoned_threads(engine, 0, Console(stderr=True))


@dataclass(frozen=True)
class Transports:
    """Where the server sends what it runs, and where it receives what runs elsewhere."""

    publish: list[Transport]
    subscribe: list[ReadableTransport]


def _readable(transports: list[Transport]) -> list[ReadableTransport]:
    """The transports --subscribe names, each one that can be read; else a usage error."""
    for transport in transports:
        if not isinstance(transport, ReadableTransport):
            raise UsageProblem(
                f"{redacted(transport.url)} can only be published to, not subscribed to; "
                "--subscribe takes a broker a transport plugin reads (e.g. redis://)"
            )
    return transports  # type: ignore[return-value]


def _recover(engine: Engine) -> None:
    """Settle what the last run left (end or requeue its executions) before serving anything.

    It writes to the store, so a full disk or a read-only file shows here: one line and
    exit 2, not a traceback from the app's startup. What the store logs meanwhile (a
    failed write, retried) is held back, and shown only if recovery succeeds or with -v;
    on failure the store is closed while still held, so its writer's retries stay quiet.
    """
    with HeldLogs() as held:
        try:
            engine.recover()
        except StoreError as exc:
            with contextlib.suppress(StoreError):
                engine.store.close()
            held.release(only_if_verbose=True)
            raise UsageProblem(
                f"{exc}; the server did not start, as it could not record how the executions "
                "of the last run ended: make the store writable (free some space), then start "
                "it again"
            ) from None
        held.release()


def _close(store: ExecutionStore, *, quiet: bool) -> None:
    """Close the store last, after the engine stopped, so its `cancelled` records are kept.

    `quiet` when the start already failed: the one line said why, and a store that
    cannot write cannot flush on close either.
    """
    if not quiet:
        try:
            store.close()
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        return
    with HeldLogs() as held, contextlib.suppress(StoreError):
        store.close()
    held.release(only_if_verbose=True)


class HeldLogs(logging.Filter):
    """While active, holds back what reaches the root logger's handlers; `release` writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._handlers: list[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(r is record for r in self.records):  # each handler sees a record once
            self.records.append(record)
        return False

    def __enter__(self) -> HeldLogs:
        self._handlers = list(logging.getLogger().handlers)
        for handler in self._handlers:
            handler.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)

    def release(self, *, only_if_verbose: bool = False) -> None:
        """Write the held records (only at -v's level, INFO, or finer if `only_if_verbose`)."""
        records, self.records = self.records, []
        verbose = any(h.level <= logging.INFO for h in self._handlers)  # -v, see cli.main
        if only_if_verbose and not verbose:
            return
        for handler in self._handlers:
            handler.removeFilter(self)
            for record in records:
                if record.levelno >= handler.level:
                    handler.handle(record)


def _serve(
    engine: Engine,
    host: str,
    port: int,
    token: str | None,
    sites: Sites,
    transports: Transports,
    store_url: str,
    retention: Retention | None,
    prune_interval: float,
) -> None:
    from .app import create_app
    from .serving import bind, run

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    url = _url(host, sock.getsockname()[1])
    running: list[str] = []

    def on_stop() -> None:
        running.extend(r.execution_id for r in engine.list(status="running", limit=10_000))
        click.echo("stopping: cancelling running executions (Ctrl-C again to quit now)", err=True)

    app = create_app(
        engine,
        token=token,
        retention=retention,
        prune_interval=prune_interval,
        allowed_hosts=sites.hosts,
        allowed_origins=sites.origins,
        publish=transports.publish,
        subscribe=transports.subscribe,
    )
    if host in ALL_INTERFACES and sites.hosts == _allowed_hosts(host, ()):
        click.echo(
            f"note: listening on all interfaces, but only requests for "
            f"{', '.join(LOOPBACK_HOSTS)} are answered; add --allow-host NAME for each name "
            "or address clients use (--allow-host '*' for any)",
            err=True,
        )
    if not run(app, sock, lambda: _announce(url, engine, store_url, retention), on_stop):
        raise click.ClickException("the server failed to start; run with -v for details")
    cancelled = sum(1 for i in running if engine.get(i).status == "cancelled")
    click.echo(f"stopped: {cancelled} of {len(running)} running executions cancelled", err=True)
