"""Demo pipelines for stepstream, shipped as a plugin: `demo` and `demo_async`."""

from .pipelines import DEMO_PIPELINES, demo, demo_async

__all__ = ["DEMO_PIPELINES", "demo", "demo_async"]
