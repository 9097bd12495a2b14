"""Each REST call as data: what to send and how to read the answer, shared by both clients.

`Client` and `AsyncClient` only differ in how they send a `Call`, so the routes,
the checks of arguments and the reading of answers live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args
from urllib.parse import quote

import httpx
import msgspec

from ..errors import ServerUnavailable
from ..model.events import ExecutionRecord, ProgressSnapshot, Status, encode
from . import schemas
from .problems import error_for

T = TypeVar("T")

EXECUTIONS = "/api/v1/executions"
PIPELINES = "/api/v1/pipelines"
MAX_PAGE = 200
STATUSES: tuple[str, ...] = get_args(Status)
JSON = {"content-type": "application/json"}

progress_decoder = msgspec.json.Decoder(ProgressSnapshot)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the answer it expects; any other answer raises through `error_for`."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    ok: int = 200
    params: dict[str, Any] | None = None
    content: bytes | None = None
    execution_id: str | None = None
    pipeline: str | None = None
    empty_ok: bool = False  # a 204 answers None

    @property
    def headers(self) -> dict[str, str] | None:
        """A body is JSON, and says so: the server refuses other content types (415)."""
        return JSON if self.content is not None else None

    def result(self, response: httpx.Response, base_url: str) -> T:
        """The decoded answer, None for a 204, or the exception the problem details mean."""
        status = response.status_code
        if status == 204 and self.empty_ok:
            return None  # type: ignore[return-value]
        if status != self.ok:
            raise error_for(
                response, base_url, execution_id=self.execution_id, pipeline=self.pipeline
            )
        try:
            return self.decode(response.content)
        except msgspec.DecodeError as exc:  # a proxy's page, or not a stepstream server
            raise ServerUnavailable(
                base_url, f"unexpected answer to {self.method} {self.path}: {exc}", status
            ) from None


def _execution(execution_id: str, suffix: str = "") -> str:
    return f"{EXECUTIONS}/{quote(execution_id, safe='')}{suffix}"


def submit(pipeline: str, inputs: dict[str, Any]) -> Call[ExecutionRecord]:
    """`POST /api/v1/executions`: 202 and the new record."""
    body = encode({"pipeline": pipeline, "inputs": inputs})
    return Call(
        "POST", EXECUTIONS, schemas.record_decoder.decode, 202, content=body, pipeline=pipeline
    )


def get(execution_id: str) -> Call[ExecutionRecord]:
    """`GET /api/v1/executions/{id}`."""
    return Call(
        "GET", _execution(execution_id), schemas.record_decoder.decode, execution_id=execution_id
    )


def progress(execution_id: str) -> Call[ProgressSnapshot | None]:
    """`GET /api/v1/executions/{id}/progress`: None on 204 (no progress yet, or ever)."""
    return Call(
        "GET",
        _execution(execution_id, "/progress"),
        progress_decoder.decode,
        execution_id=execution_id,
        empty_ok=True,
    )


def page(
    status: str | None, pipeline: str | None, limit: int, cursor: str | None
) -> Call[schemas.ExecutionPage]:
    """`GET /api/v1/executions`: one page, newest first; bad arguments are a ValueError here."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}; got {limit}")
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    if pipeline is not None:
        params["pipeline"] = pipeline
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", EXECUTIONS, schemas.page_decoder.decode, params=params)


def cancel(execution_id: str) -> Call[ExecutionRecord]:
    """`POST /api/v1/executions/{id}/cancel`: 202 and the record."""
    return Call(
        "POST",
        _execution(execution_id, "/cancel"),
        schemas.record_decoder.decode,
        202,
        execution_id=execution_id,
    )


def replay(execution_id: str, after: int) -> Call[schemas.EventLog]:
    """`GET /api/v1/executions/{id}/events?after=SEQ`: the logged events after a seq."""
    if after < 0:
        raise ValueError(f"after must be a seq (an integer >= 0); got {after}")
    return Call(
        "GET",
        _execution(execution_id, "/events"),
        schemas.log_decoder.decode,
        params={"after": after},
        execution_id=execution_id,
    )


def logs(execution_id: str, after: int) -> Call[schemas.LogPage]:
    """`GET /api/v1/executions/{id}/logs?after=N`: the captured lines numbered above `after`."""
    if after < 0:
        raise ValueError(f"after must be a line number (an integer >= 0); got {after}")
    return Call(
        "GET",
        _execution(execution_id, "/logs"),
        schemas.lines_decoder.decode,
        params={"after": after},
        execution_id=execution_id,
    )


def pipelines() -> Call[schemas.PipelineList]:
    """`GET /api/v1/pipelines`."""
    return Call("GET", PIPELINES, schemas.pipelines_decoder.decode)


def pipeline(name: str) -> Call[schemas.PipelineInfo]:
    """`GET /api/v1/pipelines/{name}`."""
    return Call(
        "GET",
        f"{PIPELINES}/{quote(name, safe='')}",
        schemas.pipeline_decoder.decode,
        pipeline=name,
    )
