"""The entry point: offers the demo pipelines, declared only when asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepstream import hookimpl

if TYPE_CHECKING:
    from stepstream import Pipeline


@hookimpl
def register_pipelines() -> list[Pipeline]:
    """`demo` and `demo_async`, for `stepstream serve` to serve."""
    from .pipelines import DEMO_PIPELINES

    return list(DEMO_PIPELINES)
