"""The `stepstream` command: its group, the built-in commands, the console reporter, the loader.

Other distributions that add commands (the server's `serve`) use these.
"""

from .loader import LoadError, load_pipeline, load_pipelines
from .signals import EXIT_INTERRUPTED, cancel_on_interrupt

__all__ = [
    "EXIT_INTERRUPTED",
    "LoadError",
    "cancel_on_interrupt",
    "load_pipeline",
    "load_pipelines",
]
