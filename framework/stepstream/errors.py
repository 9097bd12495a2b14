"""Exceptions a user of stepstream can catch, each with a message that says what to fix."""

from __future__ import annotations


class StepstreamError(Exception):
    """Base of every error stepstream raises on purpose."""


class PipelineDefinitionError(StepstreamError):
    """A pipeline was declared in a way that cannot run."""


class InputError(StepstreamError):
    """Inputs do not fit the pipeline's first step; `problems` maps each field to what is wrong."""

    def __init__(self, pipeline: str, problems: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.problems = problems
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        super().__init__(f"invalid inputs for pipeline {pipeline!r}: {lines}")


class Cancelled(BaseException):
    """Raised inside a step by its Progress handle once the execution is cancelled.

    A BaseException, like asyncio's CancelledError, so that a step's own
    `except Exception:` does not swallow the cancellation.
    """


class UnknownExecution(StepstreamError, LookupError):
    """No execution has this id."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"no execution with id {execution_id!r}")


class UnknownPipeline(StepstreamError, KeyError):
    """No pipeline has this name; `known` lists the names that exist.

    A KeyError, as a lookup in a mapping of pipelines raises.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"no pipeline named {name!r} (known: {', '.join(known) or 'none registered'})"
        )

    def __str__(self) -> str:  # KeyError's own would quote the message like a key
        return str(self.args[0])


class ExecutionFinished(StepstreamError):
    """The execution already ended, so it cannot be cancelled or run again."""

    def __init__(self, execution_id: str, status: str) -> None:
        self.execution_id = execution_id
        self.status = status
        super().__init__(f"execution {execution_id!r} already finished: {status}")


class ExecutionElsewhere(StepstreamError):
    """The execution is not run by this engine (another process, or a worker elsewhere)."""

    def __init__(self, execution_id: str, status: str) -> None:
        self.execution_id = execution_id
        self.status = status
        super().__init__(
            f"execution {execution_id!r} is {status} but not run by this process, "
            "so it cannot be cancelled here"
        )


class SubscriptionOverflow(StepstreamError):
    """A watcher's reader fell so far behind that its buffer filled; the watch has ended.

    Nothing it was sent is wrong, but later events were dropped: read the executions
    afresh (e.g. list them) and watch again.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the subscriber fell more than {limit} events behind, so the subscription ended; "
            "read the executions again and resubscribe"
        )


class StoreError(StepstreamError):
    """A store cannot be opened or used; the message names the URL or path."""


class PluginConflict(StepstreamError):
    """Two installed plugins offer the same thing (a store scheme, a pipeline name)."""

    def __init__(self, what: str, plugins: list[str]) -> None:
        self.what = what
        self.plugins = plugins
        super().__init__(
            f"{what} is offered by several plugins ({', '.join(plugins)}); uninstall all but "
            "one, or choose which load with STEPSTREAM_LOAD_PLUGINS"
        )


class StepFailedError(StepstreamError):
    """`Pipeline.run` re-raises a failed step's exception wrapped in this, naming the step."""


class StepTimeout(StepstreamError):
    """A step ran longer than its `timeout`; the record's error has this type and names the step."""


class PipelineTimeout(StepstreamError):
    """An execution ran longer than its pipeline's `timeout`; the error names the running step."""


class ServerUnavailable(StepstreamError):
    """The stepstream server at `url` cannot be reached, or gave an answer the client cannot use.

    `status` is the HTTP status it answered (401 for a missing or wrong token), or
    None when nothing answered; `detail` says what went wrong.
    """

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        self.url = url
        self.detail = detail
        self.status = status
        if status is None:
            message = f"cannot reach the stepstream server at {url}: {detail}"
        else:
            message = f"the stepstream server at {url} answered {status}: {detail}"
        super().__init__(message)
