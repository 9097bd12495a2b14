"""The entry point: offers the demo pipelines through `register_pipelines`."""

from __future__ import annotations

from stepstream import Pipeline, hookimpl

from .pipelines import DEMO_PIPELINES


@hookimpl
def register_pipelines() -> list[Pipeline]:
    """`demo` and `demo_async`, for `stepstream serve` to serve."""
    return list(DEMO_PIPELINES)
