"""RFC 9457 problem details: every error the server answers, never a bare 500 page."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec

from stepstream import StoreError

PROBLEM_JSON = "application/problem+json"
# An error's size follows from the server's limits, never from the request: a body of a
# million bad fields used to get a 422 nine times its size.
MAX_DETAIL = 1_000  # characters of `detail`
MAX_FIELDS = 20  # entries of `errors`; the detail says how many more there were
MAX_FIELD_NAME = 100  # characters of a field's name in `errors`
MAX_MESSAGE = 300  # characters of a field's message in `errors`

log = logging.getLogger("stepstream_server")


class FieldError(msgspec.Struct):
    """One bad field: its name and what is wrong with it."""

    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The problem-details body; optional members appear only where they help the client act."""

    type: str  # no default: omit_defaults would drop "about:blank", and clients expect `type`
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    execution_id: str | None = None
    execution_status: str | None = None
    pipelines: list[str] | None = None


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_errors(
    problems: Mapping[str, str], first: Collection[str] = ()
) -> tuple[list[FieldError], int]:
    """At most MAX_FIELDS bad fields, names and messages clipped, the fields named in `first`
    (say, a pipeline's declared inputs) before the rest; and how many were left out."""
    ordered = sorted(problems.items(), key=lambda item: item[0] not in first)
    listed = [
        FieldError(field=clip(name, MAX_FIELD_NAME), message=clip(message, MAX_MESSAGE))
        for name, message in ordered[:MAX_FIELDS]
    ]
    return listed, len(problems) - len(listed)


def problem_spec(description: str) -> ResponseSpec:
    """An OpenAPI response that is a problem-details body."""
    return ResponseSpec(Problem, description=description, media_type=PROBLEM_JSON)


class ProblemError(HTTPException):
    """Raise from a handler to answer with a problem of a specific `type`."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type_: str = "about:blank",
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.type_ = type_
        self.title = title
        self.members = members


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> Response[Problem]:
    """A problem-details response; `about:blank` problems take the HTTP status phrase as title."""
    body = Problem(
        type=type_,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=clip(detail, MAX_DETAIL),
        **members,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_detail(exc: ValidationException) -> str:
    """Litestar's 'Validation failed for POST /x' says nothing; name the parameter and the fault."""
    faults = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        source = getattr(item.get("source"), "value", item.get("source"))
        key, message = item.get("key"), item.get("message", "")
        if source == "body":
            faults.append(_body_fault(key, message))
        elif key:
            faults.append(f"{source} parameter {key!r}: {message}")
        else:
            faults.append(message)
    if not faults:
        return exc.detail
    shown = [clip(fault, MAX_MESSAGE) for fault in faults[:MAX_FIELDS]]
    if len(faults) > MAX_FIELDS:
        shown.append(f"… and {len(faults) - MAX_FIELDS} more")
    return "; ".join(shown)


def _body_fault(key: str | None, message: str) -> str:
    if key == "data" and message == "'data'":
        return "the request body is empty; send a JSON object"
    if key in (None, "", "data"):
        return f"request body: {message}"
    return f"request body field {clip(key, MAX_FIELD_NAME)!r}: {message}"


def http_exception_handler(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[Problem]:
    """Litestar's own HTTP errors (404, 405, 413, bad JSON, bad parameters) as problem details."""
    headers = exc.headers or None
    if isinstance(exc, ProblemError):
        return problem_response(
            exc.status_code,
            exc.detail,
            type_=exc.type_,
            title=exc.title,
            headers=headers,
            **exc.members,
        )
    if isinstance(exc, ValidationException):
        return problem_response(exc.status_code, _validation_detail(exc), headers=headers)
    detail = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        reason = detail.removeprefix("JSON is malformed: ")
        detail = f"the request body is not valid JSON: {reason}"
    elif exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route matches {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = next((v for k, v in (exc.headers or {}).items() if k.lower() == "allow"), "")
        detail = f"{request.url.path} does not accept {request.method}; allowed: {allowed}"
    elif exc.status_code == 413:
        limit = request.app.state.get("max_body_size")
        detail = f"the request body is larger than the server's limit of {limit} bytes"
    return problem_response(exc.status_code, detail, headers=headers)


def store_error_handler(request: Request[Any, Any, Any], exc: StoreError) -> Response[Problem]:
    """The store cannot be used right now (a broken disk, a damaged file): 503, try again later."""
    log.error("store error in %s %r: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        f"the server cannot use its store right now ({exc}); try again later",
        type_="store-unavailable",
        title="Store unavailable",
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """A bug must not leak a traceback to the client; it goes to the server log instead."""
    log.error("unhandled error in %s %r", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "the server hit an unexpected error; its log has the details")


def not_found_as_problem(response: Response[Any]) -> Response[Any]:
    """Litestar's /schema router answers unknown paths with an HTML 404; make it a problem too."""
    if response.status_code == 404:
        return problem_response(404, "no such schema document; try /schema/openapi.json")
    return response
