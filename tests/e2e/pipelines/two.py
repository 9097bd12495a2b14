"""A module holding two pipelines and one non-pipeline, for target resolution errors."""

from __future__ import annotations

from stepstream import Pipeline

NOT_A_PIPELINE = {"name": "not a pipeline"}

first = Pipeline("first")


@first.step
def one(word: str = "a") -> str:
    """Echo."""
    return word


second = Pipeline("second")


@second.step
def two(word: str = "b") -> str:
    """Echo."""
    return word * 2
