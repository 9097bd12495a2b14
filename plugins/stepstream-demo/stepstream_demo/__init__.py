"""Demo pipelines for stepstream, shipped as a plugin: `demo` and `demo_async`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipelines import DEMO_PIPELINES, demo, demo_async

__all__ = ["DEMO_PIPELINES", "demo", "demo_async"]


def __getattr__(name: str) -> object:
    """The pipelines, declared on first use: every `stepstream` command loads this package."""
    if name in __all__:
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
