"""The console reporter: a rich progress bar per execution, for `stepstream run`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .plugins import hookimpl

if TYPE_CHECKING:
    from .events import Status
    from .tracker import Tracker


class _ItemsColumn(ProgressColumn):
    """Items done in the current step, `done/total` or just `done` while the total is unknown."""

    def render(self, task: Task) -> Text:
        done, total = task.fields.get("items_done"), task.fields.get("items_total")
        if done is None:
            return Text("")
        return Text(f"{done}/{total} items" if total is not None else f"{done} items", style="cyan")


class _EtaColumn(ProgressColumn):
    """The tracker's ETA, which knows step weights, rather than rich's own guess."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        return Text(f"ETA {eta:.1f}s" if eta is not None else "", style="magenta")


class ConsoleReporter:
    """Draws executions as they run; registered by `stepstream run`, runs after the tracker."""

    def __init__(self, tracker: Tracker, console: Console | None = None) -> None:
        self.tracker = tracker
        self.bars = Progress(
            TextColumn("[bold]{task.fields[pipeline]}[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            _ItemsColumn(),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ConsoleReporter:
        self.bars.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.bars.stop()

    def _refresh(self, execution_id: str, description: str | None = None) -> None:
        task = self._tasks.get(execution_id)
        progress = self.tracker.get(execution_id).progress
        if task is None or progress is None:
            return
        fields: dict[str, Any] = {
            "items_done": progress.items_done,
            "items_total": progress.items_total,
            "eta": progress.eta_seconds,
        }
        if description is None:
            description = progress.current_step_name or ""
            if progress.message:
                description = f"{description}: {progress.message}"
        self.bars.update(task, completed=progress.percentage, description=description, **fields)

    @hookimpl(trylast=True)
    def execution_started(self, execution_id: str, pipeline: Any) -> None:
        """One bar per execution."""
        self._tasks[execution_id] = self.bars.add_task(
            "starting",
            total=100,
            pipeline=pipeline.name,
            items_done=None,
            items_total=None,
            eta=None,
        )

    @hookimpl(trylast=True)
    def step_started(self, execution_id: str) -> None:
        """Show the new step's name."""
        self._refresh(execution_id)

    @hookimpl(trylast=True)
    def step_progress(self, execution_id: str) -> None:
        """Move the bar and the items count."""
        self._refresh(execution_id)

    @hookimpl(trylast=True)
    def step_done(self, execution_id: str) -> None:
        """Count the finished step's share."""
        self._refresh(execution_id)

    @hookimpl(trylast=True)
    def execution_finished(self, execution_id: str, status: Status) -> None:
        """Leave the bar with the final status as its description."""
        self._refresh(execution_id, description=status)
