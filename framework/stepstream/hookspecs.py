"""The plugin contract: every hook stepstream fires, when, on which thread, and what it may return.

Implement any of these with `@stepstream.hookimpl` in a module or class and
expose it under the `stepstream` entry-point group (see docs/plugins.md).
Arguments are passed by name, so an implementation takes only the ones it
needs, in any order.

Execution hooks (`execution_started` ... `execution_finished`) fire after the
engine has recorded the change they announce: `engine.get(execution_id)`
inside a hook already shows it, whatever order plugins were registered in.
Plugins observe; they do not decide state. The hooks of one step fire one at
a time, in order, on the thread that runs it: the event loop for async steps,
a worker thread for sync steps. In a graph pipeline, steps that do not wait
for each other run at once, so hooks of different steps of one execution may
fire concurrently on different threads. Keep them quick and thread-safe.

Every hook is isolated: an implementation that raises is logged, that one
call is skipped, and the pipeline, the engine and the other plugins go on
(its later calls still happen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .authoring.pipeline import Pipeline, Step
    from .model.events import ErrorInfo, ExecutionRecord, ProgressSnapshot, Status
    from .stores import ExecutionStore
    from .transports import Transport

PROJECT = "stepstream"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def execution_started(
    execution_id: str, pipeline: Pipeline, inputs: dict[str, Any], record: ExecutionRecord
) -> None:
    """An execution left the queue and is `running`; its first step is about to be called.

    `pipeline` is the Pipeline object being run, `inputs` the validated inputs
    (converted to the first step's types), `record` a copy of the record as it
    is now (status `running`). Fires on the event loop.
    """


@hookspec
def step_started(execution_id: str, step: Step, index: int, progress: ProgressSnapshot) -> None:
    """Step number `index` (0-based) is about to be called.

    `step` is the `stepstream.Step` object (compare `step.name`, not `step`,
    with a string), `progress` the execution's progress now that the step is
    current.
    """


@hookspec
def step_progress(
    execution_id: str,
    step: Step,
    index: int,
    done: int,
    total: int | None,
    message: str | None,
    progress: ProgressSnapshot,
) -> None:
    """A running step reported items: at most once per throttle interval, and once at its end.

    `done` counts items so far, `total` is None while the step does not know
    it, `message` is the step's latest `progress.message`; `progress` is the
    execution's progress (percentage, rate, ETA) after the update.
    """


@hookspec
def step_done(
    execution_id: str, step: Step, index: int, duration: float, progress: ProgressSnapshot
) -> None:
    """Step `index` returned normally after `duration` seconds; `progress` counts it finished."""


@hookspec
def step_failed(
    execution_id: str, step: Step, index: int, error: ErrorInfo, progress: ProgressSnapshot
) -> None:
    """Step `index` raised; `error` holds the step's name, exception type, message and traceback.

    `execution_finished` with status `failed` follows.
    """


@hookspec
def step_retrying(
    execution_id: str,
    step: Step,
    index: int,
    attempt: int,
    delay: float,
    error: ErrorInfo,
    progress: ProgressSnapshot,
) -> None:
    """Step `index` failed with `error` and will be tried again, attempt number `attempt`
    (2 for the first retry), after waiting `delay` seconds.

    Fires on the thread that runs the step. `progress` holds the percentage where it
    was (it never goes back) and a message saying which attempt failed and why;
    `step_done` or `step_failed` follows for the last attempt.
    """


@hookspec
def execution_finished(
    execution_id: str,
    status: Status,
    outputs: Any,
    error: ErrorInfo | None,
    record: ExecutionRecord,
) -> None:
    """The execution ended `completed`, `failed` or `cancelled`; `record` is its final record.

    `outputs` is the last step's return value as the step returned it (None
    unless completed); `error` says why it failed or was cancelled, or is None.
    Fires once per execution this process ends: after it ran, or when it was
    cancelled while still queued (then without `execution_started` before it).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the `stepstream` command, e.g. `cli.add_command(serve)`.

    Called once when the command line is built, before arguments are parsed.
    """


@hookspec
def register_stores() -> dict[str, type[ExecutionStore]] | None:
    """Return `{url_scheme: store_class}`; the class is built with `store_class.from_url(url)`.

    Called when an engine opens its store. Two plugins offering one scheme is
    an error naming both when that scheme is opened.
    """


@hookspec
def register_transports() -> dict[str, type[Transport]] | None:
    """Return `{url_scheme: transport_class}`; the class is built with `from_url(url)`.

    Called when `--publish` or `--subscribe` URLs are opened. A transport that
    can be read is a `stepstream.transports.ReadableTransport`. Two plugins
    offering one scheme is an error naming both when that scheme is opened.
    """


@hookspec
def register_pipelines() -> list[Pipeline] | None:
    """Return Pipelines this plugin ships; `stepstream serve` serves them by name.

    A pipeline named by `--pipelines` replaces a plugin's of the same name;
    two plugins offering one name is an error naming both.
    """
