"""Bars for executions on a server, drawn from its watch stream: `stepstream watch` and
`stepstream submit --watch`."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID

from ..model.events import (
    FINISHED,
    AnyEvent,
    CancelledEvent,
    CompletedEvent,
    ErrorEvent,
    ErrorInfo,
    FailedEvent,
    ProgressSnapshot,
    StatusEvent,
)
from .console import bar_fields, progress_bars
from .signals import EXIT_INTERRUPTED, cancel_on_interrupt

if TYPE_CHECKING:
    from ..client import AsyncClient, AsyncEventStream

EXIT_FAILED = 1
SHORT_ID = 6  # ids end in random characters: the last few tell executions apart on screen


class RemoteBars:
    """A bar per execution, updated from its events; a line for each one that ends."""

    def __init__(self, console: Console, *, short_ids: bool = True) -> None:
        self.console = console
        self.short_ids = short_ids  # tell bars of one pipeline apart by their ids' ends
        self.bars = progress_bars(console)
        self._tasks: dict[str, TaskID] = {}
        self._progress: dict[str, ProgressSnapshot | None] = {}
        self._pipelines: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}  # execution id -> how it ended

    def __enter__(self) -> RemoteBars:
        self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bars.stop()

    def show(self, event: AnyEvent, error: ErrorInfo | None = None) -> None:
        """Draw what the event says about its execution; `error` for a status saying it failed."""
        if isinstance(event, ErrorEvent):
            return
        execution_id = event.execution_id
        if isinstance(event, StatusEvent):
            self._pipelines.setdefault(execution_id, event.pipeline)
        if execution_id not in self._tasks:
            label = self._pipelines.get(execution_id, "?")
            if self.short_ids:
                label = f"{label} {execution_id[-SHORT_ID:]}"
            self._tasks[execution_id] = self.bars.add_task(
                "pending", total=100, pipeline=escape(label), items_done=None, items_total=None
            )
        progress = getattr(event, "progress", None) or self._progress.get(execution_id)
        self._progress[execution_id] = progress
        status = _status(event)
        self.bars.update(
            self._tasks[execution_id], **bar_fields(status, progress, status in FINISHED)
        )
        if status in FINISHED:
            self._ended(execution_id, status, event, error)

    def _ended(
        self, execution_id: str, status: str, event: AnyEvent, error: ErrorInfo | None
    ) -> None:
        if execution_id in self.outcomes:
            return
        self.outcomes[execution_id] = status
        who = f"{execution_id} {escape(self._pipelines.get(execution_id, '?'))}"
        if isinstance(event, FailedEvent):
            error = event.error
        if error is not None:
            self.console.print(
                f"{who} [red]failed:[/] step {error.step!r} failed: "
                f"{escape(error.type)}: {escape(error.message)}",
                highlight=False,
                soft_wrap=True,  # one line per execution, whatever its length
            )
            return
        reason = getattr(event, "reason", None)
        colour = {"completed": "green", "failed": "red"}.get(status, "yellow")
        because = f" ({escape(reason)})" if reason else ""
        self.console.print(f"{who} [{colour}]{status}[/]{because}", highlight=False, soft_wrap=True)


def _status(event: AnyEvent) -> str:
    if isinstance(event, StatusEvent):
        return event.status
    if isinstance(event, CompletedEvent):
        return "completed"
    if isinstance(event, FailedEvent):
        return "failed"
    if isinstance(event, CancelledEvent):
        return "cancelled"
    return "running"


def exit_code(outcomes: dict[str, str]) -> int:
    """0 when every execution completed, 1 when any failed, 130 when any was cancelled."""
    statuses = set(outcomes.values())
    if "failed" in statuses:
        return EXIT_FAILED
    if "cancelled" in statuses:
        return EXIT_INTERRUPTED
    return 0


async def watch_executions(
    client: AsyncClient, ids: list[str] | None, console: Console
) -> tuple[int, dict[str, str]]:
    """Draw the listed executions, or every unfinished one and those that start meanwhile,
    until all have ended; the exit code, and how each one ended. Ctrl-C stops watching
    (130); the executions go on on the server."""
    interrupted = False
    with RemoteBars(console, short_ids=ids is None or len(ids) > 1) as bars:
        async with anyio.create_task_group() as group:

            def interrupt() -> None:
                nonlocal interrupted
                interrupted = True
                group.cancel_scope.cancel()

            await group.start(cancel_on_interrupt, interrupt)
            if ids:
                await _follow(client, client.watch(ids), bars)
            else:
                await _follow_all(client, bars)
            group.cancel_scope.cancel()
    if interrupted:
        console.print("stopped watching; the executions go on on the server", highlight=False)
        return EXIT_INTERRUPTED, bars.outcomes
    return exit_code(bars.outcomes), bars.outcomes


async def _follow(client: AsyncClient, stream: AsyncEventStream, bars: RemoteBars) -> None:
    async with stream as events:
        async for event in events:
            await _show(client, event, bars)


async def _show(client: AsyncClient, event: AnyEvent, bars: RemoteBars) -> None:
    """Draw the event; an execution that had failed before the watch began says why too."""
    error = None
    if isinstance(event, StatusEvent) and event.status == "failed":
        error = (await client.get(event.execution_id)).error
    bars.show(event, error)


async def _follow_all(client: AsyncClient, bars: RemoteBars) -> None:
    """Every unfinished execution, plus those created while they run.

    The unfinished ones are watched by id, which answers a status for each even if
    it ended meanwhile; a second watch of everything adds the new ones. It ends
    once all of both have ended.
    """
    known = [r.execution_id async for r in client.executions("running")]
    known += [r.execution_id async for r in client.executions("pending")]
    if not known:
        bars.console.print("nothing to watch: no execution is pending or running")
        return
    watched = set(known)
    new: set[str] = set()
    listed_done = anyio.Event()

    async with anyio.create_task_group() as group:

        async def follow_listed() -> None:
            await _follow(client, client.watch(sorted(watched)), bars)
            listed_done.set()
            if new <= set(bars.outcomes):
                group.cancel_scope.cancel()

        group.start_soon(follow_listed)
        async with client.watch() as events:
            async for event in events:
                execution_id = event.execution_id
                if execution_id in watched:
                    continue
                if execution_id not in new and not (
                    isinstance(event, StatusEvent) and event.status not in FINISHED
                ):
                    continue  # the end of one that started before the listing
                new.add(execution_id)
                await _show(client, event, bars)
                if listed_done.is_set() and new <= set(bars.outcomes):
                    group.cancel_scope.cancel()
