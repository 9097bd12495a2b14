"""Pipelines for `stepstream run` in a worker process of the tests."""

from __future__ import annotations

import time

from stepstream import Pipeline, Progress

tally = Pipeline("redis-tally", description="counts `items`, then reports them")


@tally.step
def count(progress: Progress, items: int = 10) -> int:
    """Step 0: one progress update per item."""
    for _ in progress.iter(range(items)):
        pass
    return items


@tally.step
def report(items: int) -> dict[str, int]:
    """Step 1: the outputs."""
    return {"items": items}


spin = Pipeline("redis-spin", description="reports progress until cancelled (60 s at most)")


@spin.step
def turn(progress: Progress) -> None:
    """One progress update every 10 ms: a cancel stops it at the next one."""
    for _ in progress.iter(range(6000)):
        time.sleep(0.01)
