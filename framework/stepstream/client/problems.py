"""The server's problem details as the framework's own exceptions, so remote and local code alike
catch `UnknownExecution`, `InputError` and the rest."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..errors import (
    ExecutionElsewhere,
    ExecutionFinished,
    InputError,
    ServerUnavailable,
    StepstreamError,
    StoreError,
    UnknownExecution,
    UnknownPipeline,
)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _detail(response: httpx.Response, problem: dict[str, Any]) -> str:
    detail = problem.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    text = response.text.strip()
    if text and len(text) <= 200 and "\n" not in text:
        return text
    return response.reason_phrase or "no detail given"


def error_for(
    response: httpx.Response,
    url: str,
    *,
    execution_id: str | None = None,
    pipeline: str | None = None,
) -> StepstreamError:
    """The exception a non-success answer means; the problem's `type` picks it.

    `execution_id` and `pipeline` are what the request was about, for problems
    that do not repeat them.
    """
    problem = _problem(response)
    kind = problem.get("type")
    status = response.status_code
    detail = _detail(response, problem)
    execution_id = problem.get("execution_id") or execution_id
    if kind == "unknown-execution" and execution_id:
        return UnknownExecution(execution_id)
    if kind == "unknown-pipeline" and pipeline is not None:
        return UnknownPipeline(pipeline, list(problem.get("pipelines") or []))
    if kind == "invalid-inputs" and pipeline is not None:
        fields = problem.get("errors") or []
        problems = {str(e.get("field")): str(e.get("message")) for e in fields}
        return InputError(pipeline, problems or {"inputs": detail})
    if kind == "execution-finished" and execution_id:
        return ExecutionFinished(execution_id, str(problem.get("execution_status")))
    if kind == "execution-elsewhere" and execution_id:
        return ExecutionElsewhere(execution_id, str(problem.get("execution_status")))
    if status == 503 or kind == "store-unavailable":
        return StoreError(detail)
    return ServerUnavailable(url, detail, status)


def unreachable(url: str, error: httpx.TransportError, timeout: float) -> ServerUnavailable:
    """A transport failure in words: `connection refused`, `no answer within 10s`."""
    if isinstance(error, httpx.TimeoutException):
        return ServerUnavailable(url, f"no answer within {timeout:g}s")
    text = str(error)
    if isinstance(error, httpx.ConnectError) and _refused(error):
        return ServerUnavailable(url, "connection refused")
    return ServerUnavailable(url, text or type(error).__name__)


def _refused(error: BaseException | None) -> bool:
    """Somewhere in the chain, a refused connection (the async transport words it
    'All connection attempts failed')."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ConnectionRefusedError) or "refused" in str(error).lower():
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False
