"""How a step is tried: how many times, how long to wait between tries, how long each may take.

Checked when the step is declared, so a typo fails at import, naming the function.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import PipelineDefinitionError


class Attempts:
    """A step's retry policy and timeout; a step without either has none (and no overhead)."""

    __slots__ = ("backoff", "delay", "retries", "retry_on", "timeout")

    def __init__(
        self,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        retry_on: tuple[type[Exception], ...] = (Exception,),
        timeout: float | None = None,
    ) -> None:
        self.retries = retries
        self.delay = delay
        self.backoff = backoff
        self.retry_on = retry_on
        self.timeout = timeout

    def __repr__(self) -> str:
        names = ", ".join(t.__qualname__ for t in self.retry_on)
        return (
            f"Attempts(retries={self.retries}, delay={self.delay:g}, backoff={self.backoff:g}, "
            f"retry_on=({names}), timeout={self.timeout})"
        )

    def retries_after(self, error: BaseException, attempt: int) -> bool:
        """Whether attempt number `attempt` (from 1), which raised `error`, is tried again."""
        return attempt <= self.retries and isinstance(error, self.retry_on)

    def wait_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (from 1): delay * backoff**(attempt-1)."""
        return self.delay * self.backoff ** (attempt - 1)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def check_timeout(value: Any, owner: str) -> float | None:
    """A timeout is None or a finite number of seconds > 0; `owner` names who declared it."""
    if value is None:
        return None
    if not _number(value) or value <= 0:
        raise PipelineDefinitionError(
            f"{owner} has timeout={value!r}; a timeout is a number of seconds > 0, or None"
        )
    return float(value)


def is_plain(retries: Any, retry_delay: Any, backoff: Any, retry_on: Any, timeout: Any) -> bool:
    """True for the policy of a step declared without one: tried once, no time limit."""
    return (
        retries == 0
        and type(retries) is int
        and retry_delay == 0
        and type(retry_delay) in (int, float)
        and backoff == 1
        and type(backoff) in (int, float)
        and retry_on is Exception
        and timeout is None
    )


def attempts_for(
    owner: str,
    retries: Any,
    retry_delay: Any,
    backoff: Any,
    retry_on: Any,
    timeout: Any,
) -> Attempts | None:
    """The checked policy of a step (`owner` names it in errors); None when it has none."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise PipelineDefinitionError(
            f"{owner} has retries={retries!r}; retries is a whole number >= 0 "
            "(how many times a failed step is tried again)"
        )
    if not _number(retry_delay) or retry_delay < 0:
        raise PipelineDefinitionError(
            f"{owner} has retry_delay={retry_delay!r}; it is a number of seconds >= 0"
        )
    if not _number(backoff) or backoff < 1:
        raise PipelineDefinitionError(
            f"{owner} has backoff={backoff!r}; it is a number >= 1 (each wait is the "
            "previous one times backoff; 1 waits retry_delay every time)"
        )
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    wrong = [k for k in kinds if not (isinstance(k, type) and issubclass(k, Exception))]
    if wrong or not kinds:
        raise PipelineDefinitionError(
            f"{owner} has retry_on={retry_on!r}; give an exception class or a tuple of them, "
            "e.g. retry_on=(OSError, TimeoutError) (subclasses of Exception: a cancel is "
            "never retried)"
        )
    seconds = check_timeout(timeout, owner)
    if retries == 0 and seconds is None:
        return None
    return Attempts(retries, float(retry_delay), float(backoff), kinds, seconds)
