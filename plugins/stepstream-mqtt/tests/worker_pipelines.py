"""A pipeline for `stepstream run` in a worker process of the tests."""

from __future__ import annotations

from stepstream import Pipeline, Progress

tally = Pipeline("mqtt-tally", description="counts `items`, then reports them")


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
