"""The plugin contract: every hook stepstream fires, and what each may return.

Implement any of these with `@stepstream.hookimpl` in a module or class and
expose it under the `stepstream` entry-point group. Arguments are passed by
name, so an implementation takes only the ones it needs.

Execution hooks fire inline while a pipeline runs: on the event loop for async
steps and on the execution's worker thread for sync steps. Keep them quick and
thread-safe. An implementation that raises is logged and skipped; it never fails
the pipeline and the other plugins still see the event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .events import ErrorInfo, Status
    from .pipeline import Pipeline, Step
    from .stores import ExecutionStore

hookspec = pluggy.HookspecMarker("stepstream")


@hookspec
def execution_started(execution_id: str, pipeline: Pipeline, inputs: dict[str, Any]) -> None:
    """An execution left the queue and its first step is about to run; `inputs` are validated."""


@hookspec
def step_started(execution_id: str, step: Step, index: int) -> None:
    """Step number `index` (0-based) of the execution is about to be called."""


@hookspec
def step_progress(
    execution_id: str,
    step: Step,
    index: int,
    done: int,
    total: int | None,
    message: str | None,
) -> None:
    """A running step reported items: at most once per throttle interval, and once at its end.

    `done` counts items so far, `total` is None while the step does not know it.
    """


@hookspec
def step_done(execution_id: str, step: Step, index: int, duration: float) -> None:
    """Step `index` returned normally after `duration` seconds."""


@hookspec
def step_failed(execution_id: str, step: Step, index: int, error: ErrorInfo) -> None:
    """Step `index` raised; `error` holds its name, the exception type, message and traceback."""


@hookspec
def execution_finished(
    execution_id: str, status: Status, outputs: Any, error: ErrorInfo | None
) -> None:
    """The execution ended `completed`, `failed` or `cancelled`.

    Fires once per execution this process ends: after it ran, or when it was
    cancelled while still queued (then without `execution_started` before it).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the `stepstream` command, e.g. `cli.add_command(serve)`."""


@hookspec
def register_stores() -> dict[str, type[ExecutionStore]] | None:
    """Return `{url_scheme: store_class}`; the class is built with `from_url(url)`."""
