"""A complete plugin: it watches executions, ships a pipeline and adds a command.

Run it:  uv run python examples/slow_step_plugin.py
It registers itself on an engine, runs the pipeline it ships and prints what it
saw. Packaged, the same module is found by entry point (see docs/plugins.md):

    [project.entry-points.stepstream]
    slow-steps = "slow_step_plugin"
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import click

from stepstream import Engine, ExecutionRecord, Pipeline, ProgressSnapshot, Step, hookimpl

SLOW_SECONDS = 0.05  # a step taking longer than this is reported
REPORT: list[str] = []

nap = Pipeline("nap", description="Two steps, one of them slow")


@nap.step
def quick(seconds: float = 0.1) -> float:
    return seconds


@nap.step
def slow(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


@hookimpl
def step_done(step: Step, duration: float, progress: ProgressSnapshot) -> None:
    """Note each slow step, with where the execution stood when it ended."""
    if duration > SLOW_SECONDS:
        REPORT.append(f"{step.name} took {duration:.2f}s ({progress.percentage:.0f}% done)")


@hookimpl
def execution_finished(record: ExecutionRecord) -> None:
    """One line per execution, from the final record."""
    REPORT.append(f"{record.pipeline} {record.status} in {len(record.steps)} steps")


@hookimpl
def register_pipelines() -> list[Pipeline]:
    """Ship `nap`, so `stepstream serve` serves it once this plugin is installed."""
    return [nap]


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add `stepstream slow-steps`."""

    @cli.command(name="slow-steps")
    def slow_steps() -> None:
        """Say which step time counts as slow."""
        click.echo(f"steps over {SLOW_SECONDS}s are reported")


def main() -> Any:
    engine = Engine(load_entrypoints=False)
    engine.plugins.register(sys.modules[__name__], name="slow-steps")
    record = anyio.run(engine.run, nap, {"seconds": 0.1})
    print("\n".join(REPORT))
    return record.outputs


if __name__ == "__main__":
    main()
