"""Calling a step that has retries or a timeout: its attempts and the waits between them.

The runner hands a step here only when it declared either, so every other step
keeps the plain call. Each retry is recorded (`attempt` on the step's state, a
message in the progress) before its wait; its items restart while the
execution's percentage holds. A cancel ends a wait at once: on the event loop
through anyio, on a worker thread through the throttle's `stopped` event.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import Cancelled
from .deadlines import Deadline, TimedOut, step_timeout
from .failures import error_info
from .jobs import Job

if TYPE_CHECKING:
    from ..authoring.pipeline import Step
    from .runner import Runner


def wait_in_thread(stopped: threading.Event, seconds: float) -> bool:
    """Wait before a sync step's next attempt; True if the execution was cancelled meanwhile."""
    return stopped.wait(seconds)


async def wait_on_loop(seconds: float) -> None:
    """Wait before an async step's next attempt; a cancel interrupts it through anyio."""
    await anyio.sleep(seconds)


def call_sync(runner: Runner, job: Job, step: Step, index: int, value: Any) -> Any:
    """Runs on the worker thread: call a sync step until an attempt succeeds or may not retry."""
    policy = step.attempts
    assert policy is not None
    throttle = job.throttle
    attempt = 1
    while True:
        kwargs, progress = runner._arguments(job, step, index, value)
        deadline = Deadline(job, step, policy.timeout) if policy.timeout is not None else None
        if deadline is not None:
            deadline.arm()
        error: BaseException | None = None
        try:
            result = step.fn(**kwargs)
        except TimedOut as exc:
            error = step_timeout(step, deadline.seconds if deadline else 0.0)
            error.__cause__ = exc
        except Cancelled:
            raise
        except BaseException as exc:  # SystemExit too: a step must not stop the server
            error = exc
        finally:
            late = deadline is not None and deadline.disarm()
        if error is None and late and not throttle.stopped.is_set():
            error = step_timeout(step, policy.timeout or 0.0)  # it returned, but too late
        if error is None:
            if progress is not None:
                progress._finish()
            return result
        seconds = _before_retry(runner, job, step, index, attempt, error)
        if throttle.cancelled or wait_in_thread(throttle.stopped, seconds):
            raise Cancelled("execution cancelled")
        attempt += 1


async def call_async(runner: Runner, job: Job, step: Step, index: int, value: Any) -> Any:
    """Await an async step until an attempt succeeds or may not retry; each attempt timed."""
    policy = step.attempts
    assert policy is not None
    attempt = 1
    while True:
        kwargs, progress = runner._arguments(job, step, index, value)
        try:
            with anyio.move_on_after(policy.timeout) as scope:
                result = await step.fn(**kwargs)
        except (Cancelled, KeyboardInterrupt, anyio.get_cancelled_exc_class()):
            raise
        except BaseException as exc:
            error: BaseException = exc
        else:
            if not scope.cancel_called:
                if progress is not None:
                    progress._finish()
                return result
            error = step_timeout(step, policy.timeout or 0.0)
        await wait_on_loop(_before_retry(runner, job, step, index, attempt, error))
        attempt += 1


def _before_retry(
    runner: Runner, job: Job, step: Step, index: int, attempt: int, error: BaseException
) -> float:
    """After failed `attempt`: fail the step for good, or record the retry and return the wait."""
    policy = step.attempts
    assert policy is not None
    job.throttle.progress = None  # the failed attempt's handle reports no more
    if not policy.retries_after(error, attempt):
        runner._fail(job, step, index, error, tried=attempt)
    seconds = policy.wait_after(attempt)
    info = error_info(error, step, attempts=attempt)
    message = (
        f"attempt {attempt} of {policy.retries + 1} failed ({info.type}: {info.message}); "
        f"retrying in {seconds:g} s"
    )
    progress = job.live.step_retrying(index, attempt + 1, message)
    runner.hook.step_retrying(
        execution_id=job.execution_id,
        step=step,
        index=index,
        attempt=attempt + 1,
        delay=seconds,
        error=info,
        progress=progress,
    )
    return seconds
