"""The `stepstream` command: its group, the built-in commands, the console reporter, the loader.

Other distributions that add commands (the server's `serve`) use these.
"""

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
