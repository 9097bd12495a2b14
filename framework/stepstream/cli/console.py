"""The console reporter: a rich progress bar per execution, for `stepstream run`.

It reads each execution's record at its refresh rate rather than doing work on
every step, so drawing costs the same for a pipeline of ten steps or of ten
thousand.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from ..model.events import ExecutionRecord
    from ..runtime.engine import Engine

REFRESH_SECONDS = 0.1


class _ItemsColumn(ProgressColumn):
    """Items done in the current step, `done/total` or just `done` while the total is unknown."""

    def render(self, task: Task) -> Text:
        done, total = task.fields.get("items_done"), task.fields.get("items_total")
        if done is None:
            return Text("")
        return Text(f"{done}/{total} items" if total is not None else f"{done} items", style="cyan")


class _EtaColumn(ProgressColumn):
    """The engine's ETA, which knows step weights, rather than rich's own guess."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        return Text(f"ETA {eta:.1f}s" if eta is not None else "", style="magenta")


class ConsoleReporter:
    """Draws the executions it follows until each has finished."""

    def __init__(self, engine: Engine, console: Console | None = None) -> None:
        self.engine = engine
        self.bars = Progress(
            TextColumn("[bold]{task.fields[pipeline]}[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            _ItemsColumn(),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=console,
            transient=False,
            refresh_per_second=1 / REFRESH_SECONDS,
        )

    def __enter__(self) -> ConsoleReporter:
        self.bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bars.stop()

    async def follow(self, execution_id: str) -> ExecutionRecord:
        """Draw one execution's bar until it has finished; returns its final record."""
        record = self.engine.get(execution_id)
        task = self.bars.add_task(
            "pending",
            total=100,
            pipeline=record.pipeline,
            items_done=None,
            items_total=None,
            eta=None,
        )
        while True:
            record = self.engine.get(execution_id)
            progress = record.progress
            description = record.status
            if progress is not None and not record.finished:
                description = progress.current_step_name or ""
                if progress.message:
                    description = f"{description}: {progress.message}"
            self.bars.update(
                task,
                description=description,
                completed=progress.percentage if progress else 0.0,
                items_done=progress.items_done if progress else None,
                items_total=progress.items_total if progress else None,
                eta=progress.eta_seconds if progress and not record.finished else None,
            )
            if record.finished:
                self.bars.refresh()
                return record
            await anyio.sleep(REFRESH_SECONDS)
