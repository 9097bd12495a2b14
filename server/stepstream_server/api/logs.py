"""`GET /api/v1/executions/{id}/logs`: what an execution's steps printed and logged."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from stepstream import Engine, LogLine, UnknownExecution

from ..dependencies import OffLoop
from ..params import MAX_SEQ, integer_schema, parse_after
from .executions import BAD_REQUEST, UNKNOWN_EXECUTION, parsed, unknown_execution


class LogPage(msgspec.Struct):
    """Captured lines numbered above `after`; pass `next_after` as `after` for later ones."""

    execution_id: str
    lines: list[LogLine]
    next_after: int


@get(
    "/executions/{execution_id:str}/logs",
    summary="Read an execution's captured logs",
    tags=["executions"],
    responses={400: BAD_REQUEST, 404: UNKNOWN_EXECUTION},
)
async def get_logs(
    engine: NamedDependency[Engine],
    off_loop: NamedDependency[OffLoop],
    execution_id: FromPath[str],
    after: Annotated[
        str,
        Parameter(
            description="Return lines numbered above this",
            schema_extra=integer_schema(0, MAX_SEQ, 0),
        ),
    ] = "0",
) -> LogPage:
    """The kept lines (the last ones of each execution), in order, with their step and stream."""
    number = parsed(parse_after, after)
    try:
        lines = await off_loop(engine.logs, execution_id, number)
    except UnknownExecution as exc:
        raise unknown_execution(exc) from None
    return LogPage(
        execution_id=execution_id, lines=lines, next_after=lines[-1].n if lines else number
    )
