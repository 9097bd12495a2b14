"""`/api/v1/executions`: start, list, read, cancel and replay executions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter

from stepstream import (
    Engine,
    Event,
    ExecutionElsewhere,
    ExecutionFinished,
    ExecutionRecord,
    ProgressSnapshot,
    Status,
    StoreError,
    UnknownExecution,
)

from ..dependencies import OffLoop
from ..params import (
    CURSOR_SCHEMA,
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_SEQ,
    BadParameter,
    integer_schema,
    parse_after,
    parse_cursor,
    parse_limit,
    shown,
)
from ..problems import ProblemError, problem_spec
from ..schemas import EventLog, ExecutionPage, SubmitRequest
from ..submissions import IDEMPOTENCY_KEY, KEY_SCHEMA, REPLAYED, Submissions, check_key

T = TypeVar("T")
STATUSES: tuple[Status, ...] = get_args(Status)


BAD_REQUEST = problem_spec("The request is malformed; `detail` says what to fix")
UNKNOWN_EXECUTION = problem_spec("No execution has this id")


def unknown_execution(error: UnknownExecution) -> ProblemError:
    """The 404 for an id no execution has."""
    return ProblemError(
        404,
        str(error),
        type_="unknown-execution",
        title="Unknown execution",
        execution_id=error.execution_id,
    )


def record_of(engine: Engine, execution_id: str) -> ExecutionRecord:
    """The record, or the 404 problem.

    Read on the event loop: an unfinished record is in the store's memory and a
    finished one is one indexed SQLite row (about 8 us, against 75 us for a hop
    to a worker thread).
    """
    try:
        return engine.get(execution_id)
    except UnknownExecution as exc:
        raise unknown_execution(exc) from None


def parsed(parse: Callable[[str | None], T], raw: str | None) -> T:
    """A URL parameter parsed, or the 400 problem saying what would be accepted."""
    try:
        return parse(raw)
    except BadParameter as exc:
        raise ProblemError(400, f"query parameter {exc}") from None


def _events_after(engine: Engine, execution_id: str, after: int) -> tuple[int, list[Event]]:
    """The record's last seq, then the logged events after `after`; raises UnknownExecution."""
    seen = engine.get(execution_id).last_seq
    return seen, engine.events(execution_id, after)


class ExecutionController(Controller):
    """`/api/v1/executions`: the execution API and the REST half of the progress query API."""

    path = "/executions"
    tags = ("executions",)

    @post(
        "/",
        status_code=202,
        summary="Start an execution",
        response_headers=[
            ResponseHeader(
                name="Location", description="URL of the execution", documentation_only=True
            ),
            ResponseHeader(
                name=REPLAYED,
                description="`true` when an earlier request with this Idempotency-Key made "
                "the execution, which is answered again instead of starting another",
                documentation_only=True,
            ),
        ],
        responses={
            400: BAD_REQUEST,
            404: problem_spec("No pipeline has this name; `pipelines` lists the known ones"),
            415: problem_spec("The body is not declared as JSON"),
            422: problem_spec(
                "The inputs do not fit the pipeline (`errors` lists the bad fields), or the "
                "Idempotency-Key was used for another request (`execution_id` names its execution)"
            ),
            503: problem_spec(
                "The store cannot keep the execution, so it was cancelled before it started; "
                "submit it again once the store works"
            ),
        },
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        submissions: NamedDependency[Submissions],
        data: JSONBody[SubmitRequest],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name=IDEMPOTENCY_KEY,
                description="Any unique string (a UUID) naming this request: sending it again "
                "answers the execution it made instead of starting another",
                schema_extra=KEY_SCHEMA,
            ),
        ] = None,
    ) -> Response[ExecutionRecord]:
        """Queue a pipeline run once it is stored; it starts when a slot is free. 202 at once."""
        key = check_key(request.headers.getall(IDEMPOTENCY_KEY, []))
        submitted = await submissions.submit(data.pipeline, data.inputs, key)
        record = submitted.record
        headers = {"Location": f"/api/v1/executions/{record.execution_id}"}
        if submitted.replayed:
            headers[REPLAYED] = "true"
        return Response(record, status_code=202, headers=headers)

    @get("/", summary="List executions", responses={400: BAD_REQUEST})
    async def list_executions(
        self,
        engine: NamedDependency[Engine],
        off_loop: NamedDependency[OffLoop],
        status: Annotated[
            str | None,
            Parameter(
                description="Only executions with this status",
                schema_extra={"enum": list(STATUSES)},
            ),
        ] = None,
        pipeline: Annotated[
            str | None, Parameter(description="Only executions of this pipeline")
        ] = None,
        limit: Annotated[
            str,
            Parameter(
                description="How many executions per page",
                schema_extra=integer_schema(1, MAX_PAGE, DEFAULT_PAGE),
            ),
        ] = str(DEFAULT_PAGE),
        cursor: Annotated[
            str | None,
            Parameter(description="`next_cursor` of the previous page", schema_extra=CURSOR_SCHEMA),
        ] = None,
    ) -> ExecutionPage:
        """Newest first, filtered by status and pipeline, a page at a time."""
        if status is not None and status not in STATUSES:
            raise ProblemError(
                400,
                f"query parameter 'status' must be one of {', '.join(STATUSES)}; "
                f"got {shown(status)}",
            )
        size, before = parsed(parse_limit, limit), parsed(parse_cursor, cursor)
        page = await off_loop(
            functools.partial(
                engine.list,
                status=status,  # type: ignore[arg-type]
                pipeline=pipeline,
                limit=size + 1,
                before=before,
            ),
        )
        more = len(page) > size
        del page[size:]
        return ExecutionPage(items=page, next_cursor=page[-1].execution_id if more else None)

    @get("/{execution_id:str}", summary="Get an execution", responses={404: UNKNOWN_EXECUTION})
    async def get_execution(
        self, engine: NamedDependency[Engine], execution_id: FromPath[str]
    ) -> ExecutionRecord:
        """Status, progress, timestamps, per-step states, outputs or error."""
        return record_of(engine, execution_id)

    @get(
        "/{execution_id:str}/progress",
        summary="Get an execution's progress",
        responses={
            204: ResponseSpec(
                data_container=None,
                description="No progress: pending, or ended before it started",
            ),
            404: UNKNOWN_EXECUTION,
        },
    )
    async def get_progress(
        self, engine: NamedDependency[Engine], execution_id: FromPath[str]
    ) -> Response[ProgressSnapshot]:
        """The progress object alone; a finished execution keeps its last one."""
        progress = record_of(engine, execution_id).progress
        if progress is None:
            return Response(None, status_code=204)
        return Response(progress)

    @post(
        "/{execution_id:str}/cancel",
        status_code=202,
        summary="Cancel an execution",
        responses={
            404: UNKNOWN_EXECUTION,
            409: problem_spec("The execution already finished; `execution_status` says how"),
            503: problem_spec("The store cannot write the cancel; `detail` says what it means"),
        },
    )
    async def cancel(
        self,
        engine: NamedDependency[Engine],
        off_loop: NamedDependency[OffLoop],
        execution_id: FromPath[str],
    ) -> ExecutionRecord:
        """A pending execution ends at once; a running one at its step's next checkpoint."""
        try:
            engine.cancel(execution_id)
        except UnknownExecution as exc:
            raise unknown_execution(exc) from None
        except ExecutionFinished as exc:
            raise ProblemError(
                409,
                f"execution {execution_id!r} already finished with status {exc.status!r}",
                type_="execution-finished",
                title="Execution already finished",
                execution_id=execution_id,
                execution_status=exc.status,
            ) from None
        except ExecutionElsewhere as exc:
            raise ProblemError(
                409,
                str(exc),
                type_="execution-elsewhere",
                title="Execution runs elsewhere",
                execution_id=execution_id,
                execution_status=exc.status,
            ) from None
        try:  # a store shows an ending once it is written: answer `cancelled` for a pending one
            await off_loop(engine.flush)
        except StoreError as exc:
            raise ProblemError(
                503,
                f"execution {execution_id} was cancelled, but the store could not write that "
                f"({exc}); a restart before it can would see the execution as it was before",
                type_="store-unavailable",
                title="Store unavailable",
                execution_id=execution_id,
            ) from None
        return record_of(engine, execution_id)

    @get(
        "/{execution_id:str}/events",
        summary="Replay an execution's events",
        responses={400: BAD_REQUEST, 404: UNKNOWN_EXECUTION},
    )
    async def get_events(
        self,
        engine: NamedDependency[Engine],
        off_loop: NamedDependency[OffLoop],
        execution_id: FromPath[str],
        after: Annotated[
            str,
            Parameter(
                description="Return events with a greater seq",
                schema_extra=integer_schema(0, MAX_SEQ, 0),
            ),
        ] = "0",
    ) -> EventLog:
        """The events with `seq > after`, in order; `last_seq` is where to resume from."""
        seq = parsed(parse_after, after)
        try:
            seen, events = await off_loop(_events_after, engine, execution_id, seq)
        except UnknownExecution as exc:
            raise unknown_execution(exc) from None
        # An event being written now may be counted in `seen` but not yet logged:
        # never claim more than was returned, or a client resuming would skip it.
        last_seq = events[-1].seq if events else min(seq, seen)
        return EventLog(execution_id=execution_id, events=events, last_seq=last_seq)
