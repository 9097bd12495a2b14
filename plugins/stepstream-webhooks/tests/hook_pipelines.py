"""Pipelines the webhook tests run, in process and with `stepstream run FILE:NAME`."""

from __future__ import annotations

from stepstream import Pipeline, Progress

quick = Pipeline("quick", description="two quick steps")


@quick.step
def count(progress: Progress, n: int = 3) -> int:
    """Reports each item, so `events=all` has progress to send."""
    for _ in progress.iter(range(n)):
        pass
    return n


@quick.step
def double(n: int) -> dict[str, int]:
    """The outputs a webhook carries."""
    return {"doubled": 2 * n}


broken = Pipeline("broken", description="a step that fails")


@broken.step
def explode(n: int = 1) -> int:
    """Fails, so a webhook carries the error."""
    raise ValueError(f"bad row {n}")
