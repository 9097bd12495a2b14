"""The console reporter: a rich progress bar per execution, for `stepstream run`; the bars'
layout, shared with the commands that watch a server.

It reads each execution's record at its refresh rate rather than doing work on
every step, so drawing costs the same for a pipeline of ten steps or of ten
thousand.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

if TYPE_CHECKING:
    from ..model.events import ErrorInfo, ExecutionRecord, ProgressSnapshot
    from ..runtime.engine import Engine

REFRESH_SECONDS = 0.1
BAR_WIDTHS = ((100, 16), (120, 24))  # (terminals narrower than, bar width); else 40
ITEMS_WIDTH = 21  # "1234567/1234567 items"
ETA_WIDTH = 10  # "ETA 59m59s"
ELAPSED_WIDTH = 7  # "0:00:00"
PERCENT_WIDTH = 6  # "100.0%"


class _ItemsColumn(ProgressColumn):
    """Items done in the current step, `done/total` or just `done` while the total is unknown."""

    def render(self, task: Task) -> Text:
        done, total = task.fields.get("items_done"), task.fields.get("items_total")
        if done is None:
            return Text("")
        return Text(f"{done}/{total} items" if total is not None else f"{done} items", style="cyan")


def tries(error: ErrorInfo) -> str:
    """` (3 attempts)` after a failed step's error, when the step was tried more than once."""
    return f" ({error.attempts} attempts)" if error.attempts and error.attempts > 1 else ""


def eta_text(seconds: float) -> str:
    """`ETA 4.2s`, `ETA 12m05s`, `ETA 3h20m`: never wider than ETA_WIDTH."""
    if seconds < 60:
        return f"ETA {seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"ETA {minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours < 100 else "ETA >99h"


class _EtaColumn(ProgressColumn):
    """The engine's ETA, which knows step weights, rather than rich's own guess."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        return Text(eta_text(eta) if eta is not None else "", style="magenta")


def progress_bars(console: Console | None = None) -> Progress:
    """A bar per execution on one line each, whatever the terminal's width.

    Every column is cut rather than wrapped, and the name and step get what the
    bar and the numbers leave, so at 80 columns a bar still takes one line.
    """
    console = console or Console()
    bar_width = next((bar for below, bar in BAR_WIDTHS if console.width < below), 40)
    fixed = bar_width + PERCENT_WIDTH + ITEMS_WIDTH + ELAPSED_WIDTH + ETA_WIDTH + 5  # 5 gaps
    one_line = {"no_wrap": True, "overflow": "ellipsis"}
    return Progress(
        TextColumn(
            "[bold]{task.fields[pipeline]}[/] {task.description}",
            table_column=Column(max_width=max(8, console.width - fixed), **one_line),
        ),
        BarColumn(bar_width=bar_width),
        TextColumn("{task.percentage:>5.1f}%", table_column=Column(**one_line)),
        _ItemsColumn(table_column=Column(**one_line)),
        TimeElapsedColumn(table_column=Column(**one_line)),
        _EtaColumn(table_column=Column(**one_line)),
        console=console,
        transient=False,
        refresh_per_second=1 / REFRESH_SECONDS,
    )


def bar_fields(status: str, progress: ProgressSnapshot | None, finished: bool) -> dict[str, object]:
    """What a bar shows of an execution: the running step (and its message), or the status."""
    description = status
    if progress is not None and not finished:
        description = progress.current_step_name or ""
        if progress.message:
            description = f"{description}: {progress.message}"
    return {
        "description": description,
        "completed": progress.percentage if progress else 0.0,
        "items_done": progress.items_done if progress else None,
        "items_total": progress.items_total if progress else None,
        "eta": progress.eta_seconds if progress and not finished else None,
    }


class ConsoleReporter:
    """Draws the executions it follows until each has finished."""

    def __init__(self, engine: Engine, console: Console | None = None) -> None:
        self.engine = engine
        self.bars = progress_bars(console)

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
        shown = 0
        while True:
            record = self.engine.get(execution_id)
            shown = self._print_logs(execution_id, shown)
            self.bars.update(task, **bar_fields(record.status, record.progress, record.finished))
            if record.finished:
                self._print_logs(execution_id, shown)
                self.bars.refresh()
                return record
            await anyio.sleep(REFRESH_SECONDS)

    def _print_logs(self, execution_id: str, after: int) -> int:
        """Print the lines the steps printed or logged since `after`, above the bars."""
        lines = self.engine.logs(execution_id, after)
        for line in lines:
            where = f"[dim]{line.step}[/] " if line.step else ""
            level = f"{line.level} " if line.level else ""
            self.bars.console.print(
                f"{where}{level}{escape(line.message)}", highlight=False, soft_wrap=True
            )
        return lines[-1].n if lines else after
