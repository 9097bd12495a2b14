"""The `stepstream` command: its group, the built-in commands, the console reporter, the loader.

Other distributions that add commands (the server's `serve`) use these. Each
name is imported on first use, so `stepstream --help` loads none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loader import LoadError, load_pipeline, load_pipelines
    from .options import UrlList, UsageProblem, exit_leaving_abandoned_threads, open_transports
    from .signals import EXIT_INTERRUPTED, cancel_on_interrupt

__all__ = [
    "EXIT_INTERRUPTED",
    "LoadError",
    "UrlList",
    "UsageProblem",
    "cancel_on_interrupt",
    "exit_leaving_abandoned_threads",
    "load_pipeline",
    "load_pipelines",
    "open_transports",
]

_HOMES = {
    "EXIT_INTERRUPTED": "signals",
    "LoadError": "loader",
    "UrlList": "options",
    "UsageProblem": "options",
    "cancel_on_interrupt": "signals",
    "exit_leaving_abandoned_threads": "options",
    "load_pipeline": "loader",
    "load_pipelines": "loader",
    "open_transports": "options",
}


def __getattr__(name: str) -> object:
    """A public name, imported from its module on first use and kept here after."""
    if name not in _HOMES:
        raise AttributeError(f"module 'stepstream.cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, imported or not."""
    return sorted(set(globals()) | set(__all__))
