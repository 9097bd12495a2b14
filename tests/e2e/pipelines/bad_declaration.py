"""A pipeline file whose declaration cannot run: two steps share a name."""

from __future__ import annotations

from stepstream import Pipeline

twice = Pipeline("twice")


@twice.step
def load(n: int = 1) -> int:
    """First."""
    return n


@twice.step(name="load")
def load_again(n: int) -> int:
    """Same name as the first step."""
    return n
